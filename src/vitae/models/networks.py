"""Encoder and decoder networks of the paper's architectures, by name.

* ``mnist_mlp``, supplement Table 1 (images ``1 x 28 x 28``): separate mean and variance encoder
  MLPs (128, 64 units) ending in ``d`` linear / softplus units; a decoder MLP (64, 64) ending in
  ``D = 784`` units.
* ``smpl_mlp``, Table 3 (images ``1 x 400 x 200``: the paper's "(400, 200)" read as height x
  width, since the bodies stand upright; ``D = 80,000``): encoders (256, 128), decoder (128, 256).
* ``celeba_conv``, Table 4 (images ``3 x 128 x 128``): separate mean and variance encoders of
  three stride-2 convolutions, ``Conv(10, 5) -> Conv(20, 5) -> Conv(40, 3)``, each halving the
  size (``128 -> 64 -> 32 -> 16``; padding ``k // 2``), then a dense layer to ``d``; the decoder
  is a dense layer from ``z`` to ``40 x 8 x 8`` (the table starts at the first DeConv and leaves
  this layer implicit) and four stride-2 transposed convolutions,
  ``DeConv(40, 3) -> DeConv(20, 3) -> DeConv(10, 5) -> DeConv(C, 5)``, each doubling the size
  (``8 -> 16 -> 32 -> 64 -> 128``; padding ``k // 2``, output padding 1).

Every hidden layer is followed by LeakyReLU(0.1); the variance encoders end in softplus. The
decoder's last layer is linear here: the output activation (the tables' Sigmoid, or none) belongs
to the likelihood, which also decides how many channels the decoder emits (a learned variance
doubles them). ``width`` scales every hidden layer (units or channels): the VITAE models use about
half the neurons per network (``width = 0.5``) so that their total size matches a VAE's.

The VITAE perspective decoder ``g_P`` is an MLP from ``z_P`` to the transformation parameters on
every architecture, with ``perspective_hidden`` units: the MLP decoders' hidden sizes, and for the
conv net, which the supplement does not list one for, (64, 64).

``conv`` is Table 4's conv net for any size divisible by 16, ``mlp`` Table 1's MLP for any size.
``auto`` (the default) picks for the data: the shipped architecture made for exactly its shape,
else ``conv`` for images of at least 64 x 64 whose sides divide by 16, else ``mlp``.

Your own networks: ``register(name, encoder=..., decoder=...)`` (``Custom``), or any
``Architecture`` instance; the name then works like a shipped one (``docs/own_networks.md``).

Convention: encoders take images ``[B, C, H, W]`` and return a ``DiagonalGaussian`` over
``[B, d]``; decoders take ``[B, d]`` and return the raw output ``[B, C', H, W]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from vitae import plugins
from vitae.errors import VitaeError
from vitae.models.distributions import DiagonalGaussian
from vitae.models.dense import Dense
from vitae.models.doubling_conv import DoublingConv

LEAKY_SLOPE = 0.1
MIN_VARIANCE = 1e-6  # keeps log(var) finite when softplus underflows


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with LeakyReLU(0.1) between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(LEAKY_SLOPE))
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """``q(z | x) = N(mu(x), diag(sigma^2(x)))`` with separate mean and variance MLPs."""

    def __init__(self, image_shape, latent_dim: int, hidden: list[int]):
        super().__init__()
        n_in = int(torch.Size(image_shape).numel())
        self.mean_net = mlp([n_in, *hidden, latent_dim])
        self.var_net = mlp([n_in, *hidden, latent_dim])

    def forward(self, x: torch.Tensor) -> DiagonalGaussian:
        flat = x.flatten(1)
        return DiagonalGaussian(self.mean_net(flat), F.softplus(self.var_net(flat)) + MIN_VARIANCE)


class MLPDecoder(nn.Module):
    """An MLP from ``z`` to ``prod(out_shape)`` units, reshaped to ``out_shape``."""

    def __init__(self, latent_dim: int, out_shape, hidden: list[int]):
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.net = mlp([latent_dim, *hidden, int(torch.Size(out_shape).numel())])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.out_shape)


# Convolutions run channels-last (weights and feature maps): oneDNN's kernels for the Table 4 net
# are faster so on a 2-core AVX512 CPU, in float32 and more in bfloat16; the values are the same
# convolutions, summed in another order
CONV_LAYOUT = torch.channels_last


def conv_stack(in_channels: int, layers: list[tuple[int, int]]) -> nn.Sequential:
    """Stride-2 convolutions ``(channels, kernel)`` with padding ``kernel // 2`` (each halves an
    even size exactly), each followed by LeakyReLU(0.1), then flattened."""
    modules: list[nn.Module] = []
    for channels, kernel in layers:
        modules += [nn.Conv2d(in_channels, channels, kernel, stride=2, padding=kernel // 2), nn.LeakyReLU(LEAKY_SLOPE)]
        in_channels = channels
    return nn.Sequential(*modules, nn.Flatten())


class ConvEncoder(nn.Module):
    """``q(z | x)`` with separate mean and variance conv nets, each ending in a dense layer."""

    def __init__(self, image_shape, latent_dim: int, layers: list[tuple[int, int]]):
        super().__init__()
        channels, height, width = image_shape
        features = layers[-1][0] * (height >> len(layers)) * (width >> len(layers))
        self.mean_net = nn.Sequential(conv_stack(channels, layers), Dense(features, latent_dim))
        self.var_net = nn.Sequential(conv_stack(channels, layers), Dense(features, latent_dim))
        self.to(memory_format=CONV_LAYOUT)

    def forward(self, x: torch.Tensor) -> DiagonalGaussian:
        x = x.contiguous(memory_format=CONV_LAYOUT)
        if x.device.type == "cpu":
            mean_h, var_h = paired_stacks(x, self.mean_net[0], self.var_net[0])
            return DiagonalGaussian(self.mean_net[1](mean_h), F.softplus(self.var_net[1](var_h)) + MIN_VARIANCE)
        return DiagonalGaussian(self.mean_net(x), F.softplus(self.var_net(x)) + MIN_VARIANCE)


def paired_stacks(x: torch.Tensor, first: nn.Sequential, second: nn.Sequential) -> tuple[torch.Tensor, torch.Tensor]:
    """``first(x), second(x)`` for two ``conv_stack``s of the same shape, as one stack: the first
    convolutions as one with both weights (one read of ``x``, one gradient to it), the later ones
    as grouped convolutions (group 1 the first stack's channels, group 2 the second's). The same
    parameters, so checkpoints do not change; the same sums for the outputs, and the gradients to
    rounding. On this 2-core CPU the encoder pair of the Table 4 net trains faster so, in float32
    and bfloat16, most where the gradient to ``x`` is wanted (C-VITAE's appearance encoder reads
    the warped image), by a scratch probe while building it; ``benchmarks/table5.py
    --architecture celeba_conv`` times whole steps. Other devices keep the two nets apart (not
    measured there)."""
    h, groups = x, 1  # the first convolution reads x whole; the later ones, their own stack's channels
    for a, b in zip(first, second):
        if isinstance(a, nn.Conv2d):
            weight, bias = torch.cat([a.weight, b.weight]), torch.cat([a.bias, b.bias])
            h, groups = F.conv2d(h, weight, bias, a.stride, a.padding, a.dilation, groups=groups), 2
        elif isinstance(a, nn.Flatten):
            half = h.shape[1] // 2
            return a(h[:, :half]), b(h[:, half:])
        else:
            h = a(h)  # the activation, the same for both
    raise ValueError("paired_stacks needs conv_stacks ending in nn.Flatten")


class ConvDecoder(nn.Module):
    """A dense layer from ``z`` to the first feature map, then stride-2 transposed convolutions
    ``(channels, kernel)`` (padding ``kernel // 2``, output padding 1: each doubles the size;
    ``DoublingConv``, which computes them in a faster form under bfloat16 autocast); the last one
    has ``out_shape``'s channels and no activation."""

    def __init__(self, latent_dim: int, out_shape, layers: list[tuple[int, int]]):
        super().__init__()
        out_channels, height, width = out_shape
        self.start = (layers[0][0], height >> len(layers), width >> len(layers))
        self.dense = nn.Sequential(Dense(latent_dim, int(torch.Size(self.start).numel())), nn.LeakyReLU(LEAKY_SLOPE))
        modules: list[nn.Module] = []
        in_channels = layers[0][0]
        for i, (channels, kernel) in enumerate(layers):
            last = i == len(layers) - 1
            channels = out_channels if last else channels
            modules.append(DoublingConv(in_channels, channels, kernel))  # a ConvTranspose2d
            if not last:
                modules.append(nn.LeakyReLU(LEAKY_SLOPE))
            in_channels = channels
        self.net = nn.Sequential(*modules)
        self.to(memory_format=CONV_LAYOUT)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # the image stays channels-last: the likelihoods reduce it in any layout, and a copy to
        # the usual one (and back, for its gradient) cost two passes over the largest tensor
        return self.net(self.dense(z).view(-1, *self.start).contiguous(memory_format=CONV_LAYOUT))


