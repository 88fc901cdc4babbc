"""Extension by registries (``vitae.plugins``): every model of the zoo trains with a user's own
encoder and decoder; names unknown to a registry, missing plugin modules and wrong network shapes
are one-line errors naming what to do; shipped names are protected; plugin modules are found in
the current folder and through the entry point group ``vitae.plugins``."""

import sys

import pytest
import torch
from torch import nn

from conftest import fixed_noise_losses
from vitae import config as config_module
from vitae import data, models, transforms
from vitae.cli import main
from vitae.errors import VitaeError
from vitae.models import networks
from vitae.plugins import import_modules
from vitae.training.trainer import train


class Encoder(nn.Module):
    def __init__(self, image_shape):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(image_shape[0], 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.LeakyReLU(0.1))

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, latent_dim, out_shape):
        super().__init__()
        self.out_shape = out_shape
        self.net = nn.Linear(latent_dim, int(torch.Size(out_shape).numel()))

    def forward(self, z):
        return self.net(z).view(-1, *self.out_shape)


@pytest.fixture
def tiny_conv():
    networks.register("test_tiny_conv", encoder=Encoder, decoder=Decoder)
    yield "test_tiny_conv"
    networks.ARCHITECTURES.pop("test_tiny_conv")


@pytest.mark.parametrize("name", sorted(models.SHIPPED))
def test_every_model_of_the_zoo_trains_with_user_networks(tiny_conv, name):
    model = models.create(name, (1, 8, 8), architecture=tiny_conv, dataset_size=100)
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    losses = fixed_noise_losses(model, x, lr=1e-3)
    assert losses[2] < losses[1] < losses[0]
    encoders = [m for m in model.modules() if isinstance(m, networks.FeatureEncoder)]
    assert encoders and all(isinstance(e.net, Encoder) and e.mean.in_features == 4 * 4 * 4 for e in encoders)


def test_building_a_model_leaves_the_users_batch_norm_statistics_alone(tiny_conv):
    model = models.create("cvitae", (1, 8, 8), architecture=tiny_conv)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 2 and all(n.num_batches_tracked == 0 and torch.all(n.running_mean == 0) for n in norms)
    assert model.training and all(n.training for n in norms)


def test_a_learned_variance_doubles_the_decoders_channels(tiny_conv):
    model = models.create("vae", (3, 8, 8), architecture=tiny_conv, likelihood="gaussian",
                          likelihood_options={"learned": True})
    assert model.decoder.out_shape == (6, 8, 8)


def test_wrong_network_shapes_are_one_line_errors():
    networks.register("test_bad_decoder", encoder=Encoder, decoder=lambda d, shape: nn.Linear(d, 5))
    networks.register("test_no_module", encoder=lambda shape: "conv", decoder=Decoder)
    networks.register("test_28_only", encoder=Encoder, decoder=Decoder, image_shape=(1, 28, 28))
    try:
        with pytest.raises(VitaeError, match=r"'test_bad_decoder': the decoder must map \[B, 4\] to \[B, 1, 8, 8\]; "
                                             r"on a batch of 2 it returned \[2, 5\]"):
            models.create("vae", (1, 8, 8), architecture="test_bad_decoder")
        with pytest.raises(VitaeError, match="'test_no_module': its encoder factory returned str, not an nn.Module"):
            models.create("vae", (1, 8, 8), architecture="test_no_module")
        with pytest.raises(VitaeError, match=r"'test_28_only' expects images of shape \(1, 28, 28\).*fit: auto"):
            models.create("vae", (1, 8, 8), architecture="test_28_only")
    finally:
        for name in ("test_bad_decoder", "test_no_module", "test_28_only"):
            networks.ARCHITECTURES.pop(name)


def test_unknown_names_list_what_is_registered_and_how_to_add_one(tiny_conv):
    cases = [(lambda: models.create("vae", (1, 8, 8), architecture="resnet"), "architecture 'resnet'", "auto, celeba_conv"),
             (lambda: models.create("vea", (1, 8, 8)), "model 'vea'", "beta_tcvae, beta_vae"),
             (lambda: transforms.create("rigid"), "transformation 'rigid'", "affine, affine_decomp"),
             (lambda: data.create("my_data"), "data set 'my_data'", "affine_mnist, bodies")]
    for build, what, names in cases:
        with pytest.raises(VitaeError) as error:
            build()
        message = str(error.value)
        assert message.startswith(f"unknown {what}; choose one of: {names}") and "\n" not in message
        assert 'imports=["MODULE"]' in message and "vitae.plugins" in message
    with pytest.raises(VitaeError, match="test_tiny_conv"):  # what the user registered is listed too
        models.create("vae", (1, 8, 8), architecture="resnet")


