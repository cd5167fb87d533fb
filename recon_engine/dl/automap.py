"""AUTOMAP-style direct mapping: undersampled k-space in, image out (Zhu et al., Nature 2018).

Two fully connected layers map the real and imaginary parts of the whole k-space
(``2 N`` values, ``N = H x W``) to an ``H x W`` image representation (tanh), then a
convolutional stage (two 5x5 convolutions and a 7x7 transposed convolution) refines it.
The fully connected layers make the parameter count grow as ``N^2`` (about ``3 N^2``):
at 32x32 that is 3.1 M parameters, at 64x64 already 50 M (200 MB of float32) - so
the network is trained and shipped at a small matrix and refuses any other.

Multi-coil input is first compressed to one virtual coil (principal component of the
coil covariance of the sampled k-space, phase fixed so the k-space centre is real and
positive); the network is thus independent of the coil count.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from recon_engine.fft import ifftc
from recon_engine.linalg import eigh

__all__ = ["Automap", "dft_initialise", "normalise", "virtual_coil"]


def virtual_coil(kspace: torch.Tensor) -> torch.Tensor:
    """``(S, C, H, W)`` complex -> ``(S, H, W)``: projection on the dominant coil component.

    The component is the top eigenvector of the ``C x C`` coil covariance of each slice's
    k-space; its global phase is chosen so the centre sample (``H // 2, W // 2``) is real
    and positive, removing the eigenvector's arbitrary phase.
    """
    s, c, h, w = kspace.shape
    flat = kspace.reshape(s, c, h * w).to(torch.complex128)
    cov = flat @ flat.conj().transpose(1, 2)
    ridge = 1e-9 * cov.diagonal(dim1=1, dim2=2).real.mean(dim=1).clamp_min(1e-30)
    cov = cov + ridge[:, None, None] * torch.eye(c, dtype=cov.dtype, device=cov.device)
    _, vecs = eigh(cov)
    top = vecs[..., -1]  # (S, C), eigenvalues ascending
    vc = (top.conj()[:, :, None] * flat).sum(dim=1).reshape(s, h, w).to(torch.complex64)
    centre = vc[:, h // 2, w // 2]
    phase = torch.where(centre.abs() > 0, centre / centre.abs().clamp_min(1e-30), 1.0 + 0j)
    return vc * phase.conj()[:, None, None]


class Automap(nn.Module):
    """``(B, H, W)`` complex normalised k-space -> ``(B, H, W)`` real image."""

    def __init__(
        self,
        matrix: list[int] | tuple[int, int] = (32, 32),
        conv_chans: int = 32,
        drop_prob: float = 0.0,
    ) -> None:
        super().__init__()
        self.matrix = (int(matrix[0]), int(matrix[1]))
        n = math.prod(self.matrix)
        self.fc = nn.Sequential(
            nn.Linear(2 * n, n),
            nn.Tanh(),
            nn.Dropout(drop_prob),
            nn.Linear(n, n),
            nn.Tanh(),
            nn.Dropout(drop_prob),
        )
        self.conv = nn.Sequential(
            nn.Conv2d(1, conv_chans, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(conv_chans, conv_chans, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(conv_chans, 1, 7, padding=3),
        )

    def forward(self, kspace: torch.Tensor) -> torch.Tensor:
        """kspace ``(B, H, W)`` complex, ``(H, W) == matrix``, scaled to unit RMS."""
        b = kspace.shape[0]
        x = torch.cat([kspace.real.reshape(b, -1), kspace.imag.reshape(b, -1)], dim=1)
        hidden = self.fc(x).reshape(b, 1, *self.matrix)
        return (hidden + self.conv(hidden))[:, 0]


def normalise(kspace: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(k / scale, scale)`` with ``scale`` ``(S, 1, 1)`` = RMS of each slice's k-space
    times ``sqrt(H W)`` / 10 (so images come out of order 1); the image is rescaled by it."""
    s = kspace.shape[0]
    scale = kspace.abs().reshape(s, -1).pow(2).mean(dim=1).sqrt().clamp_min(1e-12)
    scale = (scale * math.sqrt(kspace.shape[-1] * kspace.shape[-2]) / 10).view(s, 1, 1)
    return kspace / scale, scale


def dft_initialise(model: Automap) -> None:
    """Start training from the physics: the first layer computes the real part of the
    centred orthonormal inverse DFT of the (phase-normalised) k-space, the second is the
    identity, so the untrained network already outputs about the zero-filled image and
    training learns the de-aliasing on top (AUTOMAP from random weights needs far more
    data than the shipped demonstrator is trained on)."""
    h, w = model.matrix
    n = h * w
    unit = torch.eye(n, dtype=torch.complex64).reshape(n, h, w)
    images = ifftc(unit).reshape(n, n)  # row j: the image of a unit sample at k-space index j
    first, second = model.fc[0], model.fc[3]
    with torch.no_grad():
        first.weight.copy_(torch.cat([images.real.T, -images.imag.T], dim=1))
        first.bias.zero_()
        second.weight.copy_(torch.eye(n))
        second.bias.zero_()
