"""Super-resolution baselines: k-space zero padding, bicubic and cubic B-spline.

All take a batch of images and an integer ``factor`` and enlarge the axes in ``dims``
(``(-2, -1)`` in-plane on ``(S, H, W)``; ``(0,)`` through-plane along slices). Pixel
centres follow the "area" convention (``align_corners=False`` / ``grid_mode=True``):
output sample ``j`` sits at input coordinate ``(j + 0.5) / factor - 0.5``.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F

from recon_engine.registry import ReconError


def _check(image: torch.Tensor, factor: int, dims: tuple[int, ...]) -> tuple[int, ...]:
    if image.ndim != 3:
        raise ReconError(f"super-resolution needs an (S, H, W) image, got {tuple(image.shape)}")
    if image.numel() == 0:
        raise ReconError("super-resolution input image is empty")
    if not bool(torch.isfinite(image.abs() if image.is_complex() else image).all()):
        raise ReconError("super-resolution input image contains NaN or infinite values")
    if not isinstance(factor, int) or factor < 1:
        raise ReconError(f"upsampling factor must be a positive integer, got {factor!r}")
    norm = tuple(sorted({d % 3 for d in dims}))
    if not norm:
        raise ReconError("no axis to upsample")
    return norm


def zero_fill_upsample(image: torch.Tensor, factor: int, dims: tuple[int, ...] = (-2, -1)):
    """Sinc interpolation: centred FFT, zero-pad the spectrum ``factor``-fold, inverse FFT.

    Amplitude is preserved (the orthonormal transforms are rescaled by ``sqrt(factor)``
    per axis). Complex input gives complex output; real input gives the real part (the
    imaginary part comes only from the unpaired Nyquist sample of even sizes).
    """
    axes = _check(image, factor, dims)
    x = image.to(torch.complex64) if not image.is_complex() else image
    spec = torch.fft.fftshift(
        torch.fft.fftn(torch.fft.ifftshift(x, axes), dim=axes, norm="ortho"), axes
    )
    out_shape = list(x.shape)
    index = [slice(None)] * 3
    for a in axes:
        n = x.shape[a]
        out_shape[a] = n * factor
        start = (n * factor) // 2 - n // 2
        index[a] = slice(start, start + n)
    padded = spec.new_zeros(out_shape)
    padded[tuple(index)] = spec
    out = torch.fft.fftshift(
        torch.fft.ifftn(torch.fft.ifftshift(padded, axes), dim=axes, norm="ortho"), axes
    ) * (factor ** (len(axes) / 2))
    return out if image.is_complex() else out.real.to(image.dtype)


def bicubic_upsample(image: torch.Tensor, factor: int, dims: tuple[int, ...] = (-2, -1)):
    """Keys cubic convolution (a = -0.75, torch's ``bicubic``), edges replicated.

    Runs on the image's device, batched over slices; complex images are interpolated
    as real and imaginary parts.
    """
    axes = _check(image, factor, dims)
    if image.is_complex():
        return torch.complex(
            bicubic_upsample(image.real, factor, axes), bicubic_upsample(image.imag, factor, axes)
        )
    x = image.float()
    if axes == (1, 2):
        return F.interpolate(x[:, None], scale_factor=factor, mode="bicubic")[:, 0]
    # one axis: interpolate the (axis, other) plane with scale 1 on the other axis, which
    # reproduces its samples exactly (the cubic kernel is 1 at 0 and 0 at other integers)
    other = 2 if axes != (2,) else 1
    rest = ({0, 1, 2} - {axes[0], other}).pop()
    plane = x.permute(rest, axes[0], other)[:, None]
    up = F.interpolate(plane, scale_factor=(factor, 1), mode="bicubic")[:, 0]
    inverse = np.argsort((rest, axes[0], other))
    return up.permute(*inverse.tolist())


def bspline_upsample(image: torch.Tensor, factor: int, dims: tuple[int, ...] = (-2, -1)):
    """Cubic B-spline interpolation (``scipy.ndimage.zoom``, order 3, mirror boundary).

    Unlike the cubic convolution this prefilters so the spline passes through the
    samples and reproduces polynomials up to degree 3. Runs on the CPU (SciPy).
    """
    axes = _check(image, factor, dims)
    zoom = [float(factor) if a in axes else 1.0 for a in range(3)]
    device = image.device

    def _zoom(arr: np.ndarray) -> np.ndarray:
        return scipy.ndimage.zoom(arr, zoom, order=3, mode="grid-mirror", grid_mode=True)

    arr = image.detach().cpu().numpy()
    if np.iscomplexobj(arr):
        out = _zoom(arr.real) + 1j * _zoom(arr.imag)
    else:
        out = _zoom(arr)
    return torch.from_numpy(np.ascontiguousarray(out)).to(device)


METHODS = {
    "zero_fill": zero_fill_upsample,
    "bicubic": bicubic_upsample,
    "bspline": bspline_upsample,
}