@dataclass(frozen=True)
class Architecture:
    """One architecture: builds encoders and decoders for the image shape it expects (``None``
    where any size works), with every hidden layer scaled by ``width``."""

    image_shape: tuple[int, int, int] | None

    def scaled(self, sizes, width: float) -> list[int]:
        return [max(1, round(n * width)) for n in sizes]

    def check(self, image_shape) -> None:
        if self.image_shape is not None and tuple(image_shape) != self.image_shape:
            raise VitaeError(
                f"this architecture expects images of shape {self.image_shape}, the data has {tuple(image_shape)}"
            )

    def encoder(self, image_shape, latent_dim: int, width: float = 1.0) -> nn.Module:
        raise NotImplementedError

    def decoder(self, latent_dim: int, out_shape, width: float = 1.0) -> nn.Module:
        raise NotImplementedError

    def perspective_hidden(self, width: float = 1.0) -> list[int]:
        """Hidden sizes of the MLP ``g_P`` from ``z_P`` to the transformation parameters."""
        raise NotImplementedError


@dataclass(frozen=True)
class MLPArchitecture(Architecture):
    """Fully connected encoders and decoder (Tables 1 and 3)."""

    encoder_hidden: tuple[int, ...] = ()
    decoder_hidden: tuple[int, ...] = ()

    def encoder(self, image_shape, latent_dim: int, width: float = 1.0) -> nn.Module:
        self.check(image_shape)
        return MLPEncoder(image_shape, latent_dim, self.scaled(self.encoder_hidden, width))

    def decoder(self, latent_dim: int, out_shape, width: float = 1.0) -> nn.Module:
        return MLPDecoder(latent_dim, out_shape, self.scaled(self.decoder_hidden, width))

    def perspective_hidden(self, width: float = 1.0) -> list[int]:
        return self.scaled(self.decoder_hidden, width)