def test_shipped_names_are_protected_and_own_names_can_be_registered_again(tiny_conv):
    for register, name, value in [(networks.register, "mnist_mlp", networks.ARCHITECTURES["mlp"]),
                                  (networks.register, "auto", networks.ARCHITECTURES["mlp"]),
                                  (models.register, "vae", models.VAE),
                                  (transforms.register, "affine", transforms.Affine),
                                  (data.register, "mnist", lambda root=None: None)]:
        with pytest.raises(ValueError, match=f"'{name}' is a shipped"):
            register(name, value)
    again = networks.register(tiny_conv, encoder=Encoder, decoder=Decoder, perspective_hidden=(8,))
    assert networks.ARCHITECTURES[tiny_conv] is again and again.perspective_hidden() == [8]
    with pytest.raises(ValueError, match="both encoder= and decoder="):
        networks.register("test_half", encoder=Encoder)
    with pytest.raises(ValueError, match="subclass of vitae.models.GenerativeModel"):
        models.register("test_model", nn.Linear)


def test_a_registered_model_and_transformation_are_named_like_shipped_ones():
    class Shift(transforms.Affine):
        """An affine family under another name."""

    class MyVAE(models.VAE):
        """A VAE under another name."""

    transforms.register("test_shift", Shift)
    models.register("test_vae", MyVAE)
    try:
        assert isinstance(models.create("test_vae", (1, 28, 28)), MyVAE)
        assert isinstance(models.create("cvitae", (1, 28, 28), transform="test_shift").transform, Shift)
    finally:
        transforms.REGISTRY.pop("test_shift")
        models.REGISTRY.pop("test_vae")


def test_a_missing_plugin_module_is_one_line(tmp_path, capsys):
    config = config_module.Config(imports=["no_such_plugin_xyz"], epochs=1)
    with pytest.raises(VitaeError, match=r"cannot import the plugin module 'no_such_plugin_xyz' \(config key imports\)"):
        train(config, tmp_path / "run", progress=False)
    assert main(["train", "model=vae", "imports=['no_such_plugin_xyz']", "--out", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vitae: error: cannot import the plugin module") and err.count("\n") == 1
    with pytest.raises(VitaeError, match="config key 'imports' must be a list"):
        config_module.load(None, ["imports=my_module"])


def test_a_plugin_that_fails_inside_keeps_its_own_error(tmp_path, monkeypatch):
    (tmp_path / "broken_plugin_xyz.py").write_text("import a_dependency_that_is_missing_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="a_dependency_that_is_missing_xyz"):
        import_modules(["broken_plugin_xyz"])


def test_plugin_modules_are_found_in_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "cwd_plugin_xyz.py").write_text(
        "from vitae.models import networks\n"
        "networks.register('test_from_cwd', networks.ARCHITECTURES['mlp'])\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    before = list(sys.path)
    try:
        import_modules(["cwd_plugin_xyz"])
        assert "test_from_cwd" in networks.ARCHITECTURES and sys.path == before
    finally:
        networks.ARCHITECTURES.pop("test_from_cwd", None)
        sys.modules.pop("cwd_plugin_xyz", None)


def test_entry_points_are_loaded_when_a_name_is_not_found(tmp_path, monkeypatch):
    info = tmp_path / "vitae_test_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vitae-test-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[vitae.plugins]\nnets = ep_plugin_xyz:setup\n")
    (tmp_path / "ep_plugin_xyz.py").write_text(
        "from vitae.models import networks\n"
        "def setup():\n"
        "    networks.register('test_from_entry_point', networks.ARCHITECTURES['mlp'])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert "test_from_entry_point" not in networks.ARCHITECTURES
        model = models.create("vae", (1, 6, 6), architecture="test_from_entry_point")
        assert model.encoder.mean_net[0].in_features == 36
    finally:
        networks.ARCHITECTURES.pop("test_from_entry_point", None)
        sys.modules.pop("ep_plugin_xyz", None)
