"""Centred, orthonormal 2D FFTs over the last two axes (readout, phase encode).

"Centred" means the DC sample sits at index ``n // 2`` in both image and k-space
(``fftshift`` convention), matching fastMRI's ``fastmri.fft2c`` and BART's
``fftc`` up to BART's sign convention. "Orthonormal" (``norm="ortho"``) keeps
noise white with unchanged variance across domains, which SNR and g-factor
calculations rely on.
"""

from __future__ import annotations

import torch

_DIMS = (-2, -1)


def fftc(image: torch.Tensor, dims: tuple[int, ...] = _DIMS) -> torch.Tensor:
    """Image -> k-space, centred orthonormal FFT over ``dims``."""
    x = torch.fft.ifftshift(image, dim=dims)
    x = torch.fft.fftn(x, dim=dims, norm="ortho")
    return torch.fft.fftshift(x, dim=dims)


def ifftc(kspace: torch.Tensor, dims: tuple[int, ...] = _DIMS) -> torch.Tensor:
    """k-space -> image, centred orthonormal inverse FFT over ``dims``."""
    x = torch.fft.ifftshift(kspace, dim=dims)
    x = torch.fft.ifftn(x, dim=dims, norm="ortho")
    return torch.fft.fftshift(x, dim=dims)


def rss(coil_images: torch.Tensor, coil_dim: int = -3) -> torch.Tensor:
    """Root-sum-of-squares coil combination (magnitude), as fastMRI's ``rss``."""
    return torch.sqrt((coil_images.abs() ** 2).sum(dim=coil_dim))
