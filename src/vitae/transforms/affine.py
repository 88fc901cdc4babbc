"""The three affine parameterisations of supplement Section 3 (equations 1-3).

Convention: see ``vitae.transforms.base``. Every family has ``theta_dim = 6``, ``theta = 0`` is
the identity, and the inverse is the exact matrix inverse ``[A^-1 | -A^-1 b]`` (for the
diffeomorphic family ``expm(-Gamma)``, the same matrix computed in closed form).
"""

from __future__ import annotations

import torch

from vitae.transforms import affine_exp
from vitae.transforms.base import MatrixTransform, invert_affine


class Affine(MatrixTransform):
    """Equation 1: the 2x3 matrix directly, ``[A | b] = [I | 0] + theta.view(2, 3)``.

    ``theta = (g11, g12, g13, g21, g22, g14)`` row by row; ``g13, g14`` are the translation.
    Nothing keeps ``A`` invertible: this is the family that the stability study shows to diverge.
    """

    name = "affine"
    theta_dim = 6

    def matrix(self, theta: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        self.check_theta(theta)
        eye = torch.eye(2, 3, dtype=theta.dtype, device=theta.device)
        m = eye + theta.view(-1, 2, 3)
        return invert_affine(m) if inverse else m


class AffineDecomp(MatrixTransform):
    """Equation 2: rotation . shear . scale + translation.

    ``theta = (alpha, m, s_x, s_y, t_x, t_y)`` with ``A = R(alpha) [[1, m], [0, 1]] diag(1 + s_x,
    1 + s_y)`` and ``b = (t_x, t_y)``; scales are offset by one so that ``theta = 0`` is the
    identity. The inverse is the matrix inverse (not the negated parameters, which would undo the
    factors in the wrong order).
    """

    name = "affine_decomp"
    theta_dim = 6

    def matrix(self, theta: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        self.check_theta(theta)
        alpha, shear, sx, sy, tx, ty = theta.unbind(1)
        cos, sin = torch.cos(alpha), torch.sin(alpha)
        sx, sy = 1 + sx, 1 + sy
        # R @ [[1, m], [0, 1]] @ diag(sx, sy), multiplied out
        a11, a12 = cos * sx, (cos * shear - sin) * sy
        a21, a22 = sin * sx, (sin * shear + cos) * sy
        m = torch.stack([a11, a12, tx, a21, a22, ty], dim=1).view(-1, 2, 3)
        return invert_affine(m) if inverse else m


class AffineDiffeo(MatrixTransform):
    """Equation 3 (the default): ``[A | b] = expm([[g11, g12, g13], [g21, g22, g14], [0, 0, 0]])``.

    Always invertible and orientation preserving; ``T_theta^{-1} = T_{-theta}`` exactly, since
    ``expm(-Gamma) = expm(Gamma)^-1``.
    """

    name = "affine_diffeo"
    theta_dim = 6

    def matrix(self, theta: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        self.check_theta(theta)
        if affine_exp.usable(theta):  # on the CPU, the compiled expm where it builds
            return affine_exp.expm(-theta if inverse else theta)
        gamma = torch.cat([theta.view(-1, 2, 3), theta.new_zeros(theta.shape[0], 1, 3)], dim=1)
        return torch.linalg.matrix_exp(-gamma if inverse else gamma)[:, :2, :]
