"""Multi-reader multi-case ROC analysis: Obuchowski-Rockette with Hillis corrections.

Empirical (trapezoidal / Wilcoxon) AUC per modality and reader from confidence ratings,
with the AUC covariance across (modality, reader) estimated by DeLong's placement values
or by the case jackknife. Both are closed forms of the placement values, so nothing loops
over cases: leaving out diseased case i gives ``AUC_(i) = (n1 AUC - V10_i) / (n1 - 1)`` and
leaving out normal case j gives ``AUC_(j) = (n0 AUC - V01_j) / (n0 - 1)``.

References: Obuchowski & Rockette (1995); Hillis et al. (2005); Hillis (2007, 2008) for
the denominator degrees of freedom; the OR-DBM MRMC software output format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ._common import AnalysisError, Estimate, Result, check_alpha, logit_ci, small_n_warning
from .tidy import binary_column, validate_reads


@dataclass
class MRMCAnalysis(Result):
    """One OR analysis (RRRC, FRRC or RRFC): global test, pairwise differences, per-modality
    AUCs and, for fixed readers, per-reader differences."""

    analysis: str
    statistic: float
    statistic_name: str
    df: tuple[float, float]
    p_value: float
    differences: list[Estimate]
    modality_auc: list[Estimate]
    reader_differences: list[Estimate] = field(default_factory=list)


@dataclass
class MRMCResult(Result):
    """AUC table, OR variance components and the three analyses."""

    modalities: list[Any]
    readers: list[Any]
    auc: list[list[float]]
    n_normal: int
    n_abnormal: int
    covariance: str
    var_error: float
    cov1: float
    cov2: float
    cov3: float
    ms_t: float
    ms_tr: float
    random_readers_random_cases: MRMCAnalysis
    fixed_readers_random_cases: MRMCAnalysis
    random_readers_fixed_cases: MRMCAnalysis
    alpha: float
    method: str
    warnings: list[str] = field(default_factory=list)


def placement_values(
    ratings: np.ndarray, truth: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empirical AUC and DeLong placement values for every (modality, reader).

    ``ratings`` is (T, R, cases); ``truth`` (cases,) 0/1. Returns ``auc`` (T, R),
    ``v10`` (T, R, n1) = P(rating of diseased case i > normal rating) with ties 1/2, and
    ``v01`` (T, R, n0) = P(diseased rating > rating of normal case j), from midranks
    (O(N log N), batched over modalities and readers, no n1 x n0 comparison matrix).
    """
    pos = ratings[..., truth == 1]
    neg = ratings[..., truth == 0]
    n1, n0 = pos.shape[-1], neg.shape[-1]
    # Midranks (ties averaged) in the pooled sample minus midranks within each class give
    # the number of other-class ratings below (+ 1/2 per tie): DeLong's placement values.
    pooled = stats.rankdata(np.concatenate([pos, neg], axis=-1), axis=-1)
    v10 = (pooled[..., :n1] - stats.rankdata(pos, axis=-1)) / n0
    v01 = 1.0 - (pooled[..., n1:] - stats.rankdata(neg, axis=-1)) / n1
    return v10.mean(-1), v10, v01


def auc_covariance(auc: np.ndarray, v10: np.ndarray, v01: np.ndarray, method: str) -> np.ndarray:
    """(T*R, T*R) covariance of the AUCs (flattened modality-major)."""
    tr = auc.size
    a = v10.reshape(tr, -1)
    b = v01.reshape(tr, -1)
    n1, n0 = a.shape[1], b.shape[1]
    if method == "delong":
        return np.atleast_2d(np.cov(a)) / n1 + np.atleast_2d(np.cov(b)) / n0
    if method == "jackknife":
        theta = auc.reshape(tr, 1)
        loo = np.concatenate([(n1 * theta - a) / (n1 - 1), (n0 * theta - b) / (n0 - 1)], axis=1)
        n = n1 + n0
        dev = loo - loo.mean(1, keepdims=True)
        return (n - 1) / n * (dev @ dev.T)
    raise AnalysisError(f"mrmc_or: covariance must be 'jackknife' or 'delong', got {method!r}")


