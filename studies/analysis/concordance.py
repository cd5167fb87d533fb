"""Rank-based concordance and location tests: Kendall's W, the Friedman test,
Krippendorff's alpha and the Hodges-Lehmann estimate.

* Kendall's W (coefficient of concordance) and the Friedman test answer the same question
  from two sides: do ``m`` raters rank ``n`` objects (e.g. image types, or cases) alike?
  ``chi2_F = m (n - 1) W``; ties get midranks and the tie correction of Kendall (1948).
  Almansour et al. (Radiology 2023) report W for the agreement of readers' rankings.
* Krippendorff's alpha (Krippendorff 2011, "Computing Krippendorff's alpha-reliability")
  for any number of coders, missing values and nominal / ordinal / interval / ratio data.
* Hodges-Lehmann (1963) estimate of a paired shift (median of the Walsh averages) with
  the exact distribution-free CI from the signed-rank distribution (Bauer 1972; R's
  ``wilcox.test(conf.int = TRUE)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ._common import AnalysisError, Estimate, bootstrap_weights, check_alpha, percentile_ci

LEVELS = ("nominal", "ordinal", "interval", "ratio")


def _matrix(data: pd.DataFrame | np.ndarray | Sequence[Sequence[Any]], name: str) -> np.ndarray:
    arr = data.to_numpy(dtype=float) if isinstance(data, pd.DataFrame) else data
    try:
        arr = np.asarray(arr, dtype=float)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"{name}: ratings must be numeric") from exc
    if arr.ndim != 2:
        raise AnalysisError(f"{name}: ratings must be 2-D, got shape {arr.shape}")
    return arr


# -------------------------------------------------------------------- Kendall / Friedman


def _rank_rows(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Midranks within each row and Kendall's tie term sum over rows of sum(t^3 - t)."""
    ranks = stats.rankdata(x, axis=1)
    ties = 0.0
    for row in x:
        _, counts = np.unique(row, return_counts=True)
        ties += float((counts**3 - counts).sum())
    return ranks, ties


def kendall_w(
    ratings: pd.DataFrame | np.ndarray | Sequence[Sequence[float]], alpha: float = 0.05
) -> Estimate:
    """Kendall's coefficient of concordance W of ``ratings`` (raters x objects).

    Each rater's scores are ranked (midranks for ties); ``W = 12 S / (m^2 (n^3 - n) - m T)``
    with S the sum of squared deviations of the objects' rank sums and T Kendall's tie
    correction. The test is Friedman's ``chi2 = m (n - 1) W`` with n - 1 df (Kendall &
    Babington Smith 1939). W lies in [0, 1]; every rater must score every object.
    """
    alpha = check_alpha(alpha)
    x = _matrix(ratings, "kendall_w")
    if not np.all(np.isfinite(x)):
        raise AnalysisError("kendall_w: every rater must score every object (no missing values)")
    m, n = x.shape
    if m < 2 or n < 2:
        raise AnalysisError(f"kendall_w: need at least 2 raters and 2 objects, got {m} x {n}")
    ranks, ties = _rank_rows(x)
    r = ranks.sum(0)
    s = float(((r - r.mean()) ** 2).sum())
    den = m**2 * (n**3 - n) - m * ties
    if den <= 0:
        raise AnalysisError("kendall_w: every rater gave all objects the same score")
    w = 12 * s / den
    chi2 = m * (n - 1) * w
    return Estimate(
        name="Kendall's W",
        estimate=float(w),
        statistic=float(chi2),
        statistic_name="chi2 (Friedman)",
        df=float(n - 1),
        p_value=float(stats.chi2.sf(chi2, n - 1)),
        alpha=alpha,
        n=int(n),
        method=(
            "Kendall's W with midranks and Kendall's tie correction; test: Friedman chi-square "
            "= m (n-1) W with n-1 df"
        ),
        details={"raters": int(m), "objects": int(n), "rank_sums": r.tolist()},
        warnings=(
            [f"only {n} objects: the chi-square approximation is rough (exact tables n <= 7)"]
            if n < 8
            else []
        ),
    )


