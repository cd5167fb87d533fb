"""Result containers, JSON conversion and small numeric helpers shared by the analyses.

Everything here is plain numpy / scipy: :mod:`studies.analysis` must import and run in a
notebook without Django settings.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats


class AnalysisError(ValueError):
    """The input cannot be analysed as asked (the message names the problem)."""


def jsonable(obj: Any) -> Any:
    """Convert ``obj`` (dataclasses, numpy, pandas, tuples) to JSON-friendly Python.

    Non-finite floats become ``None`` so that ``json.dumps`` never emits ``NaN``.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.DataFrame):
        return [jsonable(r) for r in obj.to_dict(orient="records")]
    if isinstance(obj, pd.Series):
        return jsonable(obj.to_dict())
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating | float):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


@dataclass
class Result:
    """Base class: every result can be turned into a JSON-friendly dict."""

    def to_dict(self) -> dict[str, Any]:
        return jsonable(self)


@dataclass
class Estimate(Result):
    """One estimate with its uncertainty.

    ``ci`` is the two-sided ``1 - alpha`` confidence interval; ``statistic`` / ``df`` /
    ``p_value`` belong to the test named in ``statistic_name`` (NaN when not meaningful).
    ``method`` says exactly what was computed.
    """

    name: str
    estimate: float
    se: float = math.nan
    ci: tuple[float, float] = (math.nan, math.nan)
    statistic: float = math.nan
    statistic_name: str = ""
    df: float | tuple[float, float] | None = None
    p_value: float = math.nan
    alpha: float = 0.05
    n: int = 0
    method: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise AnalysisError(f"alpha must lie in (0, 1), got {alpha}")
    return alpha


def normal_ci(est: float, se: float, alpha: float) -> tuple[float, float]:
    z = stats.norm.ppf(1 - alpha / 2)
    return (est - z * se, est + z * se)


def t_ci(est: float, se: float, df: float, alpha: float) -> tuple[float, float]:
    q = stats.t.ppf(1 - alpha / 2, df)
    return (est - q * se, est + q * se)


SMALL_N_SUBJECTS = 10
"""Below this many independent units (subjects, cases) large-sample CIs are flagged."""


def small_n_warning(n: int, what: str, method: str, minimum: int = SMALL_N_SUBJECTS) -> list[str]:
    """A one-item warning list when ``n`` < ``minimum`` (the CI ``method`` is unreliable)."""
    if n < minimum:
        return [
            f"only {n} {what}: the {method} interval is unreliable below {minimum}; "
            "read it as indicative"
        ]
    return []


def fisher_z_ci(
    est: float, se: float, alpha: float, df: float | None = None
) -> tuple[float, float]:
    """Interval for a coefficient bounded by [-1, 1] (kappa, AC1, alpha, correlation).

    Wald interval on the Fisher ``atanh`` scale with the delta-method SE
    ``se / (1 - est^2)``, transformed back, so it always lies inside (-1, 1). ``df``
    selects a t quantile instead of the normal one. At |est| = 1 the transform is
    undefined and the Wald interval clipped to [-1, 1] is returned.
    """
    if not (math.isfinite(est) and math.isfinite(se)):
        return (math.nan, math.nan)
    q = stats.norm.ppf(1 - alpha / 2) if df is None else stats.t.ppf(1 - alpha / 2, df)
    if abs(est) >= 1 or se == 0:
        return (max(est - q * se, -1.0), min(est + q * se, 1.0))
    centre, half = math.atanh(est), q * se / (1 - est**2)
    return (math.tanh(centre - half), math.tanh(centre + half))


def logit_ci(est: float, se: float, alpha: float, df: float | None = None) -> tuple[float, float]:
    """Interval for a parameter in [0, 1] (AUC, proportion): Wald on the logit scale with
    the delta-method SE ``se / (est (1 - est))``, transformed back. At 0 or 1 the Wald
    interval clipped to [0, 1] is returned."""
    if not (math.isfinite(est) and math.isfinite(se)):
        return (math.nan, math.nan)
    q = stats.norm.ppf(1 - alpha / 2) if df is None else stats.t.ppf(1 - alpha / 2, df)
    if est <= 0 or est >= 1 or se == 0:
        return (max(est - q * se, 0.0), min(est + q * se, 1.0))
    centre, half = math.log(est / (1 - est)), q * se / (est * (1 - est))
    return (float(special.expit(centre - half)), float(special.expit(centre + half)))


def wilson_ci(successes: float, n: float, alpha: float) -> tuple[float, float]:
    """Wilson (1927) score interval for a binomial proportion (statsmodels
    ``proportion_confint(method='wilson')``); NaN when ``n`` is 0."""
    from statsmodels.stats.proportion import proportion_confint

    if n <= 0:
        return (math.nan, math.nan)
    lo, hi = proportion_confint(successes, n, alpha=alpha, method="wilson")
    return (float(lo), float(hi))


