"""The README's image-folder commands work as written on a folder of 200 PNGs (with 2 epochs):
the default architecture ``auto`` builds Table 4's conv net for the default 3 x 128 x 128, the
default batch of 512 warns once that an epoch is one gradient step, the quick run's batch of 16
does not, and evaluate works on the result (plotting is tested on smaller images elsewhere: its
figures of 128 x 128 images take most of a minute here)."""

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitae.cli import main

README = Path(__file__).parents[1] / "README.md"
SMALL = ["epochs=2", "warmup=1"]  # appended to the README's settings: later ones win


def readme_commands() -> list[list[str]]:
    """The commands of the README's code block that trains on ``data=images data_root=DIR``."""
    block = next(b for b in re.findall(r"^```bash\n(.*?)^```", README.read_text(), re.M | re.S)
                 if "data=images data_root=DIR" in b)
    return [shlex.split(line.split("#")[0]) for line in block.strip().splitlines()]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """200 PNGs of 24 x 20 (RGB and grey, resized by the loader), in an empty working folder."""
    monkeypatch.setenv("VITAE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: a second thread only waits on a busy machine
    rng = np.random.default_rng(0)
    images = tmp_path / "my images"
    images.mkdir()
    for i in range(200):
        pixels = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels if i % 2 else pixels[..., 0]).save(images / f"{i:03d}.png")
    yield images
    torch.set_num_threads(threads)


def with_small_epochs(argv: list[str]) -> list[str]:
    at = argv.index("--out")
    return argv[:at] + SMALL + argv[at:]  # not --quiet: it turns the warning off with the progress bar


def test_the_readme_image_folder_commands(folder, capsys):
    commands = readme_commands()
    assert [c[:2] for c in commands] == [["vitae", "train"], ["vitae", "train"], ["vitae", "evaluate"], ["vitae", "plot"]]
    for argv in commands[:2]:
        argv = [a.replace("=DIR", f"={folder}") for a in argv[1:]]
        capsys.readouterr()
        assert main(with_small_epochs(argv)) == 0
        out = Path(argv[argv.index("--out") + 1])
        config = json.loads((out / "config.json").read_text())
        assert config["architecture"] == "auto" and config["data"] == "images"
        state = torch.load(out / "checkpoint.pt", weights_only=True)
        assert state["image_shape"] == [3, 128, 128]
        # Table 4's conv net (celeba_conv at width 0.5): 5 filters of 5 x 5 on the 3 channels
        assert state["model"]["appearance_encoder.mean_net.0.0.weight"].shape == (5, 3, 5, 5)
        err = capsys.readouterr().err
        if config["batch_size"] == 512:  # 180 training images: one step an epoch
            assert err.count("vitae: warning: an epoch is only 1 gradient step(s) (180 training images, batch_size 512)") == 1
            assert "batch_size=16" in err
        else:
            assert config["batch_size"] == 16 and "warning" not in err
    evaluate = commands[2][1:]
    assert main(evaluate + ["--limit", "4", "--quiet"]) == 0
    assert json.loads((Path(evaluate[1]) / "metrics.json").read_text())["log_px_samples"] == 100
