"""The architectures of supplement Tables 3 (SMPL MLP) and 4 (CelebA conv net), layer by layer;
size mismatches; and every model on every architecture training: a few Adam steps on a fixed
batch with fixed noise give a finite loss that goes down."""

import pytest
import torch
from torch import nn

from conftest import fixed_noise_losses
from vitae import models
from vitae.errors import VitaeError
from vitae.models.networks import MIN_VARIANCE, SHIPPED, ConvArchitecture, ConvEncoder

SETTINGS = {  # architecture -> (image shape, likelihood and its options, as in the paper)
    "mnist_mlp": ((1, 28, 28), "bernoulli", {}),
    "sprites_mlp": ((1, 64, 64), "bernoulli", {}),
    "mlp": ((3, 20, 24), "bernoulli", {}),  # any image size
    "smpl_mlp": ((1, 400, 200), "gaussian", {"variance": 0.1}),
    "celeba_conv": ((3, 128, 128), "gaussian", {"variance": 0.1, "mean": "sigmoid"}),
    "conv": ((1, 32, 48), "bernoulli", {}),  # any size divisible by 16
}


def build(name, architecture, **likelihood_options):
    shape, likelihood, options = SETTINGS[architecture]
    return models.create(name, shape, architecture=architecture, likelihood=likelihood,
                         likelihood_options={**options, **likelihood_options}, dataset_size=1000)


def linear_sizes(net):
    return [(m.in_features, m.out_features) for m in net.modules() if isinstance(m, nn.Linear)]


def test_table3_smpl_mlp():
    vae = build("vae", "smpl_mlp")
    assert linear_sizes(vae.encoder.mean_net) == [(80_000, 256), (256, 128), (128, 4)]
    assert linear_sizes(vae.encoder.var_net) == [(80_000, 256), (256, 128), (128, 4)]
    assert linear_sizes(vae.decoder.net) == [(4, 128), (128, 256), (256, 80_000)]
    assert isinstance(vae.decoder.net[-1], nn.Linear)  # Table 3's mean decoder ends linear
    vitae = build("cvitae", "smpl_mlp")
    assert linear_sizes(vitae.appearance_encoder.mean_net) == [(80_000, 128), (128, 64), (64, 2)]
    assert linear_sizes(vitae.perspective_decoder.net)[:2] == [(2, 64), (64, 128)]


def conv_layers(net, kind):
    return [(m.out_channels, m.kernel_size[0], m.stride[0]) for m in net.modules() if isinstance(m, kind)]


def feature_shapes(net, x):
    """The output shape of every (transposed) convolution on input ``x``."""
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
             for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    net(x)
    for hook in hooks:
        hook.remove()
    return shapes


def test_table4_celeba_conv():
    vae = build("vae", "celeba_conv")
    for net in (vae.encoder.mean_net, vae.encoder.var_net):
        assert conv_layers(net, nn.Conv2d) == [(10, 5, 2), (20, 5, 2), (40, 3, 2)]
        assert feature_shapes(net, torch.zeros(1, 3, 128, 128)) == [(10, 64, 64), (20, 32, 32), (40, 16, 16)]
        assert linear_sizes(net) == [(40 * 16 * 16, 4)]
    assert conv_layers(vae.decoder, nn.ConvTranspose2d) == [(40, 3, 2), (20, 3, 2), (10, 5, 2), (3, 5, 2)]
    assert feature_shapes(vae.decoder, torch.zeros(1, 4)) == [(40, 16, 16), (20, 32, 32), (10, 64, 64), (3, 128, 128)]
    learned = build("vae", "celeba_conv", learned=True)
    assert feature_shapes(learned.decoder, torch.zeros(1, 4))[-1] == (6, 128, 128)  # mean and variance
    vitae = build("uvitae", "celeba_conv")
    assert conv_layers(vitae.perspective_encoder.mean_net, nn.Conv2d) == [(5, 5, 2), (10, 5, 2), (20, 3, 2)]
    assert conv_layers(vitae.appearance_decoder, nn.ConvTranspose2d) == [(20, 3, 2), (10, 3, 2), (5, 5, 2), (3, 5, 2)]


def test_vitae_has_about_the_vae_size_on_every_architecture():
    for architecture in SETTINGS:
        n_vae = sum(p.numel() for p in build("vae", architecture).parameters())
        n_vitae = sum(p.numel() for p in build("cvitae", architecture).parameters())
        assert 0.4 < n_vitae / n_vae < 1.0, architecture


def test_images_that_do_not_fit_the_architecture_are_one_line_errors():
    with pytest.raises(VitaeError, match=r"expects images of shape \(1, 400, 200\)"):
        models.create("vae", (1, 200, 400), architecture="smpl_mlp")
    with pytest.raises(VitaeError, match=r"expects images of shape \(3, 128, 128\)"):
        models.create("cvitae", (1, 128, 128), architecture="celeba_conv")
    anysize = ConvArchitecture(image_shape=None, encoder_layers=((4, 3),) * 3, decoder_layers=((4, 3),) * 4)
    with pytest.raises(VitaeError, match="divisible by 16"):
        anysize.encoder((3, 40, 40), 2)
    assert anysize.encoder((3, 48, 32), 2)(torch.zeros(2, 3, 48, 32)).mean.shape == (2, 2)
    with pytest.raises(VitaeError, match="unknown architecture 'celeba_mlp'"):
        models.create("vae", (3, 128, 128), architecture="celeba_mlp")