def _or_components(cov: np.ndarray, t: int, r: int) -> dict[str, float]:
    """Average error variance and Cov1 (same reader, different modality), Cov2 (same
    modality, different reader), Cov3 (both different)."""
    mod = np.repeat(np.arange(t), r)
    rdr = np.tile(np.arange(r), t)
    same_m = mod[:, None] == mod[None, :]
    same_r = rdr[:, None] == rdr[None, :]

    def mean_of(mask: np.ndarray) -> float:
        return float(cov[mask].mean()) if mask.any() else 0.0

    return {
        "var": mean_of(same_m & same_r),
        "cov1": mean_of(~same_m & same_r),
        "cov2": mean_of(same_m & ~same_r),
        "cov3": mean_of(~same_m & ~same_r),
    }


def mrmc_or(
    df: pd.DataFrame,
    covariance: str = "jackknife",
    alpha: float = 0.05,
    rating: str = "confidence",
) -> MRMCResult:
    """Obuchowski-Rockette MRMC analysis of empirical AUC with Hillis degrees of freedom.

    ``df`` has one row per read with reader_id, case_id, modality_id, ``rating`` (the
    confidence rating, higher = more likely diseased) and ``truth`` (0/1, constant per
    case). Fully crossed design required (every reader reads every case in every modality).
    Returns the random-readers-random-cases analysis (F-test with Hillis 2007 ddf_H),
    fixed readers (chi-square / z) and fixed cases (F with (T-1)(R-1) df), each with
    pairwise modality differences and per-modality AUC CIs, as OR-DBM MRMC reports them.
    """
    alpha = check_alpha(alpha)
    ctx = "mrmc_or"
    data = validate_reads(
        df,
        ctx,
        columns=("reader_id", "case_id", "modality_id", rating, "truth"),
        numeric=(rating,),
    )
    truth_by_case = data.groupby("case_id")["truth"].nunique()
    if (truth_by_case > 1).any():
        raise AnalysisError(
            f"{ctx}: truth differs between reads of case {truth_by_case.idxmax()!r}"
        )
    modalities = sorted(data["modality_id"].unique(), key=str)
    readers = sorted(data["reader_id"].unique(), key=str)
    cases = sorted(data["case_id"].unique(), key=str)
    t, r, n = len(modalities), len(readers), len(cases)
    if t < 2:
        raise AnalysisError(f"{ctx}: need at least 2 modalities, got {t}")
    if r < 2:
        raise AnalysisError(f"{ctx}: need at least 2 readers, got {r}")
    if len(data) != t * r * n:
        raise AnalysisError(
            f"{ctx}: design is not fully crossed: {len(data)} reads for {t} modalities x "
            f"{r} readers x {n} cases"
        )
    mi = pd.Index(modalities).get_indexer(data["modality_id"])
    ri = pd.Index(readers).get_indexer(data["reader_id"])
    ci = pd.Index(cases).get_indexer(data["case_id"])
    ratings = np.empty((t, r, n))
    ratings[mi, ri, ci] = data[rating].to_numpy(dtype=float)
    truth = np.zeros(n, dtype=int)
    truth[ci] = binary_column(data["truth"], "truth", ctx)
    n1, n0 = int(truth.sum()), int(n - truth.sum())
    if n1 < 2 or n0 < 2:
        raise AnalysisError(f"{ctx}: need at least 2 diseased and 2 normal cases ({n1}, {n0})")
    auc, v10, v01 = placement_values(ratings, truth)
    cov = auc_covariance(auc, v10, v01, covariance)
    comp = _or_components(cov, t, r)
    theta_t = auc.mean(1)
    theta_r = auc.mean(0)
    grand = auc.mean()
    ms_t = r * ((theta_t - grand) ** 2).sum() / (t - 1)
    ms_tr = ((auc - theta_t[:, None] - theta_r[None, :] + grand) ** 2).sum() / ((t - 1) * (r - 1))
    ms_r_t = ((auc - theta_t[:, None]) ** 2).sum(1) / (r - 1)
    blocks = [cov[i * r : (i + 1) * r, i * r : (i + 1) * r] for i in range(t)]
    off = ~np.eye(r, dtype=bool)
    var_t = np.array([np.diag(b).mean() for b in blocks])
    cov2_t = np.array([b[off].mean() for b in blocks])
    pairs = [(i, j) for i in range(t) for j in range(i + 1, t)]
    c23 = max(comp["cov2"] - comp["cov3"], 0.0)
    z_q = stats.norm.ppf(1 - alpha / 2)

    def diff_list(se: float, dist: str, dfree: float | None, label: str) -> list[Estimate]:
        out = []
        for i, j in pairs:
            d = float(theta_t[i] - theta_t[j])
            stat = d / se if se > 0 else math.nan
            if dist == "t":
                q = stats.t.ppf(1 - alpha / 2, dfree)
                p = float(2 * stats.t.sf(abs(stat), dfree))
            else:
                q, p = z_q, float(2 * stats.norm.sf(abs(stat)))
            out.append(
                Estimate(
                    name=f"AUC[{modalities[i]}] - AUC[{modalities[j]}]",
                    estimate=d, se=se, ci=(d - q * se, d + q * se), statistic=stat,
                    statistic_name=dist, df=dfree, p_value=p, alpha=alpha, n=n, method=label,
                )
            )  # fmt: skip
        return out

    def auc_list(se: np.ndarray, dist: str, dfree: np.ndarray | None, label: str) -> list[Estimate]:
        out = []
        for i in range(t):
            dfi = None if dfree is None else float(dfree[i])
            q = stats.t.ppf(1 - alpha / 2, dfi) if dist == "t" else z_q
            wald = (float(theta_t[i] - q * se[i]), float(theta_t[i] + q * se[i]))
            out.append(
                Estimate(
                    name=f"AUC[{modalities[i]}]", estimate=float(theta_t[i]), se=float(se[i]),
                    ci=logit_ci(float(theta_t[i]), float(se[i]), alpha, dfi),
                    df=dfi, alpha=alpha, n=n,
                    method=label + "; CI on the logit scale (delta method), inside [0, 1]",
                    details={"ci_wald": wald},
                )
            )  # fmt: skip
        return out

    # Random readers, random cases (Hillis 2007 ddf_H).
    den = ms_tr + r * c23
    f_rr = ms_t / den if den > 0 else math.nan
    ddf = den**2 / (ms_tr**2 / ((t - 1) * (r - 1))) if ms_tr > 0 else math.inf
    single_den = ms_r_t + r * np.maximum(cov2_t, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        single_df = single_den**2 / (ms_r_t**2 / (r - 1))
    rrrc = MRMCAnalysis(
        analysis="random readers, random cases",
        statistic=float(f_rr),
        statistic_name="F",
        df=(float(t - 1), float(ddf)),
        p_value=float(stats.f.sf(f_rr, t - 1, ddf)),
        differences=diff_list(
            math.sqrt(2 / r * den), "t", float(ddf),
            "OR RRRC: SE = sqrt(2/r [MS(T*R) + r max(Cov2 - Cov3, 0)]), t with Hillis ddf_H",
        ),
        modality_auc=auc_list(
            np.sqrt(single_den / r), "t", single_df,
            "OR RRRC single modality: SE = sqrt([MS(R) + r max(Cov2, 0)] / r), Hillis df",
        ),
    )  # fmt: skip
    # Fixed readers, random cases.
    den_fr = comp["var"] - comp["cov1"] + (r - 1) * c23
    x2 = (t - 1) * ms_t / den_fr if den_fr > 0 else math.nan
    reader_diffs = []
    for ri_ in range(r):
        for i, j in pairs:
            a, b = i * r + ri_, j * r + ri_
            var_d = cov[a, a] + cov[b, b] - 2 * cov[a, b]
            se_d = math.sqrt(max(var_d, 0.0))
            d = float(auc[i, ri_] - auc[j, ri_])
            z = d / se_d if se_d > 0 else math.nan
            reader_diffs.append(
                Estimate(
                    name=f"reader {readers[ri_]}: AUC[{modalities[i]}] - AUC[{modalities[j]}]",
                    estimate=d, se=se_d, ci=(d - z_q * se_d, d + z_q * se_d), statistic=z,
                    statistic_name="z", p_value=two_sided(z), alpha=alpha, n=n,
                    method=f"single reader, {covariance} covariance, z",
                )
            )  # fmt: skip
    frrc = MRMCAnalysis(
        analysis="fixed readers, random cases",
        statistic=float(x2),
        statistic_name="chi2",
        df=(float(t - 1), math.inf),
        p_value=float(stats.chi2.sf(x2, t - 1)),
        differences=diff_list(
            math.sqrt(2 / r * den_fr), "z", None,
            "OR FRRC: SE = sqrt(2/r [Var - Cov1 + (r-1) max(Cov2 - Cov3, 0)]), z",
        ),
        modality_auc=auc_list(
            np.sqrt((var_t + (r - 1) * np.maximum(cov2_t, 0.0)) / r), "z", None,
            "OR FRRC single modality: SE = sqrt([Var + (r-1) max(Cov2, 0)] / r), z",
        ),
        reader_differences=reader_diffs,
    )  # fmt: skip
    # Random readers, fixed cases.
    df_rf = float((t - 1) * (r - 1))
    f_rf = ms_t / ms_tr if ms_tr > 0 else math.nan
    rrfc = MRMCAnalysis(
        analysis="random readers, fixed cases",
        statistic=float(f_rf),
        statistic_name="F",
        df=(float(t - 1), df_rf),
        p_value=float(stats.f.sf(f_rf, t - 1, df_rf)),
        differences=diff_list(
            math.sqrt(2 / r * ms_tr), "t", df_rf,
            "OR RRFC: SE = sqrt(2/r MS(T*R)), t with (t-1)(r-1) df",
        ),
        modality_auc=auc_list(
            np.sqrt(ms_r_t / r), "t", np.full(t, r - 1.0),
            "OR RRFC single modality: SE = sqrt(MS(R) / r), t with r-1 df",
        ),
    )  # fmt: skip
    warn = _degenerate_warnings(auc, ms_t, ms_tr, den)
    warn.extend(small_n_warning(min(n0, n1), "normal or diseased cases", "MRMC AUC"))
    if r < 4:
        warn.append(
            f"only {r} readers: random-reader inference rests on {r - 1} reader df per "
            "modality; generalisation to other readers is weak"
        )
    return MRMCResult(
        modalities=list(modalities),
        readers=list(readers),
        auc=auc.tolist(),
        n_normal=n0,
        n_abnormal=n1,
        covariance=covariance,
        var_error=comp["var"],
        cov1=comp["cov1"],
        cov2=comp["cov2"],
        cov3=comp["cov3"],
        ms_t=float(ms_t),
        ms_tr=float(ms_tr),
        random_readers_random_cases=rrrc,
        fixed_readers_random_cases=frrc,
        random_readers_fixed_cases=rrfc,
        alpha=alpha,
        method=(
            "Obuchowski-Rockette ANOVA of empirical (trapezoidal/Wilcoxon) AUCs; "
            f"{covariance} AUC covariance; Hillis (2007) ddf_H for random readers and cases; "
            "single-modality AUC CIs on the logit scale (plain t CIs in details['ci_wald'])"
        ),
        warnings=warn,
    )


def _degenerate_warnings(auc: np.ndarray, ms_t: float, ms_tr: float, den: float) -> list[str]:
    """Say why the OR F statistics are undefined (NaN) instead of returning NaN silently."""
    out = []
    if np.all(auc == 1.0):
        out.append(
            "every reader has AUC 1 in every modality (perfect separation): no variance, the "
            "F-tests are undefined (NaN); report the AUCs descriptively"
        )
    elif np.all(auc == auc.flat[0]):
        out.append(
            f"every reader has the same AUC ({auc.flat[0]:.3f}) in every modality (e.g. all "
            "ratings tied): no variance, the F-tests are undefined (NaN)"
        )
    elif not den > 0 or ms_tr == 0:
        out.append(
            "the reader-by-modality mean square or the OR error term is zero: the random-"
            "readers F-test is undefined (NaN)"
        )
    if ms_t == 0 and not out:
        out.append("the modalities have identical mean AUCs: F = 0")
    return out


def two_sided(z: float) -> float:
    return float(2 * stats.norm.sf(abs(z))) if math.isfinite(z) else math.nan
