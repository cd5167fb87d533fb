"""Where a reconstruction departs from the truth: error, hallucination, data consistency, FRC.

Images are magnitude ``(H, W)`` (or ``(N, H, W)`` stacks, mapped per image) in the same
units as the reference; k-space is ``(N, C, H, W)`` complex with a 0/1 mask broadcastable
to it.

- error map: ``|recon - reference|``.
- hallucination map: the error map outside the findings' truth masks (dilated by
  ``margin_px``) and inside the object: what a reader could take for a structure that is
  not there. Zero inside the truth masks and outside the object.
- data-consistency residual: ``rss_c ifft(M (F(S_c x) - y))`` for a complex estimate
  ``x`` (the magnitude with a known phase) and coil maps ``S``: how far the image is from
  the measured samples (what it contradicts, not what it invents where nothing was
  measured).
- local Fourier-ring correlation (FRC; Saxton & Baumeister, J Microsc 1982; used locally
  as the FDA's scanning FRC, DIDSR/sfrc): the FRC of the reconstruction and the reference
  in overlapping Hann-windowed patches, averaged over the high-frequency band; low where
  fine detail differs from the truth (smoothed away or made up).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from recon_engine.fft import fftc, ifftc, rss
from recon_engine.registry import ParameterError


def _as_images(image, name: str, magnitude: bool = True) -> np.ndarray:
    array = np.asarray(image.detach().cpu() if torch.is_tensor(image) else image)
    array = (np.abs(array) if magnitude or np.iscomplexobj(array) else array).astype(np.float64)
    if array.ndim not in (2, 3):
        raise ParameterError(f"{name} must be (H, W) or (N, H, W), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ParameterError(f"{name} contains NaN or infinite values")
    return array


def error_map(recon, reference) -> np.ndarray:
    """``|recon - reference|`` with the recon's shape; reference ``(H, W)`` broadcasts."""
    recon, reference = _as_images(recon, "recon"), _as_images(reference, "reference")
    if recon.shape[-2:] != reference.shape[-2:]:
        raise ParameterError(f"recon {recon.shape} and reference {reference.shape} differ")
    return np.abs(recon - reference)


def hallucination_map(
    recon, reference, truth=None, object_mask=None, margin_px: int = 2
) -> np.ndarray:
    """Error outside the (dilated) truth masks and inside the object (module doc).

    ``truth``: ``(H, W)`` or ``(K, H, W)`` bool masks of the inserted findings (None: no
    finding). ``object_mask``: ``(H, W)`` bool; default magnitude above 10 % of the
    reference's maximum.
    """
    errors = error_map(recon, reference)
    reference = _as_images(reference, "reference")
    shape = errors.shape[-2:]
    ref2d = reference if reference.ndim == 2 else reference.mean(axis=0)
    keep = ref2d > 0.1 * ref2d.max() if object_mask is None else np.asarray(object_mask, bool)
    if truth is not None:
        truth = np.asarray(truth, dtype=bool)
        truth = truth if truth.ndim == 2 else truth.any(axis=0)
        if truth.shape != shape:
            raise ParameterError(f"truth mask {truth.shape} does not match the images {shape}")
        if margin_px > 0:
            truth = ndimage.binary_dilation(truth, iterations=int(margin_px))
        keep = keep & ~truth
    return errors * keep


def data_consistency_residual(
    image: torch.Tensor, phase: torch.Tensor, sensitivities: torch.Tensor, kspace, mask
) -> torch.Tensor:
    """``(N, H, W)`` residual magnitude of a magnitude estimate against measured samples.

    image: ``(N, H, W)`` magnitude; phase: ``(H, W)`` radians (the simulation's known
    phase); sensitivities: ``(C, H, W)`` or ``(N, C, H, W)``; kspace: ``(N, C, H, W)`` (zero
    where not sampled); mask: 0/1 broadcastable to kspace.
    """
    image = torch.as_tensor(image).abs().to(torch.float32)
    if image.ndim == 2:
        image = image[None]
    estimate = torch.polar(image, torch.as_tensor(phase, dtype=torch.float32).expand_as(image))
    maps = torch.as_tensor(sensitivities)
    maps = maps if maps.ndim == 4 else maps[None]
    predicted = fftc(maps * estimate[:, None])
    mask = torch.as_tensor(mask, dtype=torch.float32)
    return rss(ifftc(mask * (predicted - torch.as_tensor(kspace))), coil_dim=1)