def friedman_test(
    data: pd.DataFrame | np.ndarray | Sequence[Sequence[float]], alpha: float = 0.05
) -> Estimate:
    """Friedman's test that ``k`` treatments (columns) score alike over ``b`` blocks (rows).

    For reader studies: blocks are cases (or reader-case pairs), treatments the image
    types. Midranks within blocks, tie-corrected statistic (equals
    ``scipy.stats.friedmanchisquare``); the estimate is Kendall's W of the blocks as
    raters, the usual effect size.
    """
    res = kendall_w(data, alpha)
    b, k = _matrix(data, "friedman_test").shape
    return Estimate(
        name="Friedman test",
        estimate=res.estimate,
        statistic=res.statistic,
        statistic_name="chi2",
        df=float(k - 1),
        p_value=res.p_value,
        alpha=res.alpha,
        n=int(b),
        method=(
            f"Friedman test of {k} treatments over {b} blocks, midranks, tie-corrected chi-square "
            "with k-1 df; estimate: Kendall's W"
        ),
        details={"blocks": int(b), "treatments": int(k), "rank_sums": res.details["rank_sums"]},
        warnings=res.warnings,
    )


# ------------------------------------------------------------------------- Krippendorff


def _delta2(values: np.ndarray, n_c: np.ndarray, level: str) -> np.ndarray:
    """Squared difference function delta^2(c, k) of Krippendorff (2011)."""
    c, k = values[:, None], values[None, :]
    if level == "nominal":
        return (c != k).astype(float)
    if level == "interval":
        return (c - k) ** 2
    if level == "ratio":
        with np.errstate(invalid="ignore", divide="ignore"):
            out = ((c - k) / (c + k)) ** 2
        return np.nan_to_num(out)
    cum = np.cumsum(n_c)
    idx = np.arange(values.size)
    lo, hi = np.minimum(idx[:, None], idx[None, :]), np.maximum(idx[:, None], idx[None, :])
    between = cum[hi] - np.where(lo > 0, cum[lo - 1], 0.0)
    return (between - (n_c[lo] + n_c[hi]) / 2) ** 2


