"""The conv decoders' stride-2 transposed convolution, which doubles an image's size, and the same
function as a convolution on the input followed by an interleave of its output phases
("sub-pixel" form), used under bfloat16 autocast on the CPU.

A transposed convolution of stride 2, odd kernel ``k``, padding ``k // 2`` and output padding 1
gives output pixel ``2m + a`` (per axis, ``a`` in ``{0, 1}``) from input pixels ``m + d`` through
its taps ``t = a + k // 2 - 2d``. For ``k = 3`` and ``k = 5`` every ``d`` lies in ``-1 .. 1``, so
the four output phases ``(a, b)`` are one 3 x 3 convolution of the input with ``4 C_out``
channels (the taps of each phase in place, zeros elsewhere), and interleaving the phases' pixels
is the output. The weights stay those of ``nn.ConvTranspose2d`` (checkpoints are unchanged); the
3 x 3 kernels are gathered from them on each call, a few thousand numbers.

On this machine's oneDNN the transposed convolutions of the Table 4 decoder are no faster in
bfloat16 than in float32, while the sub-pixel form is (timed layer by layer while building it;
``benchmarks/table5.py --architecture celeba_conv --amp`` has the steps it gives); in float32 the
transposed convolution is the faster, so it stays the path there and everywhere else. The two agree to rounding (``tests/models/test_doubling_conv.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def phase_taps(kernel: int) -> torch.Tensor | None:
    """``[2, 3]`` per phase ``a`` and offset ``d + 1``: the transposed kernel's tap ``t``, or
    ``kernel`` where none lands there; ``None`` where some tap's offset is outside ``-1 .. 1``."""
    pad = kernel // 2
    taps = torch.full((2, 3), kernel, dtype=torch.long)
    for a in range(2):
        for t in range(kernel):
            if (a + pad - t) % 2 == 0:
                d = (a + pad - t) // 2
                if not -1 <= d <= 1:
                    return None
                taps[a, d + 1] = t
    return taps


class DoublingConv(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d(in_channels, out_channels, kernel, stride=2, padding=kernel // 2,
    output_padding=1)``, which takes the sub-pixel form under bfloat16 autocast on the CPU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int):
        super().__init__(in_channels, out_channels, kernel, stride=2, padding=kernel // 2, output_padding=1)
        taps = phase_taps(kernel)
        # index into the flattened kernel (plus one zero) of each tap of the sub-pixel kernel:
        # [a, b, d + 1, e + 1] -> tap (t, s) as t * kernel + s, or kernel^2 for none
        index = None
        if taps is not None:
            rows, cols = taps[:, None, :, None], taps[None, :, None, :]
            index = torch.where((rows < kernel) & (cols < kernel), rows * kernel + cols, kernel * kernel)
        self.register_buffer("subpixel_index", index, persistent=False)

    def subpixel_weight(self) -> torch.Tensor:
        """The sub-pixel form's kernel ``[4 C_out, C_in, 3, 3]``, channel ``(2 a + b) C_out + c``."""
        c_in, c_out, k, _ = self.weight.shape
        flat = torch.cat([self.weight.reshape(c_in, c_out, k * k), self.weight.new_zeros(c_in, c_out, 1)], dim=2)
        gathered = flat[:, :, self.subpixel_index]  # [C_in, C_out, 2, 2, 3, 3]
        return gathered.permute(2, 3, 1, 0, 4, 5).reshape(4 * c_out, c_in, 3, 3)

    def subpixel(self, x: torch.Tensor) -> torch.Tensor:
        """The same function as ``forward``'s transposed convolution, as a convolution and an
        interleave of its four phases: with the phases outermost in the channels, the
        interleave of a channels-last map is one copy of runs of ``2 C_out`` numbers, several
        times faster here than ``pixel_shuffle``'s."""
        bias = self.bias.repeat(4) if self.bias is not None else None
        phases = F.conv2d(x, self.subpixel_weight(), bias, padding=1)  # [B, 4 C, H, W]
        batch, _, height, width = phases.shape
        c = self.out_channels
        rows = phases.permute(0, 2, 3, 1).reshape(batch, height, width, 2, 2, c)  # [B, H, W, a, b, C]
        interleaved = rows.permute(0, 1, 3, 2, 4, 5).reshape(batch, 2 * height, 2 * width, c)
        return interleaved.permute(0, 3, 1, 2)  # [B, C, 2H, 2W], channels-last

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        if (self.subpixel_index is not None and output_size is None and x.device.type == "cpu"
                and torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16):
            return self.subpixel(x)
        return super().forward(x, output_size)