@dataclass(frozen=True)
class ConvArchitecture(Architecture):
    """Convolutional encoders and a transposed-convolutional decoder (Table 4); layers are
    ``(channels, kernel)``, all stride 2, so height and width must be multiples of
    ``2 ** len(decoder_layers)``."""

    encoder_layers: tuple[tuple[int, int], ...] = ()
    decoder_layers: tuple[tuple[int, int], ...] = ()
    perspective_sizes: tuple[int, ...] = ()

    def check(self, image_shape) -> None:
        super().check(image_shape)
        factor = 2 ** max(len(self.encoder_layers), len(self.decoder_layers))
        if any(size % factor for size in tuple(image_shape)[1:]):
            raise VitaeError(f"this architecture needs image height and width divisible by {factor}, the data has {tuple(image_shape)}")

    def _scaled_layers(self, layers, width: float) -> list[tuple[int, int]]:
        return [(max(1, round(channels * width)), kernel) for channels, kernel in layers]

    def encoder(self, image_shape, latent_dim: int, width: float = 1.0) -> nn.Module:
        self.check(image_shape)
        return ConvEncoder(image_shape, latent_dim, self._scaled_layers(self.encoder_layers, width))

    def decoder(self, latent_dim: int, out_shape, width: float = 1.0) -> nn.Module:
        return ConvDecoder(latent_dim, out_shape, self._scaled_layers(self.decoder_layers, width))

    def perspective_hidden(self, width: float = 1.0) -> list[int]:
        return self.scaled(self.perspective_sizes, width)


