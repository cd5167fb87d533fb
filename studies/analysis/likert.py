"""Paired comparison of Likert image-quality scores between a new and a reference arm."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ._common import (
    AnalysisError,
    Estimate,
    Result,
    bootstrap_weights,
    check_alpha,
    holm,
    percentile_ci,
)
from .tidy import require_modalities, validate_reads


@dataclass
class LikertResult(Result):
    """Per-reader and pooled Wilcoxon tests, an ordinal mixed-design model and the
    proportion of reads rated diagnostic per arm."""

    per_reader: list[Estimate]
    pooled: Estimate
    pooled_pairs: Estimate
    ordinal_model: Estimate | None
    diagnostic: list[Estimate]
    reference: str
    new: str
    threshold: float
    method: str
    warnings: list[str] = field(default_factory=list)


def rank_biserial(d: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation (T+ - T-) / (T+ + T-) over non-zero
    differences (Kerby 2014); +1 when every non-zero difference is positive."""
    d = np.asarray(d, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(d))
    t_plus, t_minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((t_plus - t_minus) / (t_plus + t_minus))


def _wilcoxon(d: np.ndarray, name: str, alpha: float, method: str) -> Estimate:
    """Wilcoxon signed-rank test of median(d) = 0, zero differences dropped (Wilcoxon)."""
    d = np.asarray(d, dtype=float)
    nz = int((d != 0).sum())
    details = {
        "mean_difference": float(d.mean()),
        "median_difference": float(np.median(d)),
        "n_nonzero": nz,
        "n_improved": int((d > 0).sum()),
        "n_worse": int((d < 0).sum()),
    }
    if nz == 0:
        stat, p = math.nan, 1.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        stat, p = float(res.statistic), float(res.pvalue)
    return Estimate(
        name=name,
        estimate=rank_biserial(d),
        statistic=stat,
        statistic_name="W (smaller rank sum)",
        p_value=p,
        alpha=alpha,
        n=int(d.size),
        method=method,
        details=details,
    )


def likert_comparison(
    df: pd.DataFrame,
    reference: str,
    new: str,
    threshold: float = 3,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
    ordinal_model: bool = True,
) -> LikertResult:
    """Compare paired Likert scores (``value``) of ``new`` against ``reference``.

    * Per reader: Wilcoxon signed-rank on new - reference over that reader's cases (zero
      differences dropped), effect size = matched-pairs rank-biserial r; p-values Holm
      adjusted across readers (``details['p_holm']``).
    * Pooled (primary): Wilcoxon on each case's reader-averaged difference, so cases (the
      independent units) are not counted once per reader. ``pooled_pairs`` is the naive
      test over all reader-case pairs, reported for completeness (ignores clustering).
    * Ordinal model: proportional-odds logit (statsmodels OrderedModel) with arm and reader
      fixed effects; SEs cluster-robust by case. Estimate = log common odds ratio of a
      higher score with the new arm (odds ratio and its CI in ``details``).
    * Diagnostic: proportion of reads with score >= ``threshold`` per arm and the difference,
      percentile case-cluster bootstrap CIs.
    """
    alpha = check_alpha(alpha)
    ctx = "likert_comparison"
    data = validate_reads(df, ctx)
    require_modalities(data, ctx, reference, new)
    data = data[data["modality_id"].isin([reference, new])]
    wide = data.pivot(index=["reader_id", "case_id"], columns="modality_id", values="value")
    warn = []
    paired = wide[[reference, new]].dropna()
    if len(paired) < len(wide):
        warn.append(f"{len(wide) - len(paired)} reader-case pair(s) without both arms dropped")
    if len(paired) < 2:
        raise AnalysisError(f"{ctx}: need at least 2 complete reader-case pairs")
    diff = (paired[new] - paired[reference]).rename("d")
    per_reader = []
    for reader, d in diff.groupby(level="reader_id", sort=True):
        est = _wilcoxon(
            d.to_numpy(),
            f"reader {reader}: {new} vs {reference}",
            alpha,
            "Wilcoxon signed-rank (zero differences dropped) over the reader's cases; effect "
            "size: matched-pairs rank-biserial r",
        )
        est.details["reader_id"] = reader
        per_reader.append(est)
    adjusted = holm([e.p_value for e in per_reader])
    for est, p_adj in zip(per_reader, adjusted):
        est.details["p_holm"] = float(p_adj)
    case_mean = diff.groupby(level="case_id").mean()
    pooled = _wilcoxon(
        case_mean.to_numpy(),
        f"pooled (case means): {new} vs {reference}",
        alpha,
        "Wilcoxon signed-rank on per-case differences averaged over readers (cases are the "
        "independent units; reader correlation within a case handled by averaging)",
    )
    pooled_pairs = _wilcoxon(
        diff.to_numpy(),
        f"pooled (all reader-case pairs): {new} vs {reference}",
        alpha,
        "Wilcoxon signed-rank over all reader-case pairs; ignores clustering by case and "
        "reader (anti-conservative), reported for comparison only",
    )
    model = _ordinal_model(paired, reference, new, alpha, warn) if ordinal_model else None
    diagnostic = _diagnostic(paired, reference, new, threshold, alpha, n_boot, seed)
    return LikertResult(
        per_reader=per_reader,
        pooled=pooled,
        pooled_pairs=pooled_pairs,
        ordinal_model=model,
        diagnostic=diagnostic,
        reference=str(reference),
        new=str(new),
        threshold=float(threshold),
        method=(
            "paired Likert comparison: Wilcoxon signed-rank per reader (Holm across readers) "
            "and on case means; proportional-odds model with reader effects and case-"
            "clustered SEs; proportion diagnostic with case-cluster bootstrap CIs"
        ),
        warnings=warn,
    )