def _unit_coincidences(codes: np.ndarray, n_values: int) -> np.ndarray:
    """(units, V, V) coincidence contributions; units with < 2 values contribute 0."""
    onehot = (codes[:, :, None] == np.arange(n_values)).astype(float)
    counts = onehot.sum(1)
    m = counts.sum(1)
    outer = counts[:, :, None] * counts[:, None, :] - np.einsum(
        "uv,vw->uvw", counts, np.eye(n_values)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(m >= 2, 1.0 / (m - 1), 0.0)
    return outer * scale[:, None, None]


@dataclass
class KrippendorffResult(Estimate):
    """Krippendorff's alpha with the observed and expected disagreement."""

    level: str = "nominal"
    observed_disagreement: float = math.nan
    expected_disagreement: float = math.nan
    pairable_values: int = 0
    values: list[float] = field(default_factory=list)


def krippendorff_alpha(
    ratings: pd.DataFrame | np.ndarray | Sequence[Sequence[Any]],
    level: str = "nominal",
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
) -> KrippendorffResult:
    """Krippendorff's alpha of ``ratings`` (units x coders, NaN = not coded).

    ``alpha = 1 - D_o / D_e`` from the coincidence matrix of pairable values (units coded
    by at least 2 coders), with the ``level``'s difference function (Krippendorff 2011).
    CI: percentile bootstrap over units (``n_boot`` resamples), which stays in [-1, 1];
    Krippendorff's own bootstrap resamples pairs of values instead.
    """
    ctx = "krippendorff_alpha"
    alpha_level = check_alpha(alpha)
    if level not in LEVELS:
        raise AnalysisError(f"{ctx}: level must be one of {LEVELS}, got {level!r}")
    x = _matrix(ratings, ctx)
    if level == "ratio" and np.nanmin(x) < 0:
        raise AnalysisError(f"{ctx}: ratio data must be non-negative")
    values = np.unique(x[np.isfinite(x)])
    if values.size < 2:
        raise AnalysisError(f"{ctx}: need at least 2 distinct values, got {values.tolist()}")
    codes = np.full(x.shape, -1, dtype=int)
    ok = np.isfinite(x)
    codes[ok] = np.searchsorted(values, x[ok])
    per_unit = _unit_coincidences(codes, values.size)
    pairable = per_unit.sum(axis=(1, 2)) > 0
    if pairable.sum() < 2:
        raise AnalysisError(f"{ctx}: need at least 2 units coded by 2 or more coders")
    per_unit = per_unit[pairable]

    def alpha_of(o: np.ndarray) -> tuple[float, float, float]:
        n_c = o.sum(1)
        n = n_c.sum()
        d2 = _delta2(values, n_c, level)
        d_o = float((o * d2).sum() / n)
        d_e = float((np.outer(n_c, n_c) * d2).sum() / (n * (n - 1)))
        return (1 - d_o / d_e if d_e > 0 else math.nan), d_o, d_e

    coincidence = per_unit.sum(0)
    est, d_o, d_e = alpha_of(coincidence)
    n_units = int(per_unit.shape[0])
    wts = bootstrap_weights(n_units, int(n_boot), np.random.default_rng(seed))
    boot_o = np.einsum("bu,uvw->bvw", wts, per_unit)
    boot = np.array([alpha_of(o)[0] for o in boot_o])
    lo, hi = percentile_ci(boot, alpha_level)
    warn = []
    if n_units < 10:
        warn.append(f"only {n_units} pairable units: the bootstrap interval is unreliable")
    return KrippendorffResult(
        name=f"Krippendorff's alpha ({level})",
        estimate=float(est),
        se=float(np.nanstd(boot, ddof=1)),
        ci=(float(lo), float(hi)),
        alpha=alpha_level,
        n=n_units,
        method=(
            f"Krippendorff's alpha, {level} difference function, coincidence matrix over "
            f"pairable values (Krippendorff 2011); CI: percentile bootstrap over units "
            f"({n_boot} resamples, seed {seed})"
        ),
        warnings=warn,
        level=level,
        observed_disagreement=d_o,
        expected_disagreement=d_e,
        pairable_values=int(round(coincidence.sum())),
        values=values.tolist(),
        details={"coincidence_matrix": coincidence},
    )


# ------------------------------------------------------------------------ Hodges-Lehmann


def hodges_lehmann(
    differences: Sequence[float] | np.ndarray | pd.Series, alpha: float = 0.05
) -> Estimate:
    """Hodges-Lehmann estimate of the median paired difference with its CI.

    Estimate: median of the n(n+1)/2 Walsh averages (d_i + d_j)/2, i <= j. CI: the Walsh
    averages of order ``C`` and ``N - C + 1`` where ``C`` is the lower ``alpha/2`` critical
    value of the Wilcoxon signed-rank statistic: exact distribution for n <= 50, normal
    approximation above (as R's ``wilcox.test(conf.int = TRUE)``, exact when no ties; with
    ties the exact CI is conservative). Zero differences are kept (they are Walsh averages).
    """
    alpha = check_alpha(alpha)
    d = np.asarray(differences, dtype=float)
    if d.ndim != 1 or d.size < 3:
        raise AnalysisError(f"hodges_lehmann: need at least 3 differences, got {d.size}")
    if not np.all(np.isfinite(d)):
        raise AnalysisError("hodges_lehmann: differences must be finite")
    n = d.size
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2)
    n_walsh = walsh.size
    if n <= 50:
        pmf = _signed_rank_pmf(n)
        cdf = np.cumsum(pmf)
        # R's qsignrank(alpha/2, n): smallest c with P(T <= c) >= alpha/2; the CI is
        # [W_(c), W_(N - c + 1)] in 1-based order statistics of the Walsh averages.
        c = int(np.searchsorted(cdf, alpha / 2 - 1e-12, side="left"))
        how = "exact signed-rank distribution"
    else:
        mu, sd = n * (n + 1) / 4, math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
        c = int(math.floor(mu - stats.norm.ppf(1 - alpha / 2) * sd))
        how = "normal approximation to the signed-rank distribution"
    warn = []
    if c < 1:
        c = 1
        warn.append(
            f"n = {n} is too small for a {100 * (1 - alpha):g}% interval; the range is given"
        )
    ci = (float(walsh[c - 1]), float(walsh[n_walsh - c]))
    if len(np.unique(np.abs(d))) < n:
        warn.append("tied or zero differences: the interval's coverage is approximate")
    return Estimate(
        name="Hodges-Lehmann median difference",
        estimate=float(np.median(walsh)),
        ci=ci,
        alpha=alpha,
        n=int(n),
        method=f"Hodges-Lehmann median of Walsh averages; CI from the {how} (Bauer 1972)",
        details={"walsh_order": int(c)},
        warnings=warn,
    )


def _signed_rank_pmf(n: int) -> np.ndarray:
    """Exact null distribution of the Wilcoxon signed-rank statistic T+ for n pairs."""
    pmf = np.zeros(n * (n + 1) // 2 + 1)
    pmf[0] = 1.0
    for k in range(1, n + 1):
        shifted = np.zeros_like(pmf)
        shifted[k:] = pmf[:-k]
        pmf = (pmf + shifted) / 2
    return pmf
