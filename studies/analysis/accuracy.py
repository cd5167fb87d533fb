"""Diagnostic accuracy against a reference standard, with clustering-aware CIs and
paired McNemar comparisons between modalities."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._common import (
    AnalysisError,
    Estimate,
    Result,
    bootstrap_weights,
    check_alpha,
    check_n_boot,
    exact_ci,
    factorize_sorted,
    holm,
    percentile_ci,
    wilson_ci,
)
from .tidy import binary_column, validate_reads

METRICS = ("sensitivity", "specificity", "accuracy", "ppv", "npv")
CI_METHODS = ("bootstrap", "wilson", "exact")


@dataclass
class AccuracyResult(Result):
    """Accuracy metrics per (modality, reader) and pooled per modality, plus McNemar tests."""

    estimates: list[Estimate]
    mcnemar: list[Estimate]
    method: str
    warnings: list[str] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        """The estimates as a table (one row per modality x reader x metric)."""
        rows = []
        for e in self.estimates:
            rows.append(
                {
                    **{k: e.details.get(k) for k in ("modality_id", "reader_id", "metric")},
                    "estimate": e.estimate,
                    "ci_low": e.ci[0],
                    "ci_high": e.ci[1],
                    "numerator": e.details.get("numerator"),
                    "denominator": e.details.get("denominator"),
                }
            )
        return pd.DataFrame(rows)


def mcnemar(
    b: int, c: int, exact: bool | None = None, correction: bool = True, alpha: float = 0.05
) -> Estimate:
    """McNemar test for paired binary outcomes from the discordant counts ``b`` and ``c``.

    ``exact=None`` uses the exact binomial test when ``b + c < 25`` and the chi-square
    statistic (with continuity correction when ``correction``) otherwise (statsmodels).
    """
    from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

    alpha = check_alpha(alpha)
    if b < 0 or c < 0 or int(b) != b or int(c) != c:
        raise AnalysisError(f"mcnemar: discordant counts must be non-negative integers ({b}, {c})")
    b, c = int(b), int(c)
    if exact is None:
        exact = b + c < 25
    if b + c == 0:
        return Estimate(
            name="McNemar", estimate=0.0, statistic=math.nan, p_value=1.0, alpha=alpha, n=0,
            method="no discordant pairs", details={"b": 0, "c": 0},
        )  # fmt: skip
    res = sm_mcnemar([[0, b], [c, 0]], exact=exact, correction=correction)
    kind = "exact binomial" if exact else (
        "chi-square with continuity correction" if correction else "chi-square"
    )  # fmt: skip
    return Estimate(
        name="McNemar",
        estimate=float((b - c) / (b + c)),
        statistic=float(res.statistic),
        statistic_name="min(b, c)" if exact else "chi2",
        df=None if exact else 1.0,
        p_value=float(res.pvalue),
        alpha=alpha,
        n=b + c,
        method=f"McNemar test ({kind}) on discordant pairs b={b}, c={c}; estimate (b-c)/(b+c)",
        details={"b": b, "c": c},
    )


def _metric_arrays(sums: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(numerator, denominator) per metric from [..., TP, FN, TN, FP] sums."""
    tp, fn, tn, fp = (sums[..., i] for i in range(4))
    return {
        "sensitivity": (tp, tp + fn),
        "specificity": (tn, tn + fp),
        "accuracy": (tp + tn, tp + fn + tn + fp),
        "ppv": (tp, tp + fp),
        "npv": (tn, tn + fn),
    }