CELEBA_ENCODER = ((10, 5), (20, 5), (40, 3))
# the last layer's channel count is the likelihood's (the table's 3 for RGB means)
CELEBA_DECODER = ((40, 3), (20, 3), (10, 5), (3, 5))

ARCHITECTURES: dict[str, Architecture] = {
    "mnist_mlp": MLPArchitecture(image_shape=(1, 28, 28), encoder_hidden=(128, 64), decoder_hidden=(64, 64)),
    # dSprites (the paper gives no network for it): Table 1's MLP on 64x64 images
    "sprites_mlp": MLPArchitecture(image_shape=(1, 64, 64), encoder_hidden=(128, 64), decoder_hidden=(64, 64)),
    # any image size (users' own folders): Table 1's MLP
    "mlp": MLPArchitecture(image_shape=None, encoder_hidden=(128, 64), decoder_hidden=(64, 64)),
    "smpl_mlp": MLPArchitecture(image_shape=(1, 400, 200), encoder_hidden=(256, 128), decoder_hidden=(128, 256)),
    "celeba_conv": ConvArchitecture(image_shape=(3, 128, 128), encoder_layers=CELEBA_ENCODER,
                                    decoder_layers=CELEBA_DECODER, perspective_sizes=(64, 64)),
    # any size divisible by 16: Table 4's conv net
    "conv": ConvArchitecture(image_shape=None, encoder_layers=CELEBA_ENCODER, decoder_layers=CELEBA_DECODER,
                             perspective_sizes=(64, 64)),
}
SHIPPED = frozenset(ARCHITECTURES)
AUTO = "auto"


def auto(image_shape) -> str:
    """The architecture ``auto`` picks for ``image_shape``: the shipped one made for exactly that
    shape, else ``conv`` (at least 64 x 64, sides divisible by 16), else ``mlp``."""
    shape = tuple(int(n) for n in image_shape)
    exact = sorted(name for name in SHIPPED if ARCHITECTURES[name].image_shape == shape)
    if exact:
        return exact[0]
    _, height, width = shape
    return "conv" if min(height, width) >= 64 and height % 16 == 0 and width % 16 == 0 else "mlp"


def fitting(image_shape) -> list[str]:
    """The registered architectures that take images of ``image_shape``, ``auto`` first."""
    names = []
    for name in sorted(ARCHITECTURES):
        try:
            ARCHITECTURES[name].check(tuple(image_shape))
        except VitaeError:
            continue
        names.append(name)
    return [f"{AUTO} (here {auto(image_shape)})", *names]


def architecture(name: str) -> Architecture:
    """The registered architecture ``name`` (``auto`` needs the images: ``for_images``)."""
    return plugins.lookup(ARCHITECTURES, name, "architecture", also=(AUTO,))


def for_images(name: str, image_shape) -> Architecture:
    """Architecture ``name`` (or the one ``auto`` picks) checked against ``image_shape``; one that
    does not fit is a one-line error naming those that do."""
    shape = tuple(int(n) for n in image_shape)
    if name == AUTO:
        name = auto(shape)
    chosen = architecture(name)
    try:
        chosen.check(shape)
    except VitaeError as exc:
        reason = str(exc).replace("this architecture", f"architecture '{name}'", 1)
        raise VitaeError(f"{reason}; architectures that fit: {', '.join(fitting(shape))}") from None
    return chosen


class FeatureEncoder(nn.Module):
    """A user's network from images to features (flattened to ``[B, F]``), with the posterior's
    mean and variance layers on top: ``q(z | x) = N(W_mu h + b, softplus(W_var h + b))``."""

    def __init__(self, net: nn.Module, features: int, latent_dim: int):
        super().__init__()
        self.net = net
        self.mean = Dense(features, latent_dim)
        self.var = Dense(features, latent_dim)

    def forward(self, x: torch.Tensor) -> DiagonalGaussian:
        h = self.net(x).flatten(1)
        return DiagonalGaussian(self.mean(h), F.softplus(self.var(h)) + MIN_VARIANCE)