def frc_curve(image_a, image_b, n_rings: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fourier-ring correlation of two ``(H, W)`` images: ``(frequencies, frc)``.

    frequencies in cycles/pixel (ring centres, 0 to 0.5); ``frc[k] = Re sum A B* /
    sqrt(sum |A|^2 sum |B|^2)`` over ring ``k`` (Saxton & Baumeister 1982).
    """
    a = _as_images(image_a, "image_a", magnitude=False)
    b = _as_images(image_b, "image_b", magnitude=False)
    if a.ndim != 2 or a.shape != b.shape:
        raise ParameterError(f"FRC needs two (H, W) images of one shape, got {a.shape}, {b.shape}")
    h, w = a.shape
    fa, fb = np.fft.fftshift(np.fft.fft2(a)), np.fft.fftshift(np.fft.fft2(b))
    fy = np.fft.fftshift(np.fft.fftfreq(h))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(w))[None, :]
    radius = np.hypot(fy, fx)
    n_rings = n_rings or min(h, w) // 2
    edges = np.linspace(0.0, 0.5, n_rings + 1)
    ring = np.digitize(radius, edges) - 1
    inside = (ring >= 0) & (ring < n_rings)
    ring, cross = ring[inside], (fa * np.conj(fb)).real[inside]
    power_a, power_b = (np.abs(fa) ** 2)[inside], (np.abs(fb) ** 2)[inside]
    numerator = np.bincount(ring, cross, n_rings)
    denominator = np.sqrt(np.bincount(ring, power_a, n_rings) * np.bincount(ring, power_b, n_rings))
    frc = np.divide(numerator, denominator, out=np.zeros(n_rings), where=denominator > 0)
    return (edges[:-1] + edges[1:]) / 2, frc


def local_frc_map(
    recon,
    reference,
    window: int = 32,
    step: int = 16,
    band: tuple[float, float] = (0.25, 0.5),
) -> np.ndarray:
    """``(H, W)`` map of the local FRC of ``recon`` vs ``reference`` in a frequency band.

    Each ``window``-pixel patch (every ``step`` pixels, Hann-windowed, patch mean removed)
    gets the mean FRC over rings in ``band`` (cycles/pixel); a pixel gets the mean over
    the patches that cover it. 1 = fine detail as in the reference; near 0 = unrelated.
    """
    recon, reference = _as_images(recon, "recon"), _as_images(reference, "reference")
    if recon.ndim != 2 or recon.shape != reference.shape:
        raise ParameterError("local FRC needs two (H, W) images of one shape")
    h, w = recon.shape
    if window < 8 or window > min(h, w) or step < 1:
        raise ParameterError(f"window must be 8..{min(h, w)} pixels and step >= 1")
    taper = np.outer(np.hanning(window), np.hanning(window))
    total, count = np.zeros((h, w)), np.zeros((h, w))
    starts_r = sorted({*range(0, h - window + 1, step), h - window})
    starts_c = sorted({*range(0, w - window + 1, step), w - window})
    for r0 in starts_r:
        for c0 in starts_c:
            pa = recon[r0 : r0 + window, c0 : c0 + window]
            pb = reference[r0 : r0 + window, c0 : c0 + window]
            freqs, frc = frc_curve((pa - pa.mean()) * taper, (pb - pb.mean()) * taper)
            in_band = (freqs >= band[0]) & (freqs <= band[1])
            total[r0 : r0 + window, c0 : c0 + window] += frc[in_band].mean()
            count[r0 : r0 + window, c0 : c0 + window] += 1
    return total / np.maximum(count, 1)


def map_summary(recon, reference, truth=None) -> dict:
    """Scalar summaries (JSON-friendly) of the maps for a ``(H, W)`` or ``(N, H, W)`` recon.

    ``hallucination_max``/``_p99``: largest and 99th-percentile error outside the findings
    relative to the reference's maximum; ``local_frc_min``/``_mean``: over the object.
    """
    recon_arr = _as_images(recon, "recon")
    reference_arr = _as_images(reference, "reference")
    hall = hallucination_map(recon_arr, reference_arr, truth)
    scale = float(reference_arr.max()) or 1.0
    first = recon_arr if recon_arr.ndim == 2 else recon_arr[0]
    frc = local_frc_map(first, reference_arr if reference_arr.ndim == 2 else reference_arr[0])
    keep = reference_arr > 0.1 * reference_arr.max()
    keep = keep if keep.ndim == 2 else keep.any(axis=0)
    outside = hall[..., keep]
    return {
        "hallucination_max": float(outside.max() / scale) if outside.size else 0.0,
        "hallucination_p99": float(np.percentile(outside, 99) / scale) if outside.size else 0.0,
        "local_frc_min": float(frc[keep].min()),
        "local_frc_mean": float(frc[keep].mean()),
    }