def diagnostic_accuracy(
    df: pd.DataFrame,
    threshold: float | None = None,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
    ci_method: str = "bootstrap",
) -> AccuracyResult:
    """Sensitivity, specificity, accuracy, PPV and NPV against ``truth``.

    ``df`` has reader_id, case_id, patient_id, modality_id, value (the reader's call: 0/1,
    or a rating made binary by ``value >= threshold``) and truth (0/1). Estimates are given
    per modality and reader and pooled over readers per modality. CIs: percentile cluster
    bootstrap resampling patients (all of a patient's cases and all readers kept; readers
    treated as fixed), one shared set of ``n_boot`` resamples, vectorised. McNemar tests
    (exact when fewer than 25 discordant pairs) compare each pair of modalities per reader
    on correct calls for all cases (accuracy), diseased cases (sensitivity) and normal cases
    (specificity); p-values Holm adjusted across readers within each metric and pair.

    ``ci_method`` picks the reported ``ci``: ``'bootstrap'`` (above, the default, needs
    ``n_boot`` >= 100), ``'wilson'`` (Wilson 1927 score interval) or ``'exact'``
    (Clopper-Pearson 1934). Wilson and exact intervals treat every read as independent, so
    they are for a single reader with one finding per patient; both are always in
    ``details`` (``ci_wilson``, ``ci_exact``). Every interval lies in [0, 1].
    """
    alpha = check_alpha(alpha)
    ctx = "diagnostic_accuracy"
    if ci_method not in CI_METHODS:
        raise AnalysisError(f"{ctx}: ci_method must be one of {CI_METHODS}, got {ci_method!r}")
    n_boot = check_n_boot(n_boot, ctx)
    data = validate_reads(
        df,
        ctx,
        columns=("reader_id", "case_id", "patient_id", "modality_id", "value", "truth"),
    )
    truth = binary_column(data["truth"], "truth", ctx)
    if threshold is None:
        call = binary_column(data["value"], "value", ctx)
    else:
        call = (data["value"].to_numpy(dtype=float) >= threshold).astype(int)
    if data.groupby("case_id")["truth"].nunique().max() > 1:
        raise AnalysisError(f"{ctx}: truth differs between reads of the same case")
    data = data.assign(
        _tp=(call == 1) & (truth == 1),
        _fn=(call == 0) & (truth == 1),
        _tn=(call == 0) & (truth == 0),
        _fp=(call == 1) & (truth == 0),
        _correct=(call == truth),
        _truth=truth,
    )
    patients, pidx = factorize_sorted(data["patient_id"].to_numpy())
    n_pat = patients.size
    if n_pat < 2:
        raise AnalysisError(f"{ctx}: need at least 2 patients, got {n_pat}")
    data = data.assign(_pidx=pidx)
    groups: list[tuple[object, object]] = []
    per_patient: list[np.ndarray] = []
    cols = ["_tp", "_fn", "_tn", "_fp"]
    for (mod, rdr), g in data.groupby(["modality_id", "reader_id"], sort=True):
        arr = np.zeros((n_pat, 4))
        np.add.at(arr, g["_pidx"].to_numpy(), g[cols].to_numpy(dtype=float))
        groups.append((mod, rdr))
        per_patient.append(arr)
    for mod in sorted(data["modality_id"].unique(), key=str):
        idx = [i for i, (m, _) in enumerate(groups) if m == mod]
        groups.append((mod, "pooled"))
        per_patient.append(np.sum([per_patient[i] for i in idx], axis=0))
    counts = np.stack(per_patient)  # (G, P, 4)
    wts = bootstrap_weights(n_pat, n_boot, np.random.default_rng(seed))
    boot_sums = np.einsum("bp,gpk->gbk", wts, counts)
    point = _metric_arrays(counts.sum(1))
    boot = _metric_arrays(boot_sums)
    estimates = []
    warn: list[str] = []
    clustered = data.groupby("patient_id")["case_id"].nunique().max() > 1
    if ci_method != "bootstrap" and clustered:
        warn.append(
            f"{ci_method} intervals treat reads as independent but patients have several "
            "cases: they are too narrow (use ci_method='bootstrap')"
        )
    small: dict[str, list[int]] = {}
    for metric in METRICS:
        num, den = point[metric]
        bnum, bden = boot[metric]
        with np.errstate(invalid="ignore", divide="ignore"):
            bval = bnum / bden
        lo, hi = percentile_ci(bval, alpha, axis=1)
        for g, (mod, rdr) in enumerate(groups):
            value = float(num[g] / den[g]) if den[g] > 0 else math.nan
            if den[g] == 0:
                warn.append(f"{metric} undefined for modality {mod!r}, reader {rdr!r}")
            elif den[g] < 10 and metric in ("sensitivity", "specificity"):
                small.setdefault(metric, []).append(int(den[g]))
            ci_w = wilson_ci(num[g], den[g], alpha)
            ci_x = exact_ci(num[g], den[g], alpha)
            ci_boot = (float(lo[g]), float(hi[g]))
            ci_label = {
                "bootstrap": "percentile cluster bootstrap over patients "
                f"({n_boot} resamples, seed {seed})",
                "wilson": "Wilson score interval (reads independent)",
                "exact": "Clopper-Pearson exact interval (reads independent)",
            }[ci_method]
            estimates.append(
                Estimate(
                    name=f"{metric} [{mod}, reader {rdr}]",
                    estimate=value,
                    se=float(np.nanstd(bval[g], ddof=1)),
                    ci={"bootstrap": ci_boot, "wilson": ci_w, "exact": ci_x}[ci_method],
                    alpha=alpha,
                    n=int(den[g]),
                    method=(
                        f"proportion; {ci_label}"
                        + ("; pooled over readers (fixed)" if rdr == "pooled" else "")
                    ),
                    details={
                        "metric": metric,
                        "modality_id": mod,
                        "reader_id": rdr,
                        "numerator": int(num[g]),
                        "denominator": int(den[g]),
                        "ci_bootstrap": ci_boot,
                        "ci_wilson": ci_w,
                        "ci_exact": ci_x,
                    },
                )
            )
    for metric, sizes in small.items():
        warn.append(
            f"{metric} of {len(sizes)} modality-reader group(s) rests on fewer than 10 cases "
            f"(fewest {min(sizes)}): those intervals are wide and approximate"
        )
    return AccuracyResult(
        estimates=estimates,
        mcnemar=_mcnemar_tests(data, alpha),
        method=(
            f"diagnostic accuracy vs reference standard; {ci_method} CIs; McNemar (exact if "
            "< 25 discordant) between modalities per reader, Holm across readers"
        ),
        warnings=warn,
    )