@torch.no_grad()
def _probe(net: nn.Module, x: torch.Tensor):
    """``net(x)`` in eval mode (no batch-norm statistics change), the mode restored after."""
    mode = net.training
    net.eval()
    try:
        return net(x)
    finally:
        net.train(mode)


@dataclass(frozen=True)
class Custom(Architecture):
    """Your own networks. ``make_encoder(image_shape)`` returns an ``nn.Module`` from images
    ``[B, C, H, W]`` to features ``[B, ...]`` (flattened; the mean and variance layers to each
    latent group are added, ``FeatureEncoder``); ``make_decoder(latent_dim, out_shape)`` returns an
    ``nn.Module`` from ``[B, latent_dim]`` to ``[B, *out_shape]``, raw (the likelihood applies its
    activation; ``out_shape``'s channels are doubled for a learned variance). Both are tried once
    on zeros when a model is built, so a wrong shape is an error then. ``width`` does not reach
    them; ``perspective_sizes`` are the hidden units of the VITAE's ``g_P``."""

    image_shape: tuple[int, int, int] | None = None
    make_encoder: Callable[..., nn.Module] | None = None
    make_decoder: Callable[..., nn.Module] | None = None
    perspective_sizes: tuple[int, ...] = (64, 64)
    name: str = "custom"

    def _built(self, factory, what: str, *args) -> nn.Module:
        net = factory(*args)
        if not isinstance(net, nn.Module):
            raise VitaeError(f"architecture '{self.name}': its {what} factory returned {type(net).__name__}, not an nn.Module")
        return net

    def encoder(self, image_shape, latent_dim: int, width: float = 1.0) -> nn.Module:
        self.check(image_shape)
        net = self._built(self.make_encoder, "encoder", tuple(image_shape))
        h = _probe(net, torch.zeros(2, *image_shape))
        if not isinstance(h, torch.Tensor) or h.dim() < 2 or h.shape[0] != 2:
            got = list(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
            raise VitaeError(f"architecture '{self.name}': the encoder must map images [B, {', '.join(map(str, image_shape))}] "
                             f"to features [B, ...]; on a batch of 2 it returned {got}")
        return FeatureEncoder(net, h[0].numel(), latent_dim)

    def decoder(self, latent_dim: int, out_shape, width: float = 1.0) -> nn.Module:
        net = self._built(self.make_decoder, "decoder", latent_dim, tuple(out_shape))
        out = _probe(net, torch.zeros(2, latent_dim))
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, *out_shape):
            got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise VitaeError(f"architecture '{self.name}': the decoder must map [B, {latent_dim}] to "
                             f"[B, {', '.join(map(str, out_shape))}]; on a batch of 2 it returned {got}")
        return net

    def perspective_hidden(self, width: float = 1.0) -> list[int]:
        return list(self.perspective_sizes)


def register(name: str, architecture: Architecture | None = None, *, encoder: Callable[..., nn.Module] | None = None,
             decoder: Callable[..., nn.Module] | None = None, perspective_hidden=(64, 64),
             image_shape=None) -> Architecture:
    """Register an architecture under ``name``: an ``Architecture``, or your ``encoder`` and
    ``decoder`` factories (``Custom``); ``image_shape`` (``C, H, W``) when they take one size only.
    Returns what was registered."""
    if architecture is None:
        if not (callable(encoder) and callable(decoder)):
            raise ValueError("register needs an Architecture, or both encoder= and decoder= factories "
                             "(callables returning nn.Modules)")
        shape = None if image_shape is None else tuple(int(n) for n in image_shape)
        if shape is not None and len(shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {image_shape!r}")
        architecture = Custom(image_shape=shape, make_encoder=encoder, make_decoder=decoder,
                              perspective_sizes=tuple(int(n) for n in perspective_hidden), name=str(name))
    elif not isinstance(architecture, Architecture) or encoder is not None or decoder is not None:
        raise ValueError("architecture must be an Architecture (vitae.models.networks), given without encoder=/decoder=")
    elif isinstance(architecture, Custom):
        architecture = replace(architecture, name=str(name))
    plugins.register(ARCHITECTURES, SHIPPED | {AUTO}, name, architecture, "architecture")
    return architecture
