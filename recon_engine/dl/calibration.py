"""Does a per-voxel uncertainty (or residual) map track the actual error? Calibration.

An uncertainty map ``sigma`` is useful to a reader only if it is large where the error
``|x_hat - x|`` is large (ranking: Spearman's rho over tissue voxels) and if its size is
right (scale: mean |error| / mean sigma; coverage: the fraction of voxels whose error lies
inside the predicted +-1 sigma and +-1.96 sigma intervals, nominally 68.3 % and 95 %).

Post-hoc calibration (Kuleshov et al., ICML 2018, in its simplest scalar form): one factor
``s`` is fitted on VALIDATION data so that ``|error| <= s * sigma`` holds for 68.3 % of the
tissue voxels; the map a method reports is then ``s * sigma``. Scaling changes neither
Spearman's rho nor where the map is large: a map that does not rank errors stays one that
does not localise them, and :func:`statement` says so.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

__all__ = [
    "COVERAGE_1SD",
    "LOCALISES_RHO",
    "calibration_metrics",
    "fit_scale",
    "statement",
    "tissue_mask",
]

COVERAGE_1SD = 0.6827  # P(|Z| <= 1) for a standard normal Z
Z_95 = 1.959964  # P(|Z| <= 1.96) = 0.95
# Below this Spearman rho on test data a map is declared not to localise errors.
LOCALISES_RHO = 0.3


def tissue_mask(reference: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Boolean mask of the voxels above ``fraction`` of each slice's maximum.

    ``reference`` is ``(S, H, W)`` magnitude; air would otherwise dominate the voxel count
    with near-zero error and near-zero spread, inflating any rank correlation.
    """
    peak = reference.reshape(reference.shape[0], -1).max(axis=1)
    return reference > fraction * peak[:, None, None]


def fit_scale(sigma: np.ndarray, abs_error: np.ndarray, coverage: float = COVERAGE_1SD) -> float:
    """Factor ``s`` with ``|error| <= s * sigma`` on a ``coverage`` fraction of the voxels.

    ``sigma`` and ``abs_error`` are flat arrays of the same voxels (fit on validation data
    only). Voxels with ``sigma == 0`` cannot be covered by any ``s`` and are left out.
    """
    keep = sigma > 0
    if not keep.any():
        raise ValueError("the uncertainty map is zero everywhere: nothing to calibrate")
    return float(np.quantile(abs_error[keep] / sigma[keep], coverage))


def calibration_metrics(sigma: np.ndarray, abs_error: np.ndarray, scale: float = 1.0) -> dict:
    """Figures of the map ``scale * sigma`` against ``abs_error`` (flat arrays, same voxels).

    ``spearman``: rank correlation of map and error; ``error_to_sigma``: mean |error| /
    mean (scale sigma) (1 when the size is right, 3 when the map underestimates 3x);
    ``coverage_68`` / ``coverage_95``: fraction of voxels with ``|error| <= scale sigma`` /
    ``<= 1.96 scale sigma``; ``voxels``: how many voxels.
    """
    scaled = scale * sigma
    return {
        "spearman": float(spearmanr(scaled, abs_error).statistic),
        "error_to_sigma": float(abs_error.mean() / max(float(scaled.mean()), 1e-30)),
        "coverage_68": float(np.mean(abs_error <= scaled)),
        "coverage_95": float(np.mean(abs_error <= Z_95 * scaled)),
        "voxels": int(abs_error.size),
    }


def statement(kind: str, test: dict) -> str:
    """One plain sentence on whether a map of ``kind`` tracks the error on test data."""
    rho = test["spearman"]
    if rho < LOCALISES_RHO:
        return (
            f"This {kind} map does not localise errors: Spearman rho = {rho:.2f} between map "
            f"and |error| on test data (below {LOCALISES_RHO}); do not read it as showing "
            "where the network invented content."
        )
    return (
        f"This {kind} map ranks errors only partly: Spearman rho = {rho:.2f} between map and "
        f"|error| on test data; its 68 % interval covered {100 * test['coverage_68']:.0f} % "
        "of tissue voxels."
    )
