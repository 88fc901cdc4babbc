"""The explorer's server and model-side computations, over real HTTP (urllib) on a free port."""

from __future__ import annotations

import io
import re
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explore_helpers import as_uint8, call, png_bytes, read_png, serving
from vitae import pretrained
from vitae.explore import explorer as explorer_module
from vitae.explore.explorer import Explorer, for_run
from vitae.cli import main
from vitae.explore.server import MAX_UPLOAD, make_server, url

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def shipped():
    """The shipped MNIST C-VITAE and its explorer (24 MNIST test images)."""
    config, model, _, _ = pretrained.load_run("pretrained:mnist_cvitae")
    return config, model, for_run(config, model, name="pretrained:mnist_cvitae")


@pytest.fixture(scope="module")
def base(shipped):
    with serving(shipped[2]) as address:
        yield address


def test_decode_is_the_models_decode_of_the_codes(shipped, base):
    """The page's image, canonical image and grid are the model's, read back from the PNGs."""
    _, model, _ = shipped
    codes = {"z_A": [0.5, -1.25], "z_P": [1.5, -0.75]}
    status, out = call(base, "/api/decode", codes)
    assert status == 200
    z = {k: torch.tensor([v]) for k, v in codes.items()}
    with torch.no_grad():
        image = model.decode(z)[0]
        canonical = model.likelihood.mean(model.canonical(z["z_A"]))[0]
        gamma = model.perspective_decoder(z["z_P"])
    np.testing.assert_array_equal(read_png(out["image"]), as_uint8(image))
    np.testing.assert_array_equal(read_png(out["canonical"]), as_uint8(canonical))
    # the grid's points, mapped by T_gamma, are the canonical frame's regular grid
    lines = torch.tensor(out["grid"])  # [2 * GRID_LINES, GRID_POINTS, 2] in pixels of the 28 x 28 image
    normalised = lines.reshape(1, -1, 2) / 28 * 2 - 1
    canonical_points = model.transform.transform_points(normalised, gamma)[0].view(lines.shape)
    ticks = torch.linspace(-1, 1, explorer_module.GRID_LINES)
    n = explorer_module.GRID_LINES
    torch.testing.assert_close(canonical_points[:n, :, 0], ticks[:, None].expand(n, explorer_module.GRID_POINTS),
                               atol=2e-3, rtol=0)
    torch.testing.assert_close(canonical_points[n:, :, 1], ticks[:, None].expand(n, explorer_module.GRID_POINTS),
                               atol=2e-3, rtol=0)
    assert not np.array_equal(read_png(call(base, "/api/decode", {"z_A": [0.5, -1.25], "z_P": [-1.5, 0.75]})[1]["image"]),
                              read_png(out["image"]))


def test_encode_gives_the_posterior_means_and_reconstruction(shipped, base):
    _, model, explorer = shipped
    status, out = call(base, "/api/encode", {"test": 5})
    assert status == 200
    x = explorer.images[5:6]
    with torch.no_grad():
        posteriors = model.encode(x)
        recon = model.reconstruct(x)[0]
    for group in ("z_A", "z_P"):
        np.testing.assert_allclose(out["codes"][group], posteriors[group].mean[0].numpy(), atol=1e-4)
    np.testing.assert_array_equal(read_png(out["recon"]), as_uint8(recon))
    np.testing.assert_array_equal(read_png(out["input"]), as_uint8(x[0]))


