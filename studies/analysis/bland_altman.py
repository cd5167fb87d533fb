"""Bland-Altman agreement of two measurement methods with repeated measurements per case.

Several readers (and repeat reads) measure each case, so the differences are clustered by
case. Following Bland & Altman (2007, Stat Methods Med Res 16:571, section 5, "true value
varies"), the variance of a single difference is split by a one-way ANOVA on the
differences with case as the factor: ``sigma2_total = sigma2_between + sigma2_within``.
The limits of agreement are ``bias +/- z_{1-alpha/2} * sqrt(sigma2_total)``; their
approximate CIs use the delta method on the ANOVA mean squares (Bland & Altman 1999,
Stat Methods Med Res 8:135; Carstensen 2010), which reduces to the classic
``SE^2 = s^2/n + z^2 s^2 / (2(n-1))`` with one pair per case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from ._common import AnalysisError, Result, check_alpha
from .tidy import require_modalities, validate_reads


@dataclass
class BlandAltmanResult(Result):
    """Bias (mean of ``new - reference``) and limits of agreement, in the value's units.

    ``bias_ci`` / ``loa_lower_ci`` / ``loa_upper_ci`` are two-sided ``1 - alpha``
    intervals; ``sd_between`` / ``sd_within`` are the case-level and within-case SDs of
    one difference; ``sd`` is their total.
    """

    reference: str
    new: str
    n_pairs: int
    n_cases: int
    n_readers: int
    bias: float
    bias_se: float
    bias_ci: tuple[float, float]
    sd: float
    sd_between: float
    sd_within: float
    loa: tuple[float, float]
    loa_se: float
    loa_lower_ci: tuple[float, float]
    loa_upper_ci: tuple[float, float]
    alpha: float
    method: str
    proportional_bias: dict[str, float] = field(default_factory=dict)
    points: list[dict[str, float]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _differences(df: pd.DataFrame, reference: str, new: str) -> pd.DataFrame:
    """One row per (reader, case, read_index) measured under both arms: ``d = new - ref``."""
    index = ["reader_id", "case_id"] + (["read_index"] if "read_index" in df.columns else [])
    sub = df[df["modality_id"].isin([reference, new])]
    wide = sub.pivot(index=index, columns="modality_id", values="value")
    wide = wide[[reference, new]].dropna()
    if wide.empty:
        raise AnalysisError(
            f"bland_altman: no case was measured under both {reference!r} and {new!r}"
        )
    out = wide.reset_index()
    out["d"] = out[new].astype(float) - out[reference].astype(float)
    out["m"] = (out[new].astype(float) + out[reference].astype(float)) / 2
    return out


def proportional_bias(pairs: pd.DataFrame, alpha: float) -> dict[str, float]:
    """Regression of the difference on the pair mean, ``d = a + b * mean`` (Bland & Altman
    1999, section 3.2): slope ``b`` with its OLS SE, t-test and CI; ``b`` != 0 means the bias
    grows with the magnitude. SEs are case-cluster-robust when cases repeat."""
    import statsmodels.api as sm

    x = sm.add_constant(pairs["m"].to_numpy(dtype=float))
    y = pairs["d"].to_numpy(dtype=float)
    if np.ptp(x[:, 1]) == 0:
        return {}
    groups = pd.factorize(pairs["case_id"])[0]
    repeated = groups.max() + 1 < len(groups)
    fit = sm.OLS(y, x).fit(
        **({"cov_type": "cluster", "cov_kwds": {"groups": groups}} if repeated else {})
    )
    lo, hi = fit.conf_int(alpha)[1]
    return {
        "intercept": float(fit.params[0]),
        "slope": float(fit.params[1]),
        "slope_se": float(fit.bse[1]),
        "slope_ci_low": float(lo),
        "slope_ci_high": float(hi),
        "p_value": float(fit.pvalues[1]),
    }


def bland_altman(
    df: pd.DataFrame, reference: str, new: str, alpha: float = 0.05
) -> BlandAltmanResult:
    """Bland-Altman bias and limits of agreement of ``new`` against ``reference``.

    ``df`` is the tidy reads table (``reader_id, case_id, patient_id, modality_id, value``,
    optional ``read_index``); each (reader, case[, read]) measured under both arms gives one
    difference. Cases are the clusters (one-way ANOVA on the differences by case). The
    table is validated like every other analysis: a missing value or a repeated
    (reader, case, arm[, read_index]) row is an error, never silently averaged or dropped.
    ``proportional_bias`` holds the regression of the difference on the pair mean and
    ``points`` the (mean, difference) pairs for the plot.
    """
    alpha = check_alpha(alpha)
    ctx = "bland_altman"
    key = ["reader_id", "case_id", "modality_id"]
    if "read_index" in df.columns:
        key.append("read_index")
    data = validate_reads(df, ctx, columns=[*key, "value"], unique_by=key)
    require_modalities(data, ctx, reference, new)
    pairs = _differences(data, reference, new)
    d = pairs["d"].to_numpy(dtype=float)
    n_total = d.size
    groups = pairs.groupby("case_id")["d"]
    m = groups.size().to_numpy(dtype=float)
    case_means = groups.mean().to_numpy(dtype=float)
    n_cases = m.size
    if n_cases < 3:
        raise AnalysisError(f"Bland-Altman needs at least 3 cases, got {n_cases}")
    z = float(stats.norm.ppf(1 - alpha / 2))
    warnings: list[str] = []
    bias = float(d.mean())
    if n_total == n_cases:
        var_total = float(d.var(ddof=1))
        var_between, var_within = var_total, 0.0
        var_bias = var_total / n_total
        var_var_total = 2 * var_total**2 / (n_cases - 1)
        design = "one difference per case (Bland & Altman 1986)"
    else:
        ms_between = float(np.sum(m * (case_means - bias) ** 2) / (n_cases - 1))
        within_ss = float(((pairs["d"] - groups.transform("mean")) ** 2).sum())
        ms_within = within_ss / (n_total - n_cases)
        divisor = (n_total**2 - float(np.sum(m**2))) / ((n_cases - 1) * n_total)
        var_within = ms_within
        var_between = (ms_between - ms_within) / divisor
        if var_between < 0:
            warnings.append("between-case variance estimate was negative and set to 0")
            var_between = 0.0
            var_total = var_within
            var_var_total = 2 * ms_within**2 / (n_total - n_cases)
        else:
            var_total = var_between + var_within
            var_var_total = (1 / divisor) ** 2 * 2 * ms_between**2 / (n_cases - 1) + (
                1 - 1 / divisor
            ) ** 2 * 2 * ms_within**2 / (n_total - n_cases)
        var_bias = (var_between * float(np.sum(m**2)) + var_within * n_total) / n_total**2
        design = (
            "repeated differences per case: one-way ANOVA on the differences by case "
            "(Bland & Altman 2007, true value varying), sigma2_total = between + within"
        )
    sd = math.sqrt(var_total)
    bias_se = math.sqrt(var_bias)
    loa = (bias - z * sd, bias + z * sd)
    var_sd = var_var_total / (4 * var_total) if var_total > 0 else 0.0
    loa_se = math.sqrt(var_bias + z**2 * var_sd)
    bias_ci = (bias - z * bias_se, bias + z * bias_se)
    pct = f"{100 * (1 - alpha):g}%"
    method = (
        f"Bland-Altman of {new} - {reference} over reader-case pairs; {design}; bias "
        f"{pct} CI normal with the case-clustered SE; limits of agreement bias +/- "
        f"z_(1-alpha/2)={z:.4g} x SD_total; approximate {pct} CIs of the limits from "
        "SE^2 = Var(bias) + z^2 Var(SD_total), Var(SD_total) by the delta method on the "
        "ANOVA mean squares (Bland & Altman 1999)"
    )
    return BlandAltmanResult(
        reference=reference,
        new=new,
        n_pairs=n_total,
        n_cases=n_cases,
        n_readers=int(pairs["reader_id"].nunique()),
        bias=bias,
        bias_se=bias_se,
        bias_ci=bias_ci,
        sd=sd,
        sd_between=math.sqrt(var_between),
        sd_within=math.sqrt(var_within),
        loa=loa,
        loa_se=loa_se,
        loa_lower_ci=(loa[0] - z * loa_se, loa[0] + z * loa_se),
        loa_upper_ci=(loa[1] - z * loa_se, loa[1] + z * loa_se),
        alpha=alpha,
        method=method
        + "; proportional bias: OLS of the difference on the pair mean (Bland & Altman 1999)",
        proportional_bias=proportional_bias(pairs, alpha),
        points=[
            {"mean": float(m_), "difference": float(d_)}
            for m_, d_ in zip(pairs["m"], pairs["d"], strict=True)
        ],
        warnings=warnings,
    )