def exact_ci(successes: float, n: float, alpha: float) -> tuple[float, float]:
    """Clopper-Pearson (1934) exact interval for a binomial proportion (statsmodels
    ``proportion_confint(method='beta')``); NaN when ``n`` is 0."""
    from statsmodels.stats.proportion import proportion_confint

    if n <= 0:
        return (math.nan, math.nan)
    lo, hi = proportion_confint(successes, n, alpha=alpha, method="beta")
    return (float(lo), float(hi))


def check_n_boot(n_boot: int, context: str, minimum: int = 100) -> int:
    """``n_boot`` as an int, raising when too few resamples for a percentile interval."""
    if int(n_boot) != n_boot or n_boot < minimum:
        raise AnalysisError(
            f"{context}: n_boot must be an integer >= {minimum} for a bootstrap interval, "
            f"got {n_boot}"
        )
    return int(n_boot)


def two_sided_normal_p(z: float) -> float:
    return float(2 * stats.norm.sf(abs(z))) if np.isfinite(z) else math.nan


def safe_div(num: float, den: float) -> float:
    return float(num / den) if den != 0 else math.nan


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values, in the input order.

    Controls the family-wise error rate; uses statsmodels' ``multipletests``. NaN p-values
    (tests that could not be run) stay NaN and do not count towards the family size.
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise AnalysisError(f"holm expects a 1-D sequence of p-values, got shape {p.shape}")
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise AnalysisError("p-values must lie in [0, 1]")
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def percentile_ci(samples: np.ndarray, alpha: float, axis: int = 0) -> tuple[Any, Any]:
    """Percentile bootstrap interval (NaN replicates ignored)."""
    lo = np.nanquantile(samples, alpha / 2, axis=axis)
    hi = np.nanquantile(samples, 1 - alpha / 2, axis=axis)
    return lo, hi


def factorize_sorted(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique values, integer code of every element), also for mixed-type ids.

    Sorting makes results independent of row order (the bootstrap draws clusters by
    position); ids of mixed types are ordered by (type name, str(value)).
    """
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), sort=False)
    try:
        order = np.argsort(np.asarray(uniques), kind="stable")
    except TypeError:
        keys = [(type(u).__name__, str(u)) for u in uniques]
        order = np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=int)
    rank = np.empty(len(order), dtype=int)
    rank[order] = np.arange(len(order))
    return np.asarray(uniques, dtype=object)[order], rank[codes]


def bootstrap_weights(n_clusters: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_clusters) multiplicities of each cluster in each bootstrap resample.

    Drawing the whole index matrix at once and counting with one ``bincount`` keeps the
    bootstrap free of Python loops: any statistic that is a ratio of per-cluster sums is
    then ``weights @ per_cluster_sums``.
    """
    idx = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
    flat = idx + (np.arange(n_boot)[:, None] * n_clusters)
    counts = np.bincount(flat.ravel(), minlength=n_boot * n_clusters)
    return counts.reshape(n_boot, n_clusters).astype(float)


def bca_interval(
    estimate: float, boot: np.ndarray, jackknife: np.ndarray, alpha: float
) -> tuple[float, float]:
    """Bias-corrected and accelerated bootstrap interval (Efron 1987; Efron & Tibshirani
    1993, ch. 14.3), as ``scipy.stats.bootstrap(method='BCa')``.

    ``boot`` are the bootstrap replicates, ``jackknife`` the leave-one-cluster-out
    estimates. z0 = Phi^-1(share of replicates below the estimate, ties half), acceleration
    a = sum(d^3) / (6 sum(d^2)^1.5) with d = mean(jackknife) - jackknife; the percentile
    levels Phi(z0 + (z0 + z_q) / (1 - a (z0 + z_q))) are read off the replicates.
    """
    boot = np.asarray(boot, dtype=float)
    boot = boot[np.isfinite(boot)]
    jack = np.asarray(jackknife, dtype=float)
    if boot.size < 2 or jack.size < 2 or not math.isfinite(estimate):
        return (math.nan, math.nan)
    share = (np.sum(boot < estimate) + 0.5 * np.sum(boot == estimate)) / boot.size
    z0 = stats.norm.ppf(share)
    d = jack.mean() - jack
    den = 6.0 * (d**2).sum() ** 1.5
    accel = float((d**3).sum() / den) if den > 0 else 0.0
    levels = []
    for q in (alpha / 2, 1 - alpha / 2):
        zq = stats.norm.ppf(q)
        levels.append(stats.norm.cdf(z0 + (z0 + zq) / (1 - accel * (z0 + zq))))
    if not all(np.isfinite(levels)):
        return (math.nan, math.nan)
    return (float(np.quantile(boot, levels[0])), float(np.quantile(boot, levels[1])))