def test_upload_round_trip(shipped, base):
    """An uploaded PNG is encoded as the image it holds (pixels / 255)."""
    _, model, _ = shipped
    pixels = np.random.default_rng(0).integers(0, 256, (28, 28)).astype(np.uint8)
    status, out = call(base, "/api/upload", raw=png_bytes(pixels))
    assert status == 200
    x = torch.from_numpy(pixels.astype(np.float32) / 255).view(1, 1, 28, 28)
    with torch.no_grad():
        means = model.encode(x)
        recon = model.reconstruct(x)[0]
    np.testing.assert_allclose(out["codes"]["z_P"], means["z_P"].mean[0].numpy(), atol=1e-4)
    np.testing.assert_array_equal(read_png(out["recon"]), as_uint8(recon))
    np.testing.assert_array_equal(read_png(out["input"]), pixels)
    # another size only with ?resize=1, then resampled to 28 x 28
    big = np.kron(pixels, np.ones((2, 2), dtype=np.uint8))
    assert call(base, "/api/upload", raw=png_bytes(big))[0] == 400
    status, out = call(base, "/api/upload?resize=1", raw=png_bytes(big))
    assert status == 200 and read_png(out["input"]).shape == (28, 28)


@pytest.mark.parametrize("method,path,kwargs,status,words", [
    ("POST", "/api/upload", {"raw": b"not an image at all"}, 400, "not a readable PNG or JPEG"),
    ("POST", "/api/upload", {"raw": png_bytes(np.zeros((32, 20), np.uint8))}, 400, "20x32 pixels; this model takes 28x28"),
    ("POST", "/api/upload", {"raw": b"\0" * (MAX_UPLOAD + 1)}, 413, "at most 2048 KiB"),
    ("GET", "/../../etc/passwd", {}, 404, "no GET"),
    ("GET", "/src/vitae/explore/page.html", {}, 404, "no GET"),
    ("POST", "/api/info", {"body": {}}, 405, "no POST /api/info"),
    ("POST", "/api/decode", {"raw": b"{nope"}, 400, "not JSON"),
    ("POST", "/api/decode", {"body": {"z_A": [0, 0]}}, 400, "exactly the groups"),
    ("POST", "/api/decode", {"body": {"z_A": [0, 0], "z_P": [0, "x"]}}, 400, "list of 2 numbers"),
    ("POST", "/api/decode", {"body": {"z_A": [0, 0], "z_P": [0, 1e9]}}, 400, "within ±10"),
    ("POST", "/api/encode", {"body": {"test": 24}}, 400, "from 0 to 23"),
    ("POST", "/api/encode", {"body": {"path": "/etc/passwd"}}, 400, '{"test": INDEX}'),
    ("POST", "/api/traverse", {"body": {"factor": "pos_x", "test": 0}}, 400, "no known factors"),
    ("PUT", "/", {"raw": b""}, 501, "Unsupported method"),
    ("GET", "/api/info", {"headers": {"Host": "attacker.example:80"}}, 403, "127.0.0.1 and localhost only"),
])
def test_bad_requests_get_one_json_line(base, method, path, kwargs, status, words):
    got, out = call(base, path, method=method, **kwargs)
    assert got == status
    assert isinstance(out, dict) and set(out) == {"error"}
    assert words in out["error"] and "\n" not in out["error"] and "Traceback" not in out["error"]


def test_the_page_is_self_contained(base):
    status, page = call(base, "/")
    assert status == 200
    text = page.decode()
    assert "<script>" in text and "src=\"http" not in text and "href=\"http" not in text and "//cdn" not in text


def test_default_host_is_local(shipped):
    server = make_server(shipped[2])
    try:
        assert server.server_address[0] == "127.0.0.1" and server.server_address[1] > 0
    finally:
        server.server_close()
    from vitae.cli import parser

    assert parser().parse_args(["explore", "x"]).host == "127.0.0.1"
    assert parser().parse_args(["explore", "x"]).port == 0