def test_the_training_test_covers_every_architecture():
    assert set(SETTINGS) == SHIPPED


@pytest.mark.parametrize("architecture", list(SETTINGS))
@pytest.mark.parametrize("name", list(models.REGISTRY))
def test_every_model_trains_on_every_architecture(name, architecture):
    model = build(name, architecture)
    x = torch.rand(2, *SETTINGS[architecture][0], generator=torch.Generator().manual_seed(0))
    # a small learning rate: Adam's first steps move every weight by about lr, and on the
    # 80,000-pixel MLP lr = 1e-4 already overshoots on a batch of random images
    losses = fixed_noise_losses(model, x, lr=1e-5)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[2] < losses[1] < losses[0]


@pytest.mark.parametrize("shape, expected", [
    ((1, 28, 28), "mnist_mlp"), ((1, 64, 64), "sprites_mlp"), ((1, 400, 200), "smpl_mlp"),
    ((3, 128, 128), "celeba_conv"), ((3, 64, 96), "conv"), ((1, 128, 128), "conv"),
    ((3, 48, 48), "mlp"), ((1, 100, 100), "mlp"), ((3, 20, 24), "mlp"),
])
def test_auto_picks_the_architecture_made_for_the_shape_else_conv_else_mlp(shape, expected):
    from vitae.models import networks

    assert networks.auto(shape) == expected
    model = models.create("vae", shape, architecture="auto")
    reference = models.create("vae", shape, architecture=expected)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}


def test_conv_nets_run_channels_last_and_compute_the_same_as_the_plain_layout():
    """The conv encoder and decoder keep their weights and feature maps channels-last (faster
    oneDNN kernels), the decoder's image too; outputs and every gradient equal those of the same
    weights in the usual layout, computed by the modules' plain ``nn.Sequential`` parts, and the
    likelihoods score a channels-last image as they score the same image in the usual layout."""
    torch.manual_seed(0)
    vae = build("vae", "conv")
    convs = [m for m in vae.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    x = torch.rand(3, 1, 32, 48)
    z = torch.randn(3, 4)
    out = vae.decoder(z)
    assert out.is_contiguous(memory_format=torch.channels_last) and out.shape == (3, 1, 32, 48)
    # what the public methods hand a user is in the usual layout
    assert vae.decode({"z": z}).is_contiguous() and vae.reconstruct(x).is_contiguous() and vae.sample(2).is_contiguous()
    for likelihood in (models.likelihoods.create("bernoulli"), models.likelihoods.create("gaussian", mean="sigmoid"),
                       models.likelihoods.create("gaussian", learned=True)):
        image = torch.rand(3, likelihood.out_channels(1), 32, 48)
        scored = likelihood.log_prob_output(x, image)
        torch.testing.assert_close(likelihood.log_prob_output(x, image.contiguous(memory_format=torch.channels_last)), scored)
        params = likelihood.params(image)
        torch.testing.assert_close(likelihood.log_prob(x, params.contiguous(memory_format=torch.channels_last)),
                                   likelihood.log_prob(x, params))

    plain = build("vae", "conv")
    plain.load_state_dict(vae.state_dict())
    plain = plain.to(memory_format=torch.contiguous_format)
    for m in plain.modules():  # the usual layout throughout: the Sequentials alone, on plain tensors
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.weight.data = m.weight.data.contiguous()
    q = vae.encoder(x)
    mean_plain = plain.encoder.mean_net(x)
    var_plain = torch.nn.functional.softplus(plain.encoder.var_net(x)) + 1e-6
    dec_plain = plain.decoder.net(plain.decoder.dense(z).view(-1, *plain.decoder.start))
    torch.testing.assert_close(q.mean, mean_plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(q.var, var_plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, dec_plain, rtol=1e-5, atol=1e-6)
    (q.mean.square().sum() + q.var.sum() + out.square().sum()).backward()
    (mean_plain.square().sum() + var_plain.sum() + dec_plain.square().sum()).backward()
    for (name, p), p_plain in zip(vae.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, p_plain.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_the_conv_encoders_paired_stacks_compute_each_net_alone():
    """ConvEncoder runs its mean and variance nets as one stack on the CPU (the first
    convolutions as one, the later ones grouped): in float64 the same posterior as each
    nn.Sequential run alone, and the same gradients to x and to every parameter."""
    torch.manual_seed(0)
    enc = ConvEncoder((3, 32, 24), 4, [(5, 5), (6, 3), (7, 3)]).double()
    x = torch.rand(3, 3, 32, 24, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 3, 4, dtype=torch.float64)
    q = enc(x)
    loss = (q.mean * weights[0]).sum() + (q.var * weights[1]).sum()
    grads = torch.autograd.grad(loss, [x, *enc.parameters()])
    xc = x.contiguous(memory_format=torch.channels_last)
    mean, var = enc.mean_net(xc), torch.nn.functional.softplus(enc.var_net(xc)) + MIN_VARIANCE
    ref_loss = (mean * weights[0]).sum() + (var * weights[1]).sum()
    ref_grads = torch.autograd.grad(ref_loss, [x, *enc.parameters()])
    torch.testing.assert_close(q.mean, mean, atol=1e-12, rtol=0)
    torch.testing.assert_close(q.var, var, atol=1e-12, rtol=0)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-11, rtol=1e-10)
    assert all(g.abs().max() > 0 for g in grads)
