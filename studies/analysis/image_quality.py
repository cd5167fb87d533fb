"""Quantitative image quality: SNR / CNR with an explicit noise method, and scan time.

Noise methods (every result says which one produced it):

* ``background``: SD (or mean) of a signal-free background ROI of a magnitude image,
  corrected for the magnitude noise distribution. One coil: Rayleigh, SD = 0.6551 sigma,
  mean = 1.2533 sigma. n-coil root-sum-of-squares: non-central chi with 2n degrees of
  freedom, mean = beta_n sigma with beta_n = sqrt(2) Gamma(n + 1/2) / Gamma(n), SD =
  sqrt(2n - beta_n^2) sigma (n = 8: 3.9380, 0.7014). The mean and SD factors assume
  *uncorrelated* coil noise: with the inter-coil noise correlation of real arrays
  (rho = 0.4 between 8 coils) the background SD overestimates sigma by 36 % (Aja-Fernandez
  & Tristan-Vega 2012: the RSS background then follows an nc-chi with fewer effective
  coils). The default statistic is therefore ``rms``, the background's second moment,
  sigma = sqrt(mean(M^2) / (2n)), which is exact for any coil correlation because
  E[M^2] = sum over coils of E|z_l|^2 = 2 n sigma^2. Only valid when the noise is
  spatially uniform: not for parallel imaging, compressed sensing or deep-learning
  reconstructions (Dietrich et al. 2007 found 34-38 % error), for which a warning is
  raised.
* ``difference``: two repeated acquisitions (or two noise realisations) of the same
  object: sigma = SD(I1 - I2) / sqrt(2) over the ROI; signal = mean of (I1 + I2) / 2.
* ``pseudo_replica``: a stack of reconstructions of the same data with independent
  synthetic noise (Robson et al. 2008): per-pixel sigma = SD across replicas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from ._common import AnalysisError, Result

NON_UNIFORM_NOISE_FAMILIES = frozenset(
    {
        "parallel_imaging",
        "compressed_sensing",
        "deep_learning",
        "simultaneous_multislice",
        "super_resolution",
    }
)
NOISE_METHODS = ("background", "difference", "pseudo_replica")


def magnitude_noise_factors(n_coils: int = 1) -> tuple[float, float]:
    """(mean factor, SD factor) of background magnitude noise for n-coil RSS data.

    The background of an n-coil root-sum-of-squares magnitude image with per-channel
    Gaussian noise sigma has mean ``beta_n sigma`` and SD ``sqrt(2n - beta_n^2) sigma``
    with ``beta_n = sqrt(2) Gamma(n + 1/2) / Gamma(n)`` (Constantinides et al. 1997).
    """
    if int(n_coils) != n_coils or n_coils < 1:
        raise AnalysisError(f"n_coils must be a positive integer, got {n_coils}")
    n = int(n_coils)
    beta = math.sqrt(2.0) * math.exp(special.gammaln(n + 0.5) - special.gammaln(n))
    return beta, math.sqrt(2 * n - beta**2)


@dataclass
class SNRResult(Result):
    """An SNR or CNR value with the noise estimate behind it."""

    name: str
    value: float
    signal: float
    sigma: float
    noise_method: str
    n_coils: int
    reconstruction_family: str | None
    noise_method_warning: bool
    method: str
    n_pixels: int
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _pixels(x: Any, name: str, min_size: int = 2) -> np.ndarray:
    arr = np.asarray(x)
    if np.iscomplexobj(arr):
        raise AnalysisError(f"{name}: expected magnitude (real) pixel values, got complex data")
    arr = arr.astype(float)
    if arr.size < min_size:
        raise AnalysisError(f"{name}: need at least {min_size} pixels, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise AnalysisError(f"{name}: contains NaN or infinite values")
    return arr


def pseudo_replica_sigma(replicas: Any) -> np.ndarray:
    """Per-pixel noise SD from a (n_replicas, ...) stack of pseudo-replica reconstructions
    (SD across replicas, ddof=1)."""
    arr = _pixels(replicas, "replicas")
    if arr.ndim < 2 or arr.shape[0] < 2:
        raise AnalysisError(f"replicas: need shape (n_replicas >= 2, ...), got {arr.shape}")
    return arr.std(axis=0, ddof=1)


def g_factor_map(sigma_accelerated: Any, sigma_full: Any, acceleration: float) -> np.ndarray:
    """Parallel-imaging geometry factor per pixel, g = sigma_R / (sigma_1 sqrt(R)).

    ``sigma_accelerated`` and ``sigma_full`` are pseudo-replica noise maps (same shape, or
    ``sigma_full`` a scalar) of the accelerated and fully sampled reconstructions; with
    SNR_R = SNR_1 / (g sqrt(R)) (Pruessmann et al. 1999) g = 1 means no noise amplification
    beyond the sqrt(R) of the shorter acquisition.
    """
    acc = _pixels(sigma_accelerated, "sigma_accelerated", min_size=1)
    full = _pixels(sigma_full, "sigma_full", min_size=1)
    if full.size != 1 and full.shape != acc.shape:
        raise AnalysisError(f"g_factor_map: shapes differ {acc.shape} vs {full.shape}")
    if not (math.isfinite(acceleration) and acceleration >= 1):
        raise AnalysisError(f"g_factor_map: acceleration must be >= 1, got {acceleration}")
    if np.any(full <= 0):
        raise AnalysisError("g_factor_map: sigma_full must be positive")
    return acc / (full * math.sqrt(acceleration))


def noise_sigma(
    method: str,
    noise_roi: Any = None,
    image1_roi: Any = None,
    image2_roi: Any = None,
    replicas: Any = None,
    n_coils: int = 1,
    background_statistic: str = "rms",
) -> tuple[float, str, dict[str, Any]]:
    """Estimate the image noise sigma by ``method``; returns (sigma, description, details).

    ``background_statistic`` for the background method: ``rms`` (default, exact also with
    correlated coil noise), ``sd`` or ``mean`` (both assume uncorrelated coils).
    """
    if method == "background":
        bg = _pixels(noise_roi, "noise_roi")
        mean_f, sd_f = magnitude_noise_factors(n_coils)
        if np.ptp(bg) == 0:
            raise AnalysisError("noise sigma is zero: the noise ROI has no variation")
        if background_statistic == "rms":
            sigma = float(np.sqrt(np.mean(bg**2) / (2 * n_coils)))
            how = f"sqrt(mean(background^2) / {2 * n_coils}) (exact for correlated coils)"
        elif background_statistic == "sd":
            sigma = float(bg.std(ddof=1) / sd_f)
            how = f"SD(background) / {sd_f:.4f}"
        elif background_statistic == "mean":
            sigma = float(bg.mean() / mean_f)
            how = f"mean(background) / {mean_f:.4f}"
        else:
            raise AnalysisError(
                f"background_statistic must be 'rms', 'sd' or 'mean', got {background_statistic!r}"
            )
        desc = f"background method, {n_coils}-coil magnitude correction: sigma = {how}"
        return sigma, desc, {"mean_factor": mean_f, "sd_factor": sd_f, "n_noise_pixels": bg.size}
    if method == "difference":
        a = _pixels(image1_roi, "image1 ROI")
        b = _pixels(image2_roi, "image2 ROI")
        if a.shape != b.shape:
            raise AnalysisError(f"difference method: ROI shapes differ {a.shape} vs {b.shape}")
        sigma = float((a - b).std(ddof=1) / math.sqrt(2.0))
        return sigma, "difference method: sigma = SD(I1 - I2) / sqrt(2)", {}
    if method == "pseudo_replica":
        smap = pseudo_replica_sigma(replicas)
        sigma = float(np.sqrt(np.mean(smap**2)))
        return (
            sigma,
            "pseudo-replica method: sigma = RMS over the ROI of the per-pixel SD across replicas",
            {"n_replicas": int(np.asarray(replicas).shape[0])},
        )
    raise AnalysisError(f"unknown noise method {method!r}; use one of {NOISE_METHODS}")


def _family_warning(
    method: str, family: str | None, n_coils: int = 1, statistic: str = "rms"
) -> tuple[bool, list[str]]:
    warn = []
    if method == "background" and n_coils > 1 and statistic in ("sd", "mean"):
        warn.append(
            f"background {statistic} with {n_coils} coils assumes uncorrelated coil noise; "
            "typical inter-coil correlation (rho = 0.4, 8 coils) makes the SD estimate "
            "36 % too high (use background_statistic='rms')"
        )
    if method == "background" and family in NON_UNIFORM_NOISE_FAMILIES:
        return True, [
            *warn,
            f"background-noise SNR on a {family} reconstruction: noise is spatially varying "
            "there, so this value is unreliable (use 'difference' or 'pseudo_replica')",
        ]
    return False, warn


def snr(
    signal_roi: Any,
    noise_roi: Any = None,
    method: str = "background",
    n_coils: int = 1,
    signal_roi_2: Any = None,
    replicas: Any = None,
    background_statistic: str = "rms",
    reconstruction_family: str | None = None,
) -> SNRResult:
    """SNR = mean(signal ROI) / sigma.

    * ``background``: ``signal_roi`` pixels and a signal-free ``noise_roi`` from the same
      magnitude image; ``n_coils`` picks the magnitude correction.
    * ``difference``: ``signal_roi`` and ``signal_roi_2`` are the same ROI in two repeated
      acquisitions; signal = mean of their average.
    * ``pseudo_replica``: ``replicas`` is (n_replicas, *ROI shape*); signal = mean over
      replicas and ROI (``signal_roi`` is then ignored and may be None).

    ``reconstruction_family`` (a registry family name) raises ``noise_method_warning`` when
    the background method is used where noise is not spatially uniform.
    """
    if method == "pseudo_replica":
        reps = _pixels(replicas, "replicas")
        signal = float(reps.mean())
        n_pix = int(reps[0].size)
    elif method == "difference":
        a = _pixels(signal_roi, "signal_roi")
        b = _pixels(signal_roi_2, "signal_roi_2")
        if a.shape != b.shape:
            raise AnalysisError(f"difference method: ROI shapes differ {a.shape} vs {b.shape}")
        signal = float(((a + b) / 2).mean())
        n_pix = int(a.size)
    else:
        sig = _pixels(signal_roi, "signal_roi")
        signal, n_pix = float(sig.mean()), int(sig.size)
    sigma, desc, details = noise_sigma(
        method, noise_roi, signal_roi, signal_roi_2, replicas, n_coils, background_statistic
    )
    if sigma <= 0:
        raise AnalysisError("noise sigma is zero: the noise ROI has no variation")
    flag, warn = _family_warning(method, reconstruction_family, n_coils, background_statistic)
    return SNRResult(
        name="SNR",
        value=signal / sigma,
        signal=signal,
        sigma=sigma,
        noise_method=method,
        n_coils=int(n_coils),
        reconstruction_family=reconstruction_family,
        noise_method_warning=flag,
        method=f"SNR = mean(signal ROI) / sigma; {desc}",
        n_pixels=n_pix,
        details=details,
        warnings=warn,
    )


def cnr(
    roi_a: Any,
    roi_b: Any,
    noise_roi: Any = None,
    method: str = "background",
    n_coils: int = 1,
    roi_a_2: Any = None,
    roi_b_2: Any = None,
    replicas: Any = None,
    background_statistic: str = "rms",
    reconstruction_family: str | None = None,
) -> SNRResult:
    """CNR = |mean(ROI a) - mean(ROI b)| / sigma, sigma by ``method`` as in :func:`snr`.

    ``difference``: ``roi_a_2`` / ``roi_b_2`` are the ROIs in the repeated acquisition and
    sigma comes from the pooled difference of both ROIs. ``pseudo_replica``: ``replicas``
    is the replica stack of the pixels used for sigma (e.g. both ROIs concatenated).
    """
    a = _pixels(roi_a, "roi_a")
    b = _pixels(roi_b, "roi_b")
    if method == "difference":
        a2 = _pixels(roi_a_2, "roi_a_2")
        b2 = _pixels(roi_b_2, "roi_b_2")
        if a.shape != a2.shape or b.shape != b2.shape:
            raise AnalysisError("difference method: repeated ROIs must match the first ones")
        contrast = abs(float(((a + a2) / 2).mean() - ((b + b2) / 2).mean()))
        first = np.concatenate([a.ravel(), b.ravel()])
        second = np.concatenate([a2.ravel(), b2.ravel()])
        sigma, desc, details = noise_sigma("difference", image1_roi=first, image2_roi=second)
    else:
        contrast = abs(float(a.mean() - b.mean()))
        sigma, desc, details = noise_sigma(
            method, noise_roi, replicas=replicas, n_coils=n_coils,
            background_statistic=background_statistic,
        )  # fmt: skip
    if sigma <= 0:
        raise AnalysisError("noise sigma is zero: the noise ROI has no variation")
    flag, warn = _family_warning(method, reconstruction_family, n_coils, background_statistic)
    return SNRResult(
        name="CNR",
        value=contrast / sigma,
        signal=contrast,
        sigma=sigma,
        noise_method=method,
        n_coils=int(n_coils),
        reconstruction_family=reconstruction_family,
        noise_method_warning=flag,
        method=f"CNR = |mean(ROI a) - mean(ROI b)| / sigma; {desc}",
        n_pixels=int(a.size + b.size),
        details=details,
        warnings=warn,
    )


# ------------------------------------------------------------------------------ scan time


def acquisition_time(
    n_phase_encodes: int,
    tr_s: float,
    nsa: float = 1.0,
    acceleration: float = 1.0,
    n_partitions: int = 1,
    turbo_factor: int = 1,
) -> float:
    """Acquisition time in seconds: TA = N_pe x N_partitions x TR x NSA / (R x turbo factor).

    ``acceleration`` is the net (effective) undersampling factor R; ``n_partitions`` the
    number of 3D partition encodes (1 for 2D); ``turbo_factor`` the echo-train length of
    fast/turbo spin echo (1 for gradient echo / conventional SE).
    """
    values = {
        "n_phase_encodes": n_phase_encodes,
        "tr_s": tr_s,
        "nsa": nsa,
        "acceleration": acceleration,
        "n_partitions": n_partitions,
        "turbo_factor": turbo_factor,
    }
    for key, v in values.items():
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise AnalysisError(f"acquisition_time: {key} must be a positive number, got {v!r}")
    if acceleration < 1:
        raise AnalysisError(f"acquisition_time: acceleration must be >= 1, got {acceleration}")
    return float(n_phase_encodes * n_partitions * tr_s * nsa / (acceleration * turbo_factor))


@dataclass
class ScanTimeResult(Result):
    """Scan-time reduction of a new protocol relative to the reference."""

    reference_s: float
    new_s: float
    reduction_fraction: float
    reduction_percent: float
    speedup: float
    method: str = "reduction = 1 - TA_new / TA_reference; speed-up = TA_reference / TA_new"


def scan_time_reduction(reference_s: float, new_s: float) -> ScanTimeResult:
    """Relative scan-time reduction 1 - TA_new / TA_reference (and the speed-up factor)."""
    for name, v in (("reference_s", reference_s), ("new_s", new_s)):
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise AnalysisError(f"scan_time_reduction: {name} must be a positive time, got {v!r}")
    frac = 1.0 - new_s / reference_s
    return ScanTimeResult(
        reference_s=float(reference_s),
        new_s=float(new_s),
        reduction_fraction=frac,
        reduction_percent=100.0 * frac,
        speedup=float(reference_s / new_s),
    )