def proportional_odds_fit(
    endog: pd.Series, exog: pd.DataFrame, groups: np.ndarray | None = None
) -> tuple[Any, float]:
    """Cumulative-logit (proportional-odds) fit by Newton-Raphson (statsmodels
    OrderedModel), cluster-robust by ``groups`` when given; returns (fit, largest absolute
    score component). BFGS alone stopped with score components ~1e-3 (beta off from R's
    ``ordinal::clm`` by up to 1e-4 and dependent on reader labels); Newton reaches ~0, with
    a BFGS start only when Newton alone does not."""
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    model = OrderedModel(endog, exog, distr="logit")
    cov = {} if groups is None else {"cov_type": "cluster", "cov_kwds": {"groups": groups}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(method="newton", disp=False, maxiter=200, tol=1e-12, **cov)
        score = float(np.abs(model.score(fit.params)).max())
        if not np.isfinite(score) or score > 1e-6:
            start = model.fit(method="bfgs", disp=False, maxiter=2000).params
            fit = model.fit(
                start_params=start, method="newton", disp=False, maxiter=200, tol=1e-12, **cov
            )
            score = float(np.abs(model.score(fit.params)).max())
    return fit, score


def _ordinal_model(
    paired: pd.DataFrame, reference: str, new: str, alpha: float, warn: list[str]
) -> Estimate | None:
    long = paired.stack().rename("score").reset_index()
    long = long[long["modality_id"].isin([reference, new])]
    levels = np.sort(long["score"].unique())
    if levels.size < 2:
        warn.append("ordinal model skipped: a single score level was used")
        return None
    exog = pd.DataFrame({"new": (long["modality_id"] == new).astype(float).to_numpy()})
    readers = pd.get_dummies(long["reader_id"].astype(str), prefix="reader", drop_first=True)
    exog = pd.concat([exog, readers.astype(float).reset_index(drop=True)], axis=1)
    endog = pd.Series(pd.Categorical(long["score"], categories=levels, ordered=True))
    groups = pd.factorize(long["case_id"])[0]
    try:
        fit, score = proportional_odds_fit(endog, exog, groups)
    except (np.linalg.LinAlgError, ValueError) as exc:
        warn.append(f"ordinal model failed: {exc}")
        return None
    beta, se = float(fit.params["new"]), float(fit.bse["new"])
    z = beta / se if se > 0 else math.nan
    q = stats.norm.ppf(1 - alpha / 2)
    if not np.isfinite(score) or score > 1e-6:
        warn.append(
            f"ordinal model: Newton fit did not converge (largest score component {score:.2g})"
        )
    return Estimate(
        name=f"log odds ratio of a higher score, {new} vs {reference}",
        estimate=beta,
        se=se,
        ci=(beta - q * se, beta + q * se),
        statistic=z,
        statistic_name="z",
        p_value=float(2 * stats.norm.sf(abs(z))),
        alpha=alpha,
        n=len(long),
        method=(
            "proportional-odds (cumulative logit) model, statsmodels OrderedModel fitted by "
            "Newton-Raphson to a score below 1e-6, arm + reader fixed effects, cluster-robust "
            "(sandwich) SEs by case"
        ),
        details={
            "odds_ratio": math.exp(beta),
            "odds_ratio_ci": (math.exp(beta - q * se), math.exp(beta + q * se)),
            "n_cases": int(groups.max() + 1),
            "max_abs_score": score,
        },
    )


def _diagnostic(
    paired: pd.DataFrame,
    reference: str,
    new: str,
    threshold: float,
    alpha: float,
    n_boot: int,
    seed: int,
) -> list[Estimate]:
    case_index = pd.factorize(paired.index.get_level_values("case_id"))[0]
    n_cases = int(case_index.max() + 1)
    ok = np.column_stack(
        [(paired[reference] >= threshold).to_numpy(), (paired[new] >= threshold).to_numpy()]
    ).astype(float)
    per_case = np.zeros((n_cases, 3))
    np.add.at(per_case, case_index, np.column_stack([ok, np.ones(len(ok))]))
    wts = bootstrap_weights(n_cases, n_boot, np.random.default_rng(seed))
    sums = wts @ per_case
    boot = np.column_stack([sums[:, 0] / sums[:, 2], sums[:, 1] / sums[:, 2]])
    boot = np.column_stack([boot, boot[:, 1] - boot[:, 0]])
    point = per_case.sum(0)
    est = [point[0] / point[2], point[1] / point[2]]
    est.append(est[1] - est[0])
    names = [
        f"proportion diagnostic (score >= {threshold:g}) [{reference}]",
        f"proportion diagnostic (score >= {threshold:g}) [{new}]",
        f"difference in proportion diagnostic ({new} - {reference})",
    ]
    lo, hi = percentile_ci(boot, alpha)
    return [
        Estimate(
            name=names[i],
            estimate=float(est[i]),
            se=float(boot[:, i].std(ddof=1)),
            ci=(float(lo[i]), float(hi[i])),
            alpha=alpha,
            n=int(point[2]),
            method=(
                f"proportion of reads; percentile case-cluster bootstrap ({n_boot}, seed {seed})"
            ),
        )
        for i in range(3)
    ]