def test_serving_writes_nothing_in_the_run_folder(tiny_mnist, tmp_path):
    """Every endpoint on a run folder; the folder's files (names, sizes, times) stay as they were."""
    from vitae.training.trainer import Run, train
    from vitae import config as config_module
    from vitae.pretrained import load_run

    config = config_module.load(CONFIGS / "mnist_cvitae.toml", [f"data_root={tiny_mnist}", "epochs=1", "warmup=1",
                                                              "batch_size=64"])
    run = train(config, tmp_path / "run", progress=False)

    def snapshot():
        return sorted((str(p.relative_to(run.path)), p.stat().st_size, p.stat().st_mtime_ns) for p in run.path.rglob("*"))

    before = snapshot()
    loaded, model, _, _ = load_run(str(run.path))
    with serving(for_run(loaded, model)) as address:
        for path, body in (("/api/decode", {"z_A": [0, 0], "z_P": [0, 0]}), ("/api/encode", {"test": 1})):
            assert call(address, path, body)[0] == 200
        assert call(address, "/api/upload", raw=png_bytes(np.zeros((28, 28), np.uint8)))[0] == 200
        assert call(address, "/")[0] == 200 and call(address, "/api/info")[0] == 200
    assert snapshot() == before
    assert isinstance(Run(run.path).read_metrics(), dict)


def test_traversal_renders_and_encodes_the_factor():
    """On the shipped dSprites C-VITAE: the traversal's images are the renders of the factors with
    one moved, and its codes the model's posterior means of them."""
    config, model, _, _ = pretrained.load_run("pretrained:sprites_cvitae")
    explorer = for_run(config, model, n=4)
    out = explorer.traverse("pos_x", 2)
    rows = np.repeat(explorer.factors[2][None], len(out["values"]), axis=0)
    rows[:, 3] = out["values"]
    from vitae.data.sprites import render_sprites

    expected = render_sprites(rows).astype(np.uint8) * 255
    got = np.stack([np.asarray(Image.open(io.BytesIO(p))) for p in out["images"]])
    np.testing.assert_array_equal(got, expected)
    with torch.no_grad():
        means = model.encode(torch.from_numpy(expected.astype(np.float32) / 255).unsqueeze(1))
    np.testing.assert_allclose(out["codes"]["z_P"], means["z_P"].mean.numpy(), atol=1e-5)
    assert out["values"] == sorted(out["values"]) and len(set(out["values"])) == len(out["values"]) > 2


def test_explorer_checks_its_arguments(shipped):
    _, model, _ = shipped
    with pytest.raises(ValueError, match=r"images must be \[N, 1, 28, 28\]"):
        Explorer(model, torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="n must be a whole number"):
        for_run(shipped[0], model, n=0)
    with pytest.raises(Exception, match="port must be"):
        make_server(shipped[2], port=70000)


@pytest.fixture
def served_once(monkeypatch):
    """``serve_forever`` that answers one /api/info request for real, then stops as Ctrl-C does."""
    seen = []
    original = ThreadingHTTPServer.serve_forever

    def serve(self, *args, **kwargs):
        threading.Thread(target=original, args=(self,), daemon=True).start()
        seen.append(call(url(self).replace("0.0.0.0", "127.0.0.1"), "/api/info"))
        self.shutdown()
        raise KeyboardInterrupt

    monkeypatch.setattr(ThreadingHTTPServer, "serve_forever", serve)
    return seen


def test_explore_command_prints_the_address_and_serves(served_once, capsys):
    assert main(["explore", "pretrained:mnist_vae"]) == 130
    out, err = capsys.readouterr()
    assert re.fullmatch(r"vitae explore: http://127\.0\.0\.1:\d+/ \(Ctrl-C to stop\)\n", out)
    status, info = served_once[0]
    assert status == 200 and info["latent_dims"] == {"z": 4} and info["vitae"] is False
    assert "warning" not in err and "interrupted (SIGINT)" in err


def test_another_host_only_when_asked_and_with_a_warning(served_once, capsys):
    assert main(["explore", "pretrained:mnist_vae", "--host", "0.0.0.0"]) == 130
    out, err = capsys.readouterr()
    assert out.startswith("vitae explore: http://0.0.0.0:")
    assert err.startswith("vitae: warning: serving on 0.0.0.0: anyone who can reach this machine")
    assert served_once[0][0] == 200  # any Host header is answered there


def test_explore_refuses_an_unknown_model_in_one_line(capsys):
    assert main(["explore", "pretrained:nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vitae: error: unknown pretrained model 'nope'") and err.count("\n") == 1