def _mcnemar_tests(data: pd.DataFrame, alpha: float) -> list[Estimate]:
    wide = data.pivot(index=["reader_id", "case_id"], columns="modality_id", values="_correct")
    truth = data.drop_duplicates(["reader_id", "case_id"]).set_index(["reader_id", "case_id"])[
        "_truth"
    ]
    truth = truth.reindex(wide.index)
    mods = sorted(wide.columns, key=str)
    out: list[Estimate] = []
    subsets = {"accuracy": None, "sensitivity": 1, "specificity": 0}
    for i, ma in enumerate(mods):
        for mb in mods[i + 1 :]:
            for metric, cls in subsets.items():
                family = []
                for reader in sorted(wide.index.get_level_values(0).unique(), key=str):
                    sub = wide.loc[reader, [ma, mb]]
                    t = truth.loc[reader]
                    if cls is not None:
                        sub = sub[t.to_numpy() == cls]
                    sub = sub.dropna()
                    if sub.empty:
                        continue
                    a = sub[ma].astype(bool).to_numpy()
                    bvals = sub[mb].astype(bool).to_numpy()
                    est = mcnemar(int((a & ~bvals).sum()), int((~a & bvals).sum()), alpha=alpha)
                    est.name = f"McNemar {metric}: {ma} vs {mb}, reader {reader}"
                    est.details.update(
                        {
                            "metric": metric,
                            "reader_id": reader,
                            "modality_a": ma,
                            "modality_b": mb,
                            "n_pairs": int(len(sub)),
                        }
                    )
                    family.append(est)
                for est, p in zip(family, holm([e.p_value for e in family])):
                    est.details["p_holm"] = float(p)
                out.extend(family)
    return out
