"""Coil sensitivity estimation from the calibration (ACS) region, batched over slices.

Two estimators:

* :func:`espirit_maps` - ESPIRiT (Uecker et al., MRM 2014), one set of maps. The
  calibration matrix (all ``k x k`` patches of the ACS block, every coil) is built
  with ``Tensor.unfold``; its right singular vectors above ``threshold * sigma_max``
  span the signal subspace. Each kept vector, zero-padded to the image grid and
  inverse FFT'd, is a kernel image; per pixel ``r`` the maps are the dominant
  eigenvector of ``M(r) = (N / k^2) sum_j g_j(r) g_j(r)^H`` (``C x C``), cropped where
  the eigenvalue is below ``crop`` *and* the calibration data show no signal there
  (``keep_signal``), so low-signal anatomy that fills the FOV is not clipped.
  Conventions follow ``sigpy.mri.app.EspiritCalib`` (and BART ``ecalib -m 1``), against
  which the tests compare.
* :func:`acs_sensitivities` - low-resolution coil images from the Hann-windowed ACS
  block divided by their root-sum-of-squares (the classic mSENSE/ASSET prescan-free
  estimate).

Why hand-written: BART and SigPy work one slice at a time and spend most of their
time on the per-pixel eigenproblem. Two exact tricks make this implementation fast:

1. ``M(r)`` is a trigonometric polynomial with frequencies in ``[-(k-1), k-1]`` (the
   kernels have ``k x k`` support), so it is computed on a ``2k x 2k`` grid and
   interpolated *exactly* (zero-padded FFT) to any grid, instead of FFT'ing every
   kernel at full resolution (``n_kernels * C`` FFTs -> ``C^2`` FFTs).
2. The dominant eigenvectors are found by power iteration on a coarse grid
   (``coarse`` x fewer pixels per side), phase-aligned to a virtual body coil,
   bilinearly interpolated to the full grid and *refined* by ``refine_iter`` power
   iterations with the exact full-resolution ``M(r)``. Pixels whose eigen-residual
   ``||M v - lambda v|| / lambda`` is still above ``exact_tol`` (near-degenerate
   eigenvalues at object edges, a few percent) are solved exactly with a batched
   ``torch.linalg.eigh``. Against a full-resolution ``eigh`` of every pixel the maps
   agree to a mean ``|<a, b>| / (|a||b|)`` of 0.99999 inside the support (99.9 % of
   pixels above 0.999; SigPy's 100-iteration power method reaches 0.99987 / 99.4 %);
   tested in ``tests/engine/pi_cs/test_espirit.py``.

Phase convention: each pixel's map vector is rotated so that its projection on the
virtual body coil (dominant eigenvector of the ACS coil covariance) is real and
positive, which gives smooth phase without the singularities of "relative to coil 0".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from recon_engine.fft import ifftc
from recon_engine.linalg import eigh
from recon_engine.operators import (
    check_kspace,
    check_mask,
    check_sensitivities,
    slices_per_chunk,
)
from recon_engine.registry import Param, ParameterError, ReconError, ReconInput

__all__ = [
    "SENSITIVITY_PARAMS",
    "EspiritResult",
    "acs_sensitivities",
    "calibration_region",
    "espirit_maps",
    "extract_calibration",
    "resize_centered",
    "sensitivities_for",
]


@dataclass
class EspiritResult:
    """ESPIRiT output: ``maps`` ``(S, C, H, W)`` complex64, ``eigenvalues`` ``(S, H, W)``."""

    maps: torch.Tensor
    eigenvalues: torch.Tensor
    n_kernels: list[int]
    calib_shape: tuple[int, int]


def resize_centered(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Crop or zero-pad the last two axes to ``shape`` keeping index ``n // 2`` at ``N // 2``.

    Same convention as ``sigpy.resize`` and the centred FFT (DC at ``n // 2``).
    """
    out = x.new_zeros(*x.shape[:-2], *shape)
    slices_in, slices_out = [], []
    for n_in, n_out in zip(x.shape[-2:], shape):
        if n_out >= n_in:
            start = n_out // 2 - n_in // 2
            slices_in.append(slice(0, n_in))
            slices_out.append(slice(start, start + n_in))
        else:
            start = n_in // 2 - n_out // 2
            slices_in.append(slice(start, start + n_out))
            slices_out.append(slice(0, n_out))
    out[..., slices_out[0], slices_out[1]] = x[..., slices_in[0], slices_in[1]]
    return out


