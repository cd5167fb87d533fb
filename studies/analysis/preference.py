"""Side-by-side preference reads: which of two arms readers prefer.

A paired read shows two arms side by side; the tidy table codes the answer as ``value``
+1 (prefers the left arm, ``modality_id``), -1 (prefers the right arm,
``second_modality_id``) or 0 (no preference). Preferences are mapped to arm A vs arm B
whichever side each arm was shown on. Ties are excluded from the two-sided exact sign test
(``scipy.stats.binomtest`` against 1/2); the pooled proportion preferring A among non-ties
gets a case-clustered percentile bootstrap CI (cases resampled with replacement).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from ._common import (
    AnalysisError,
    Result,
    bootstrap_weights,
    check_alpha,
    factorize_sorted,
    percentile_ci,
)
from .tidy import require_columns


@dataclass
class PreferenceResult(Result):
    """Counts and proportions preferring arm A, arm B or neither, per reader and pooled.

    ``per_reader`` rows: reader_id, n, prefer_a, prefer_b, equal, the three proportions,
    ``p_a_among_decided`` and the sign-test ``p_value``. ``pooled_ci`` is the bootstrap CI
    of the pooled proportion preferring A among reads with a preference.
    """

    arm_a: str
    arm_b: str
    n_reads: int
    n_cases: int
    n_readers: int
    prefer_a: int
    prefer_b: int
    equal: int
    proportion_a: float
    proportion_b: float
    proportion_equal: float
    p_a_among_decided: float
    pooled_ci: tuple[float, float]
    p_value: float
    per_reader: list[dict]
    alpha: float
    n_boot: int
    seed: int
    method: str
    warnings: list[str] = field(default_factory=list)


def preference_scores(df: pd.DataFrame, arm_a: str, arm_b: str) -> pd.DataFrame:
    """Paired reads of ``arm_a`` against ``arm_b`` with ``score`` +1 (A), -1 (B), 0 (equal)."""
    require_columns(
        df, ["reader_id", "case_id", "modality_id", "second_modality_id", "value"], "preference"
    )
    if arm_a == arm_b:
        raise AnalysisError("arm A and arm B must differ")
    left, right = df["modality_id"].astype(str), df["second_modality_id"].astype(str)
    a_left = (left == arm_a) & (right == arm_b)
    a_right = (left == arm_b) & (right == arm_a)
    sub = df[a_left | a_right].copy()
    if sub.empty:
        raise AnalysisError(f"no side-by-side read compared {arm_a!r} with {arm_b!r}")
    value = pd.to_numeric(sub["value"], errors="coerce")
    if value.isna().any() or not value.isin([-1, 0, 1]).all():
        raise AnalysisError("preference values must be +1 (left), -1 (right) or 0 (equal)")
    sub["score"] = np.where(a_left[sub.index], value, -value).astype(int)
    return sub


def _sign_test(n_a: int, n_b: int) -> float:
    return float(stats.binomtest(n_a, n_a + n_b, 0.5).pvalue) if n_a + n_b else math.nan


def _counts(scores: np.ndarray) -> tuple[int, int, int]:
    return int((scores > 0).sum()), int((scores < 0).sum()), int((scores == 0).sum())


def preference_analysis(
    df: pd.DataFrame,
    arm_a: str,
    arm_b: str,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 20240601,
) -> PreferenceResult:
    """Proportions preferring ``arm_a`` / ``arm_b`` / neither, sign tests and bootstrap CI."""
    alpha = check_alpha(alpha)
    sub = preference_scores(df, arm_a, arm_b)
    scores = sub["score"].to_numpy()
    per_reader = []
    for reader, group in sub.groupby("reader_id", sort=True):
        a, b, e = _counts(group["score"].to_numpy())
        n = a + b + e
        per_reader.append(
            {
                "reader_id": reader,
                "n": n,
                "prefer_a": a,
                "prefer_b": b,
                "equal": e,
                "proportion_a": a / n,
                "proportion_b": b / n,
                "proportion_equal": e / n,
                "p_a_among_decided": a / (a + b) if a + b else math.nan,
                "p_value": _sign_test(a, b),
            }
        )
    a, b, e = _counts(scores)
    n = scores.size
    _, case_code = factorize_sorted(sub["case_id"].to_numpy())
    n_cases = int(case_code.max()) + 1
    per_case_a = np.bincount(case_code, weights=(scores > 0), minlength=n_cases)
    per_case_decided = np.bincount(case_code, weights=(scores != 0), minlength=n_cases)
    weights = bootstrap_weights(n_cases, n_boot, np.random.default_rng(seed))
    warnings = []
    if a + b == 0:
        warnings.append("no read expressed a preference: the sign test is undefined")
        lo, hi = math.nan, math.nan
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = (weights @ per_case_a) / (weights @ per_case_decided)
        lo, hi = percentile_ci(boot, alpha)
    pct = f"{100 * (1 - alpha):g}%"
    method = (
        f"Side-by-side preference {arm_a} (A) vs {arm_b} (B), mapped from left/right; "
        "proportions per reader and pooled over all paired reads; two-sided exact sign test "
        "(binomial, p = 1/2, ties excluded; scipy.stats.binomtest) per reader and pooled; "
        f"{pct} percentile bootstrap CI of the pooled proportion preferring A among "
        f"non-ties, resampling cases ({n_boot} replicates, seed {seed})"
    )
    return PreferenceResult(
        arm_a=arm_a,
        arm_b=arm_b,
        n_reads=n,
        n_cases=n_cases,
        n_readers=len(per_reader),
        prefer_a=a,
        prefer_b=b,
        equal=e,
        proportion_a=a / n,
        proportion_b=b / n,
        proportion_equal=e / n,
        p_a_among_decided=a / (a + b) if a + b else math.nan,
        pooled_ci=(float(lo), float(hi)),
        p_value=_sign_test(a, b),
        per_reader=per_reader,
        alpha=alpha,
        n_boot=n_boot,
        seed=seed,
        method=method,
        warnings=warnings,
    )
