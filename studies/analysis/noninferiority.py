"""Non-inferiority of a new image type for binary outcomes, with clustering.

* :func:`noninferiority_gee`: marginal logistic model fitted by GEE (Liang & Zeger 1986,
  statsmodels) with the patient as the cluster, so several findings and readers per
  patient are allowed; the difference in proportions ``p_new - p_ref`` comes from the
  fitted marginal probabilities by the delta method with the robust (sandwich)
  covariance. Non-inferior when the lower bound of the two-sided ``1 - alpha`` CI lies
  above ``-margin`` (a 10 % margin is usual in knee DLR studies); equivalently the
  one-sided test at ``alpha / 2``.
* :func:`clustered_mcnemar`: Obuchowski's (1998, Stat Med 17:1495) test of two correlated
  proportions when each patient contributes several paired findings: the difference of
  the pooled proportions over its ratio-estimator (cluster) variance,
  ``V = I / (I - 1) * sum_i (d_i - n_i D)^2 / N^2`` (I patients, N findings, d_i the
  patient's difference in counts, D the pooled difference), chi-square with 1 df.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ._common import AnalysisError, Estimate, Result, check_alpha, small_n_warning
from .tidy import binary_column, require_modalities, validate_reads


@dataclass
class NonInferiorityResult(Result):
    """Difference ``p_new - p_ref`` with its CI, the margin and the verdict."""

    reference: str
    new: str
    p_reference: float
    p_new: float
    difference: Estimate
    margin: float
    noninferior: bool
    p_value: float
    n_reads: int
    n_clusters: int
    method: str
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def noninferiority_gee(
    df: pd.DataFrame,
    reference: str,
    new: str,
    margin: float = 0.10,
    alpha: float = 0.05,
    cluster: str = "patient_id",
    correlation: str = "exchangeable",
) -> NonInferiorityResult:
    """Is ``new`` non-inferior to ``reference`` on a binary outcome (``value`` 0/1, e.g. a
    correct call or a diagnostic-quality rating)?

    ``df`` is the tidy reads table (reader_id, case_id, patient_id, modality_id, value);
    ``correlation`` is the GEE working correlation within a ``cluster`` ('exchangeable'
    or 'independence'; the robust SE is valid either way). ``p_value`` is the one-sided
    test of H0: p_new - p_ref <= -margin.
    """
    alpha = check_alpha(alpha)
    ctx = "noninferiority_gee"
    if not 0 < margin < 1:
        raise AnalysisError(f"{ctx}: margin must lie in (0, 1), got {margin}")
    if correlation not in ("exchangeable", "independence"):
        raise AnalysisError(f"{ctx}: correlation must be 'exchangeable' or 'independence'")
    cols = ("reader_id", "case_id", "modality_id", "value", cluster)
    data = validate_reads(df, ctx, columns=cols)
    require_modalities(data, ctx, reference, new)
    data = data[data["modality_id"].isin([reference, new])]
    y = binary_column(data["value"], "value", ctx).astype(float)
    x = (data["modality_id"] == new).to_numpy(dtype=float)
    groups = pd.factorize(data[cluster])[0]
    n_clusters = int(groups.max() + 1)
    if n_clusters < 2:
        raise AnalysisError(f"{ctx}: need at least 2 clusters ({cluster}), got {n_clusters}")
    p_ref_raw, p_new_raw = y[x == 0].mean(), y[x == 1].mean()
    if p_ref_raw in (0.0, 1.0) and p_new_raw in (0.0, 1.0):
        raise AnalysisError(f"{ctx}: every outcome is the same in both arms; nothing to model")
    import statsmodels.api as sm

    cov_struct = (
        sm.cov_struct.Exchangeable()
        if correlation == "exchangeable"
        else sm.cov_struct.Independence()
    )
    exog = np.column_stack([np.ones_like(x), x])
    model = sm.GEE(y, exog, groups=groups, family=sm.families.Binomial(), cov_struct=cov_struct)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(maxiter=200)
    beta = np.asarray(fit.params)
    cov = np.asarray(fit.cov_robust)
    p_ref = 1 / (1 + math.exp(-beta[0]))
    p_new = 1 / (1 + math.exp(-(beta[0] + beta[1])))
    grad = np.array([p_new * (1 - p_new) - p_ref * (1 - p_ref), p_new * (1 - p_new)])
    se = math.sqrt(max(float(grad @ cov @ grad), 0.0))
    diff = p_new - p_ref
    z_q = stats.norm.ppf(1 - alpha / 2)
    ci = (max(diff - z_q * se, -1.0), min(diff + z_q * se, 1.0))
    z = (diff + margin) / se if se > 0 else math.inf
    p_value = float(stats.norm.sf(z))
    warn = small_n_warning(n_clusters, "clusters", "GEE sandwich", minimum=30)
    if p_ref_raw in (0.0, 1.0) or p_new_raw in (0.0, 1.0):
        warn.append("an arm has all outcomes equal: the logistic fit is at the boundary")
    method = (
        f"marginal logistic GEE (arm effect, {correlation} working correlation within "
        f"{cluster}, robust sandwich SEs; Liang & Zeger 1986); difference in proportions by "
        f"the delta method; non-inferior if the lower {100 * (1 - alpha):g}% bound > "
        f"-{margin:g} (one-sided test at {alpha / 2:g})"
    )
    return NonInferiorityResult(
        reference=str(reference),
        new=str(new),
        p_reference=float(p_ref),
        p_new=float(p_new),
        difference=Estimate(
            name=f"p[{new}] - p[{reference}]",
            estimate=float(diff),
            se=se,
            ci=(float(ci[0]), float(ci[1])),
            statistic=float(z),
            statistic_name="z (H0: difference <= -margin)",
            p_value=p_value,
            alpha=alpha,
            n=int(len(y)),
            method=method,
        ),
        margin=float(margin),
        noninferior=bool(ci[0] > -margin),
        p_value=p_value,
        n_reads=int(len(y)),
        n_clusters=n_clusters,
        method=method,
        warnings=warn,
        details={"coefficients": beta.tolist(), "robust_covariance": cov.tolist()},
    )


def clustered_mcnemar(
    first: np.ndarray | pd.Series,
    second: np.ndarray | pd.Series,
    clusters: np.ndarray | pd.Series,
    alpha: float = 0.05,
) -> Estimate:
    """Obuchowski's (1998) clustered McNemar test of paired binary outcomes.

    ``first`` / ``second`` are 0/1 outcomes (e.g. correct detection) of the same findings
    under two image types; ``clusters`` the patient of each finding. Estimate: difference of
    the pooled proportions; SE from the ratio-estimator cluster variance; chi-square (1
    df). With correlated findings within patients the plain McNemar test is too liberal.
    """
    alpha = check_alpha(alpha)
    ctx = "clustered_mcnemar"
    a = binary_column(pd.Series(np.asarray(first)), "first", ctx).astype(float)
    b = binary_column(pd.Series(np.asarray(second)), "second", ctx).astype(float)
    groups = pd.Series(np.asarray(clusters))
    if not (a.size == b.size == groups.size) or a.size == 0:
        raise AnalysisError(f"{ctx}: first, second and clusters must have the same length > 0")
    if groups.isna().any():
        raise AnalysisError(f"{ctx}: every finding needs a cluster")
    codes = pd.factorize(groups)[0]
    n_clusters = int(codes.max() + 1)
    if n_clusters < 2:
        raise AnalysisError(f"{ctx}: need at least 2 clusters, got {n_clusters}")
    n = a.size
    d_i = np.bincount(codes, weights=a - b, minlength=n_clusters)
    n_i = np.bincount(codes, minlength=n_clusters).astype(float)
    diff = float((a - b).sum() / n)
    var = n_clusters / (n_clusters - 1) * float(((d_i - n_i * diff) ** 2).sum()) / n**2
    se = math.sqrt(var)
    chi2 = diff**2 / var if var > 0 else (0.0 if diff == 0 else math.inf)
    z_q = stats.norm.ppf(1 - alpha / 2)
    return Estimate(
        name="clustered McNemar (Obuchowski 1998)",
        estimate=diff,
        se=se,
        ci=(max(diff - z_q * se, -1.0), min(diff + z_q * se, 1.0)),
        statistic=float(chi2),
        statistic_name="chi2",
        df=1.0,
        p_value=float(stats.chi2.sf(chi2, 1)) if var > 0 else (1.0 if diff == 0 else 0.0),
        alpha=alpha,
        n=int(n),
        method=(
            "Obuchowski (1998) test of correlated proportions for clustered data: pooled "
            "difference over the ratio-estimator cluster variance, chi-square with 1 df"
        ),
        details={
            "n_clusters": n_clusters,
            "b": int(((a == 1) & (b == 0)).sum()),
            "c": int(((a == 0) & (b == 1)).sum()),
        },
        warnings=small_n_warning(n_clusters, "clusters", "cluster-variance"),
    )