def _run_around(line: np.ndarray, centre: int) -> tuple[int, int]:
    """Start and stop of the run of ones in ``line`` containing (or nearest) ``centre``."""
    ones = np.flatnonzero(line > 0)
    if ones.size == 0:
        return centre, centre
    if line[centre] <= 0:
        centre = int(ones[np.argmin(np.abs(ones - centre))])
    lo = centre
    while lo > 0 and line[lo - 1] > 0:
        lo -= 1
    hi = centre + 1
    while hi < line.size and line[hi] > 0:
        hi += 1
    return lo, hi


def calibration_region(
    mask: torch.Tensor, shape: tuple[int, int, int, int], calib_size: int | None = None
) -> tuple[slice, slice]:
    """The fully sampled centre block of ``mask`` as ``(rows, cols)`` slices of ``(H, W)``.

    ``mask`` is an ACS mask or a sampling mask (``(1|S, 1, 1|H, W)``); for per-slice
    masks the block sampled in every slice is used. Along W it is the contiguous run
    of sampled lines containing the centre; along H it is every row for a 1D mask,
    otherwise the run along the centre column. ``calib_size`` caps both sides
    (centred), as BART's ``ecalib -r`` and SigPy's ``calib_width`` do.
    """
    _, _, h, w = shape
    m = check_mask(mask, shape, name="ACS mask")
    m2 = m.amin(dim=0)[0].cpu().numpy()  # sampled in every slice, (1|H, W)
    row = m2[0] if m2.shape[0] == 1 else m2[h // 2]
    c0, c1 = _run_around(row, w // 2)
    if m2.shape[0] == 1:
        r0, r1 = 0, h
    else:
        r0, r1 = _run_around(m2[:, (c0 + c1) // 2] if c1 > c0 else m2[:, w // 2], h // 2)
    if c1 <= c0 or r1 <= r0:
        raise ReconError("the ACS (calibration) region is empty: no fully sampled centre found")
    if calib_size is not None:
        r0, r1 = _cap(r0, r1, h // 2, calib_size)
        c0, c1 = _cap(c0, c1, w // 2, calib_size)
    return slice(r0, r1), slice(c0, c1)


def _cap(lo: int, hi: int, centre: int, size: int) -> tuple[int, int]:
    if hi - lo <= size:
        return lo, hi
    start = min(max(lo, centre - size // 2), hi - size)
    return start, start + size


def extract_calibration(
    kspace: torch.Tensor,
    mask: torch.Tensor | None = None,
    acs_mask: torch.Tensor | None = None,
    calib_size: int | None = 24,
    min_size: int = 1,
) -> torch.Tensor:
    """The calibration block ``(S, C, h, w)`` of ``kspace`` (see :func:`calibration_region`).

    Raises :class:`ReconError` if the block is smaller than ``min_size`` on a side or
    holds no signal.
    """
    check_kspace(kspace)
    ref = acs_mask if acs_mask is not None else mask
    if ref is None:
        raise ReconError("need a sampling mask or an ACS mask to find the calibration region")
    rows, cols = calibration_region(ref, tuple(kspace.shape), calib_size)
    h, w = rows.stop - rows.start, cols.stop - cols.start
    if min(h, w) < min_size:
        raise ReconError(
            f"the ACS region is {h} x {w}, smaller than the {min_size} x {min_size} this "
            "calibration needs; acquire more ACS lines or use a smaller kernel"
        )
    calib = kspace[:, :, rows, cols]
    energy = (calib.abs() ** 2).reshape(calib.shape[0], -1).sum(dim=1)
    if bool((energy == 0).any()):
        raise ReconError("the ACS region holds no signal (all zeros) in at least one slice")
    return calib


def _virtual_coil(calib: torch.Tensor) -> torch.Tensor:
    """Dominant eigenvector of each slice's ACS coil covariance, ``(S, C)``."""
    flat = calib.reshape(calib.shape[0], calib.shape[1], -1).to(torch.complex128)
    cov = flat @ flat.conj().transpose(1, 2)
    _, vecs = eigh(cov)
    return vecs[..., -1].to(torch.complex64)


def _signal_kernels(calib: torch.Tensor, kernel_size: int, threshold: float) -> tuple:
    """Kept (conjugated) right singular vectors as kernels ``(S, n, C, k, k)`` and counts."""
    s, c = calib.shape[:2]
    k = kernel_size
    patches = calib.unfold(2, k, 1).unfold(3, k, 1)  # (S, C, nh, nw, k, k)
    a = patches.permute(0, 2, 3, 1, 4, 5).reshape(s, -1, c * k * k).to(torch.complex128)
    # Gram matrix + eigh == SVD of the calibration matrix (sigma^2 = eigenvalue), in
    # double precision so the threshold (sigma ratio 0.02 -> 4e-4 in eigenvalues) is safe.
    gram = a.conj().transpose(1, 2) @ a
    evals, evecs = eigh(gram)
    evals = evals.flip(-1).clamp_min(0)
    evecs = evecs.flip(-1)
    sigma = evals.sqrt()
    keep = sigma > threshold * sigma[:, :1]
    n_keep = int(keep.sum(dim=1).max())
    vh = evecs[:, :, :n_keep].conj().transpose(1, 2) * keep[:, :n_keep, None]
    kernels = vh.to(torch.complex64).reshape(s, n_keep, c, k, k)
    return kernels, keep.sum(dim=1).tolist()


def _kernel_correlations(kernels: torch.Tensor) -> torch.Tensor:
    """Fourier coefficients ``c_q`` ``(S, C, C, 2k-1, 2k-1)`` of ``M(r)``.

    With ``u = (r - N // 2) / N`` (centred pixel position), SigPy's
    ``M(r) = (N / k^2) sum_j g_j(r) g_j(r)^H`` equals ``sum_q c_q exp(2 pi i q . u)`` with
    ``c_q[c, d] = k^-2 sum_j sum_a K_j[c, a] conj(K_j[d, a - q])`` (kernel
    cross-correlations, lags ``|q| <= k - 1``), computed here with ``2k``-point FFTs.
    """
    k = kernels.shape[-1]
    n = 2 * k
    kf = torch.fft.fft2(kernels, s=(n, n))  # (S, J, C, n, n)
    prod = torch.einsum("sjcxy,sjdxy->scdxy", kf, kf.conj())
    corr = torch.fft.ifft2(prod) / (k * k)
    lags = torch.arange(-(k - 1), k, device=kernels.device) % n
    return corr[..., lags, :][..., lags]


def _evaluate(
    coef: torch.Tensor, pos: tuple[torch.Tensor, torch.Tensor], full: tuple
) -> torch.Tensor:
    """``M`` ``(S, C, C, len(pos_h), len(pos_w))`` at pixel positions ``pos`` of a ``full`` grid.

    Separable trigonometric sums as two small matrix products (no FFT shifts, any
    grid, fractional positions allowed).
    """
    k1 = coef.shape[-1]
    q = torch.arange(k1, device=coef.device, dtype=torch.float64) - (k1 - 1) // 2
    mats = []
    for p, n in zip(pos, full):
        u = (p.to(torch.float64) - n // 2) / n
        mats.append(torch.exp(2j * torch.pi * u[:, None] * q[None, :]).to(coef.dtype))
    return mats[0] @ coef @ mats[1].T


def _power_step(m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``M(r) v(r)`` for ``m`` ``(S, C, C, H, W)`` and ``v`` ``(S, C, H, W)`` (planar layout)."""
    out = m[:, :, 0] * v[:, None, 0]
    for d in range(1, v.shape[1]):
        out += m[:, :, d] * v[:, None, d]
    return out


def _normalise(v: torch.Tensor) -> torch.Tensor:
    """Unit norm over the coil axis 1 (sum of squares of the real view: faster than
    ``linalg.vector_norm`` for complex on CPU)."""
    power = torch.view_as_real(v).square().sum(dim=(1, -1)).unsqueeze(1)
    return v * power.clamp_min(1e-30).rsqrt()


def _align_phase(v: torch.Tensor, vc: torch.Tensor) -> torch.Tensor:
    """Rotate ``v`` ``(S, C, H, W)`` so that ``<vc, v>`` is real positive per pixel."""
    proj = (vc.conj()[:, :, None, None] * v).sum(1, keepdim=True)
    return v * (proj.conj() / proj.abs().clamp_min(1e-30))


def _upsample(v: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Periodic bilinear interpolation of coarse samples (sample ``i`` at ``i * N / n``)."""
    s, c, hc, wc = v.shape
    wrapped = torch.cat([v, v[:, :, :1]], dim=2)
    wrapped = torch.cat([wrapped, wrapped[:, :, :, :1]], dim=3)
    real = torch.view_as_real(wrapped).permute(0, 1, 4, 2, 3).reshape(s, c * 2, hc + 1, wc + 1)
    up = torch.nn.functional.interpolate(
        real, size=(shape[0] + 1, shape[1] + 1), mode="bilinear", align_corners=True
    )[..., : shape[0], : shape[1]]
    up = up.reshape(s, c, 2, *shape).permute(0, 1, 3, 4, 2).contiguous()
    return torch.view_as_complex(up)


def _exact_fixup(
    m: torch.Tensor, v: torch.Tensor, mv: torch.Tensor, eig: torch.Tensor, tol: float, floor: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace unconverged power-iteration pixels by an exact batched ``torch.linalg.eigh``.

    A pixel is unconverged when ``||M v - lambda v|| > tol * lambda``: this happens
    where the two largest eigenvalues nearly coincide (object edges). Only pixels
    that may end up inside the map support (``lambda > floor``) are fixed; usually a
    few percent, so the exact solver costs little.
    """
    resid = torch.view_as_real(mv - eig.unsqueeze(1) * v).square().sum(dim=(1, -1)).sqrt()
    bad = (resid > tol * eig.abs()) & (eig > floor)
    if not bool(bad.any()):
        return v, eig
    idx = bad.nonzero(as_tuple=True)
    sub = m.permute(0, 3, 4, 1, 2)[idx]  # (n_bad, C, C)
    sub = 0.5 * (sub + sub.conj().transpose(-1, -2))
    evals, evecs = eigh(sub)
    v = v.clone()
    eig = eig.clone()
    v.permute(0, 2, 3, 1)[idx] = evecs[..., -1]
    eig[idx] = evals[..., -1]
    return v, eig


def _signal_support(
    kspace: torch.Tensor, mask: torch.Tensor | None, calib: torch.Tensor, n_sd: float
) -> torch.Tensor:
    """``(S, H, W)`` bool: where the low-resolution calibration image (Hann-windowed ACS,
    zero-padded, RSS over coils) exceeds ``n_sd`` times its noise SD.

    The k-space noise SD ``sigma`` is the median magnitude of the acquired samples in the
    outer sixteenth of the readout at each end (mostly noise), divided by ``sqrt(ln 2)``
    (median of a complex Gaussian's magnitude). The low-resolution image's noise SD per
    coil is ``sigma sqrt(sum(window^2) / (H W))`` (orthonormal FFT); its RSS over ``C``
    noise-only coils is about ``sqrt(C)`` times that.
    """
    s, c, h, w = kspace.shape
    ch, cw = calib.shape[-2:]
    dev = kspace.device
    win = (
        torch.hann_window(ch + 2, periodic=False, device=dev)[1:-1][:, None]
        * torch.hann_window(cw + 2, periodic=False, device=dev)[1:-1][None, :]
    )
    low = ifftc(resize_centered(calib * win.to(calib.dtype), (h, w)))
    level = torch.sqrt((low.abs() ** 2).sum(dim=1))  # (S, H, W)
    edge = max(1, h // 16)
    outer = torch.cat([kspace[:, :, :edge], kspace[:, :, h - edge :]], dim=2)
    if mask is not None:
        m = mask.to(dev).expand(s, 1, h, w).bool()
        acquired = torch.cat([m[:, :, :edge], m[:, :, h - edge :]], dim=2).expand_as(outer)
    else:
        acquired = (outer != 0).any(dim=1, keepdim=True).expand_as(outer)
    support = torch.zeros((s, h, w), dtype=torch.bool, device=dev)
    scale = math.sqrt(float((win**2).sum()) / (h * w) * c)
    for i in range(s):
        samples = outer[i][acquired[i]].abs()
        if samples.numel() == 0:
            continue
        sigma = float(samples.median()) / math.sqrt(math.log(2))
        support[i] = level[i] > n_sd * sigma * scale
    return support


def espirit_maps(
    kspace: torch.Tensor,
    mask: torch.Tensor | None = None,
    acs_mask: torch.Tensor | None = None,
    kernel_size: int = 6,
    threshold: float = 0.02,
    crop: float = 0.95,
    calib_size: int | None = 24,
    keep_signal: float = 3.0,
    coarse: int = 4,
    coarse_iter: int = 30,
    refine_iter: int = 1,
    exact_tol: float = 1e-3,
) -> EspiritResult:
    """ESPIRiT sensitivity maps for every slice of ``kspace`` ``(S, C, H, W)``.

    kernel_size: calibration kernel width ``k`` (BART ``-k``, SigPy ``kernel_width``).
    threshold: keep singular vectors with ``sigma > threshold * sigma_max`` (SigPy
        ``thresh``).
    crop: zero the maps where the eigenvalue is ``<= crop`` (BART ``-c``, SigPy ``crop``),
        except where the calibration data show signal (``keep_signal``).
    calib_size: cap on the calibration block side (BART ``-r``, SigPy ``calib_width``).
    keep_signal: never crop pixels whose Hann-windowed low-resolution calibration image
        (RSS over coils) exceeds this many noise SDs (noise from the outermost readout
        samples); 0 = plain eigenvalue crop. The eigenvalue crop's purpose is to drop the
        background (fewer unknowns, no background noise), but it also zeroed low-signal
        tissue in anatomy that fills the FOV (fully sampled shoulder/abdomen NRMSE 0.02-0.03
        instead of < 0.01). Chosen on the brain volumes in data/mri: 3 SDs keep the
        background cropped there (SNR 30: 65 % vs 63 % of pixels kept, SENSE R=2 NRMSE
        0.0555 vs 0.0535), where lowering ``crop`` to 0.8 cost far more (0.0647).
    coarse: the eigenvectors are first found on a grid ``coarse`` times smaller per
        side (1 = directly at full resolution); ``coarse_iter`` power iterations there.
    refine_iter: power iterations at full resolution from the interpolated vectors.
    exact_tol: pixels whose eigen-residual ``||M v - lambda v|| / lambda`` is still above
        this after the power iterations are solved exactly with ``torch.linalg.eigh``
        (0 disables; also skipped when ``coarse > 1`` and ``refine_iter == 0``).
    """
    check_kspace(kspace)
    if kernel_size < 1:
        raise ParameterError(f"kernel_size must be >= 1, got {kernel_size}")
    if not 0 < threshold < 1:
        raise ParameterError(f"threshold must be in (0, 1), got {threshold}")
    if not 0 <= crop < 1:
        raise ParameterError(f"crop must be in [0, 1), got {crop}")
    if coarse < 1 or coarse_iter < 1 or refine_iter < 0:
        raise ParameterError("coarse >= 1, coarse_iter >= 1 and refine_iter >= 0 are required")
    # Fewer than two kernel widths of ACS leaves too few calibration rows: the maps come
    # out wrong without any numerical warning, so refuse instead (BART's defaults are a
    # 24-line region for a 6-wide kernel).
    calib = extract_calibration(kspace, mask, acs_mask, calib_size, min_size=2 * kernel_size)
    s, c, h, w = kspace.shape
    dev = kspace.device
    full_pos = (torch.arange(h, device=dev), torch.arange(w, device=dev))
    hc, wc = -(-h // coarse), -(-w // coarse)
    coarse_pos = (
        torch.arange(hc, device=dev, dtype=torch.float64) * (h / hc),
        torch.arange(wc, device=dev, dtype=torch.float64) * (w / wc),
    )
    maps, eigs, counts = [], [], []
    # Chunks of slices: the C x C x H x W matrices are ~34 MB per slice at 8 coils and
    # 256 x 256 (one slice at a time on CPU, where that is fastest, see slices_per_chunk).
    chunk = slices_per_chunk(dev)
    for b0 in range(0, s, chunk):
        cal = calib[b0 : b0 + chunk]
        kernels, n_kept = _signal_kernels(cal, kernel_size, threshold)
        counts += n_kept
        vc = _virtual_coil(cal)
        coef = _kernel_correlations(kernels)
        v = vc[:, :, None, None].expand(-1, -1, hc, wc)
        if coarse > 1:
            m_c = _evaluate(coef, coarse_pos, (h, w))
            for _ in range(coarse_iter):
                v = _normalise(_power_step(m_c, v))
            eig_c = (v.conj() * _power_step(m_c, v)).sum(1, keepdim=True).real
            up = _upsample(torch.cat([_align_phase(v, vc), eig_c.to(v.dtype)], dim=1), (h, w))
            v, eig = _normalise(up[:, :c]), up[:, c].real
        if coarse == 1 or refine_iter > 0:
            m_f = _evaluate(coef, full_pos, (h, w))
            for _ in range(coarse_iter if coarse == 1 else refine_iter):
                v = _normalise(_power_step(m_f, v))
            mv = _power_step(m_f, v)
            eig = (v.conj() * mv).sum(1).real
            if exact_tol > 0:
                v, eig = _exact_fixup(m_f, v, mv, eig, exact_tol, 0.5 * crop)
        keep = eig > crop
        if keep_signal > 0:
            ksp_b = kspace[b0 : b0 + chunk]
            keep = keep | _signal_support(ksp_b, mask, cal, keep_signal)
        v = _align_phase(v, vc) * keep.unsqueeze(1)
        maps.append(v)
        eigs.append(eig)
    return EspiritResult(
        maps=torch.cat(maps),
        eigenvalues=torch.cat(eigs),
        n_kernels=counts,
        calib_shape=(calib.shape[-2], calib.shape[-1]),
    )


def acs_sensitivities(
    kspace: torch.Tensor,
    mask: torch.Tensor | None = None,
    acs_mask: torch.Tensor | None = None,
    calib_size: int | None = None,
    threshold: float = 0.05,
) -> torch.Tensor:
    """Sensitivities ``(S, C, H, W)`` = low-res coil images / their RSS, from the ACS block.

    The ACS block is Hann-windowed (to suppress Gibbs ringing), zero-padded to the
    full matrix and inverse FFT'd. Pixels whose RSS is below ``threshold`` times the
    slice maximum (background) get zero sensitivity.
    """
    check_kspace(kspace)
    ref = acs_mask if acs_mask is not None else mask
    if ref is None:
        raise ReconError("need a sampling mask or an ACS mask to find the calibration region")
    rows, cols = calibration_region(ref, tuple(kspace.shape), calib_size)
    calib = extract_calibration(kspace, mask, acs_mask, calib_size, min_size=2)
    _, _, h, w = kspace.shape
    ch, cw = calib.shape[-2:]
    win_h = torch.hann_window(ch + 2, periodic=False, device=kspace.device)[1:-1]
    win_w = torch.hann_window(cw + 2, periodic=False, device=kspace.device)[1:-1]
    if rows.stop - rows.start == h and ch == h:
        win_h = torch.ones(h, device=kspace.device)
    win = (win_h[:, None] * win_w[None, :]).to(calib.dtype)
    padded = torch.zeros_like(kspace)
    padded[:, :, rows, cols] = calib * win
    low = ifftc(padded)
    norm = torch.sqrt((low.abs() ** 2).sum(dim=1, keepdim=True))
    peak = norm.reshape(norm.shape[0], -1).amax(dim=1).reshape(-1, 1, 1, 1)
    support = norm > threshold * peak
    return torch.where(support, low / norm.clamp_min(1e-30), torch.zeros_like(low))


SENSITIVITY_PARAMS: tuple[Param, ...] = (
    Param(
        "sensitivities",
        "choice",
        "espirit",
        "How to estimate coil sensitivities when the input carries none: ESPIRiT or "
        "ACS low-resolution images / RSS",
        choices=("espirit", "acs"),
    ),
    Param("espirit_kernel", "int", 6, "ESPIRiT calibration kernel width", min=2, max=12),
    Param(
        "espirit_threshold",
        "float",
        0.02,
        "ESPIRiT: keep singular vectors above this fraction of the largest",
        min=0.0001,
        max=0.5,
    ),
    Param(
        "espirit_crop",
        "float",
        0.95,
        "ESPIRiT: zero the maps where the eigenvalue is below this",
        min=0.0,
        max=0.999,
    ),
    Param("calib_size", "int", 24, "Largest calibration block side used", min=4, max=512),
)


def sensitivities_for(data: ReconInput, params: dict) -> tuple[torch.Tensor, dict]:
    """Coil maps ``(S, C, H, W)`` on ``data.device`` for a method run.

    ``data.sensitivities`` when given (e.g. from a prescan), otherwise estimated from
    the ACS with the method in ``params["sensitivities"]`` (see ``SENSITIVITY_PARAMS``).
    Returns the maps and JSON-friendly facts about how they were obtained.
    """
    kspace = data.kspace
    if data.sensitivities is not None:
        check_sensitivities(data.sensitivities, tuple(kspace.shape))
        sens = data.sensitivities.to(data.device, torch.complex64)
        return sens.expand(kspace.shape[0], -1, -1, -1), {"sensitivities": "provided"}
    ksp = kspace.to(data.device)
    mask = data.mask.to(data.device)
    acs = data.acs_mask.to(data.device) if data.acs_mask is not None else None
    if params["sensitivities"] == "acs":
        sens = acs_sensitivities(ksp, mask, acs, calib_size=None)
        return sens, {"sensitivities": "acs"}
    res = espirit_maps(
        ksp,
        mask,
        acs,
        kernel_size=params["espirit_kernel"],
        threshold=params["espirit_threshold"],
        crop=params["espirit_crop"],
        calib_size=params["calib_size"],
    )
    info = {
        "sensitivities": "espirit",
        "espirit_kernels": res.n_kernels,
        "calib_shape": list(res.calib_shape),
    }
    return res.maps, info
