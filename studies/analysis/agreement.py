"""Agreement statistics: Cohen's kappa, Fleiss' kappa, Gwet's AC1/AC2, intra-reader
agreement from repeat reads, and intraclass correlation coefficients.

Conventions
-----------
* Categories are always passed explicitly and in order. Unused levels are kept in the
  table (R's ``irr::kappa2`` drops them, which changes weighted kappa); pass only the
  observed levels to reproduce irr.
* Agreement weights are similarity weights on category *positions* 0..k-1:
  linear ``w = 1 - |i-j|/(k-1)``, quadratic ``w = 1 - (i-j)^2/(k-1)^2``, or a k x k matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
    check_n_boot,
    fisher_z_ci,
    normal_ci,
    percentile_ci,
    small_n_warning,
    t_ci,
    two_sided_normal_p,
)
from .tidy import require_columns

WeightsArg = str | np.ndarray | None


@dataclass
class KappaResult(Estimate):
    """A chance-corrected agreement coefficient.

    ``se`` is the large-sample SE used for ``ci``; ``se_h0`` the SE under H0 (no agreement
    beyond chance) used for the test in ``statistic`` / ``p_value``.
    """

    se_h0: float = math.nan
    observed_agreement: float = math.nan
    expected_agreement: float = math.nan
    categories: list[Any] = field(default_factory=list)
    weights: str = "unweighted"


@dataclass
class FleissKappaResult(KappaResult):
    """Fleiss' kappa plus one kappa per category (Fleiss 1971)."""

    per_category: list[Estimate] = field(default_factory=list)


# ----------------------------------------------------------------------------- helpers


def _encode(values: Any, categories: Sequence[Any], context: str) -> np.ndarray:
    """Integer codes 0..k-1 for ``values`` (-1 where missing); unknown values raise."""
    cats = list(categories)
    if len(cats) < 2:
        raise AnalysisError(f"{context}: need at least 2 categories, got {cats}")
    if len(set(cats)) != len(cats):
        raise AnalysisError(f"{context}: categories contain duplicates: {cats}")
    arr = np.asarray(values, dtype=object)
    flat = pd.Series(arr.ravel())
    missing = flat.isna().to_numpy()
    codes = flat.map({c: i for i, c in enumerate(cats)})
    unknown = codes.isna().to_numpy() & ~missing
    if unknown.any():
        bad = sorted({str(v) for v in flat[unknown].tolist()})[:10]
        raise AnalysisError(f"{context}: values not in categories {cats}: {bad}")
    out = codes.fillna(-1).to_numpy(dtype=int)
    return out.reshape(arr.shape)


def agreement_weights(k: int, weights: WeightsArg) -> tuple[np.ndarray, str]:
    """(k, k) similarity weight matrix and its name for ``weights``."""
    if weights is None or (isinstance(weights, str) and weights == "unweighted"):
        return np.eye(k), "unweighted"
    if isinstance(weights, str):
        i = np.arange(k)
        d = np.abs(i[:, None] - i[None, :]) / (k - 1)
        if weights == "linear":
            return 1.0 - d, "linear"
        if weights == "quadratic":
            return 1.0 - d**2, "quadratic"
        raise AnalysisError(
            f"weights must be None, 'linear', 'quadratic' or a matrix, got {weights!r}"
        )
    w = np.asarray(weights, dtype=float)
    if w.shape != (k, k):
        raise AnalysisError(f"weight matrix must be {k}x{k} for {k} categories, got {w.shape}")
    if not np.all(np.isfinite(w)) or w.min() < 0 or w.max() > 1 or not np.allclose(np.diag(w), 1):
        raise AnalysisError("weight matrix must have entries in [0, 1] and ones on the diagonal")
    return w, "custom"


def _kappa_from_table(table: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """(kappa, p_o, p_e) of a k x k count table under similarity weights ``w``."""
    n = table.sum()
    p = table / n
    po = float((w * p).sum())
    pe = float((w * np.outer(p.sum(1), p.sum(0))).sum())
    kappa = (po - pe) / (1 - pe) if pe < 1 else math.nan
    return kappa, po, pe


def _kappa_batch(tables: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Kappa for a stack of (B, k, k) count tables (vectorised, NaN where undefined)."""
    n = tables.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = tables / n[:, None, None]
        po = (p * w).sum(axis=(1, 2))
        pe = np.einsum("bi,ij,bj->b", p.sum(2), w, p.sum(1))
        return np.where(pe < 1, (po - pe) / (1 - pe), np.nan)


# ----------------------------------------------------------------------- Cohen's kappa


def cohen_kappa(
    a: Sequence[Any] | np.ndarray | pd.Series,
    b: Sequence[Any] | np.ndarray | pd.Series,
    categories: Sequence[Any],
    weights: WeightsArg = None,
    alpha: float = 0.05,
) -> KappaResult:
    """Cohen's (weighted) kappa of two raters with Fleiss-Cohen-Everitt (1969) SEs.

    ``a`` and ``b`` are the two raters' labels for the same subjects; pairs where either is
    missing are dropped (and reported in ``warnings``). The CI uses the non-null large-sample
    SE, the z-test the SE under H0 (both Fleiss, Cohen & Everitt 1969, as in SAS PROC FREQ).
    """
    alpha = check_alpha(alpha)
    ca = _encode(np.asarray(a, dtype=object), categories, "cohen_kappa")
    cb = _encode(np.asarray(b, dtype=object), categories, "cohen_kappa")
    if ca.ndim != 1 or ca.shape != cb.shape:
        raise AnalysisError(
            f"cohen_kappa: a and b must be 1-D of equal length, got {ca.shape} and {cb.shape}"
        )
    keep = (ca >= 0) & (cb >= 0)
    warn = []
    if not keep.all():
        warn.append(f"{int((~keep).sum())} pair(s) with a missing rating dropped")
    ca, cb = ca[keep], cb[keep]
    n = ca.size
    if n < 2:
        raise AnalysisError(f"cohen_kappa: need at least 2 complete pairs, got {n}")
    k = len(categories)
    w, wname = agreement_weights(k, weights)
    table = np.bincount(ca * k + cb, minlength=k * k).reshape(k, k).astype(float)
    return _cohen_from_table(table, w, wname, list(categories), alpha, warn)


def cohen_kappa_table(
    table: np.ndarray | Sequence[Sequence[float]],
    categories: Sequence[Any] | None = None,
    weights: WeightsArg = None,
    alpha: float = 0.05,
) -> KappaResult:
    """Cohen's kappa from a k x k contingency table (rows rater A, columns rater B)."""
    alpha = check_alpha(alpha)
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[0] != t.shape[1] or t.shape[0] < 2:
        raise AnalysisError(f"cohen_kappa_table: need a square k x k table (k >= 2), got {t.shape}")
    if not np.all(np.isfinite(t)) or (t < 0).any() or t.sum() < 2:
        raise AnalysisError("cohen_kappa_table: counts must be finite, >= 0 and total >= 2")
    k = t.shape[0]
    cats = list(categories) if categories is not None else list(range(k))
    if len(cats) != k:
        raise AnalysisError(f"cohen_kappa_table: {len(cats)} categories for a {k}x{k} table")
    w, wname = agreement_weights(k, weights)
    return _cohen_from_table(t, w, wname, cats, alpha, [])


def _cohen_from_table(
    table: np.ndarray, w: np.ndarray, wname: str, cats: list[Any], alpha: float, warn: list[str]
) -> KappaResult:
    n = table.sum()
    p = table / n
    pr, pc = p.sum(1), p.sum(0)
    kappa, po, pe = _kappa_from_table(table, w)
    method = (
        f"Cohen's kappa ({wname} weights on {len(cats)} ordered categories, unused levels kept); "
        "SE: Fleiss-Cohen-Everitt (1969) large-sample variance; CI: Wald on the Fisher-z "
        "(atanh) scale, kept inside (-1, 1) (the plain Wald CI as SAS prints it is in "
        "details['ci_wald']); z-test: FCE variance under H0 kappa=0"
    )
    warn = [*warn, *small_n_warning(int(n), "subjects", "large-sample kappa")]
    if not math.isfinite(kappa):
        warn = [*warn, "kappa undefined: chance agreement is 1 (a single category used)"]
        return KappaResult(
            name="kappa", estimate=math.nan, n=int(n), alpha=alpha, method=method,
            warnings=warn, observed_agreement=po, expected_agreement=pe, categories=cats,
            weights=wname, details={"table": table.astype(int)},
        )  # fmt: skip
    wbar_r = w @ pc  # wbar_i. = sum_j p_.j w_ij
    wbar_c = pr @ w  # wbar_.j = sum_i p_i. w_ij
    s = wbar_r[:, None] + wbar_c[None, :]
    var = ((p * (w - s * (1 - kappa)) ** 2).sum() - (kappa - pe * (1 - kappa)) ** 2) / (
        n * (1 - pe) ** 2
    )
    var0 = ((np.outer(pr, pc) * (w - s) ** 2).sum() - pe**2) / (n * (1 - pe) ** 2)
    se = math.sqrt(max(var, 0.0))
    se0 = math.sqrt(max(var0, 0.0))
    z = kappa / se0 if se0 > 0 else math.nan
    return KappaResult(
        name="kappa" if wname == "unweighted" else f"{wname}-weighted kappa",
        estimate=float(kappa),
        se=se,
        ci=fisher_z_ci(kappa, se, alpha),
        statistic=float(z),
        statistic_name="z",
        p_value=two_sided_normal_p(z),
        alpha=alpha,
        n=int(n),
        method=method,
        warnings=warn,
        se_h0=se0,
        observed_agreement=po,
        expected_agreement=pe,
        categories=cats,
        weights=wname,
        details={"table": table.astype(int), "ci_wald": normal_ci(kappa, se, alpha)},
    )


# ------------------------------------------------------------- many raters (Fleiss, Gwet)


def _rating_counts(
    ratings: Any, categories: Sequence[Any], context: str
) -> tuple[np.ndarray, list[str]]:
    """(n_subjects, k) counts of raters per category; subjects nobody rated are dropped."""
    arr = ratings.to_numpy(dtype=object) if isinstance(ratings, pd.DataFrame) else ratings
    arr = np.asarray(arr, dtype=object)
    if arr.ndim != 2:
        raise AnalysisError(f"{context}: ratings must be 2-D (subjects x raters), got {arr.shape}")
    codes = _encode(arr, categories, context)
    k = len(categories)
    counts = (codes[:, :, None] == np.arange(k)[None, None, :]).sum(axis=1).astype(float)
    r = counts.sum(1)
    warn = []
    if (r == 0).any():
        warn.append(f"{int((r == 0).sum())} subject(s) rated by nobody dropped")
        counts = counts[r > 0]
    if counts.shape[0] < 2:
        raise AnalysisError(f"{context}: need at least 2 rated subjects, got {counts.shape[0]}")
    if (counts.sum(1) >= 2).sum() < 1:
        raise AnalysisError(f"{context}: no subject was rated by 2 or more raters")
    return counts, warn


def _gwet_core(
    counts: np.ndarray, w: np.ndarray, coefficient: str
) -> tuple[float, float, float, float]:
    """Gwet's generalised (unequal raters per subject) coefficient and its variance.

    Returns ``(coef, pa, pe, var)`` for ``coefficient`` 'fleiss' (Fleiss' kappa, Gwet's
    generalisation to missing ratings) or 'ac1' (AC1/AC2). Variance: Gwet (2008, 2014),
    subjects sampled from an infinite population (raters fixed).
    """
    n, q = counts.shape
    r = counts.sum(1)
    cw = counts @ w.T
    sum_q = (counts * (cw - 1)).sum(1)
    m2 = r >= 2
    n2 = int(m2.sum())
    den = np.where(m2, r * (r - 1), 1.0)
    pa_i = np.where(m2, sum_q / den, 0.0)
    pa = float(pa_i[m2].mean())
    pi = (counts / r[:, None]).mean(0)
    if coefficient == "fleiss":
        pe = float((w * np.outer(pi, pi)).sum())
        pi_w = (w @ pi + w.T @ pi) / 2
        pe_i = (counts @ pi_w) / r
    else:
        tw = w.sum() / (q * (q - 1))
        pe = float(tw * (pi * (1 - pi)).sum())
        pe_i = tw * (counts @ (1 - pi)) / r
    coef = (pa - pe) / (1 - pe) if pe < 1 else math.nan
    coef_i = (n / n2) * (pa_i - pe * m2) / (1 - pe)
    coef_i_x = coef_i - 2 * (1 - coef) * (pe_i - pe) / (1 - pe)
    var = float(((coef_i_x - coef) ** 2).sum() / (n * (n - 1)))
    return float(coef), pa, pe, var


def fleiss_kappa(
    ratings: pd.DataFrame | np.ndarray | Sequence[Sequence[Any]],
    categories: Sequence[Any],
    alpha: float = 0.05,
    weights: WeightsArg = None,
) -> FleissKappaResult:
    """Fleiss' kappa for many raters; ``ratings`` is subjects x raters, NaN = not rated.

    * Estimate: Fleiss (1971); with missing ratings Gwet's generalisation (per-subject
      agreement over the raters who rated it, category prevalence averaged over subjects),
      which equals Fleiss (1971) when every subject has the same number of raters.
    * ``se`` / ``ci``: Gwet's (2014) subjects-sampled variance, t with n-1 df (irrCAC).
    * ``se_h0`` / test: Fleiss, Nee & Landis (1979) variance under H0, as R
      ``irr::kappam.fleiss`` (needs the same number of raters per subject; otherwise the
      t-test uses ``se``). Fleiss' (1971) original H0 variance, superseded by FNL (1979), is
      in ``details`` for comparison with older software.
    * ``per_category``: kappa_j = (P_j - p_j) / (1 - p_j) with the FNL (1979) H0 SE.
    * ``weights`` ('linear', 'quadratic' or a matrix) gives the weighted Fleiss kappa of
      Gwet (2014, ch. 2): weighted agreement of rater pairs against weighted chance
      agreement from the pooled category proportions, Gwet's variance and a t-test with
      n-1 df (no per-category kappas). For complete data it relates to Krippendorff's
      alpha with the matching difference function by alpha = 1 - (1 - kappa)(N - 1)/N, N
      the number of ratings.
    """
    alpha = check_alpha(alpha)
    counts, warn = _rating_counts(ratings, categories, "fleiss_kappa")
    n, k = counts.shape
    cats = list(categories)
    if np.count_nonzero(counts.sum(0)) < 2:
        # Every rating in one category: chance agreement is 1 and kappa is 0/0. irr's
        # kappam.fleiss returns NaN here; so do we, with the reason.
        return FleissKappaResult(
            name="Fleiss kappa", estimate=math.nan, alpha=alpha, n=n,
            method="Fleiss (1971) kappa: undefined", observed_agreement=1.0,
            expected_agreement=1.0, categories=cats, weights="unweighted",
            warnings=[*warn, "kappa undefined: every rating is in one category, so chance "
                      "agreement is 1 (report percentage agreement instead)"],
            details={"n_subjects": n},
        )  # fmt: skip
    w, wname = agreement_weights(k, weights)
    if wname != "unweighted":
        return _weighted_fleiss(counts, w, wname, cats, alpha, warn)
    kappa, pa, pe, var = _gwet_core(counts, np.eye(k), "fleiss")
    se = math.sqrt(max(var, 0.0))
    r = counts.sum(1)
    balanced = bool(np.all(r == r[0]))
    pi = (counts / r[:, None]).mean(0)
    details: dict[str, Any] = {
        "n_subjects": n,
        "raters_per_subject": [int(r.min()), int(r.max())],
        "ci_wald": t_ci(kappa, se, n - 1, alpha),
    }
    warn.extend(small_n_warning(n, "subjects", "large-sample kappa"))
    per_category: list[Estimate] = []
    m2 = r >= 2
    num = (counts[m2] * (counts[m2] - 1) / (r[m2, None] - 1)).sum(0)
    den = counts[m2].sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_agree_j = num / den
        kappa_j = (p_agree_j - pi) / (1 - pi)
    if balanced and r[0] >= 2:
        m = float(r[0])
        qj = 1 - pi
        spq = float((pi * qj).sum())
        se0 = (
            math.sqrt(2.0)
            / (spq * math.sqrt(n * m * (m - 1)))
            * math.sqrt(max(spq**2 - float((pi * qj * (qj - pi)).sum()), 0.0))
        )
        var71 = (2 / (n * m * (m - 1))) * (
            (pe - (2 * m - 3) * pe**2 + 2 * (m - 2) * float((pi**3).sum())) / (1 - pe) ** 2
        )
        details["se_h0_fleiss1971"] = math.sqrt(var71)
        details["z_fleiss1971"] = kappa / math.sqrt(var71)
        z = kappa / se0 if se0 > 0 else math.nan
        stat_name, p_value, dfree = "z", two_sided_normal_p(z), None
        se0_j = math.sqrt(2 / (n * m * (m - 1)))
        test = "z-test with the Fleiss-Nee-Landis (1979) SE under H0"
    else:
        se0 = math.nan
        z = kappa / se if se > 0 else math.nan
        stat_name, dfree = "t", float(n - 1)
        p_value = float(2 * stats.t.sf(abs(z), n - 1)) if math.isfinite(z) else math.nan
        se0_j = math.nan
        test = "unequal raters per subject: t-test (n-1 df) with Gwet's SE"
        warn.append("raters per subject differ: Gwet's generalised Fleiss kappa used")
    for j, c in enumerate(cats):
        zj = kappa_j[j] / se0_j if math.isfinite(se0_j) else math.nan
        per_category.append(
            Estimate(
                name=f"kappa[{c}]", estimate=float(kappa_j[j]), se=se0_j, statistic=float(zj),
                statistic_name="z", p_value=two_sided_normal_p(zj), alpha=alpha, n=n,
                method="Fleiss (1971) category kappa; SE under H0: Fleiss-Nee-Landis (1979)",
            )
        )  # fmt: skip
    return FleissKappaResult(
        name="Fleiss kappa",
        estimate=kappa,
        se=se,
        ci=fisher_z_ci(kappa, se, alpha, n - 1),
        statistic=float(z),
        statistic_name=stat_name,
        df=dfree,
        p_value=p_value,
        alpha=alpha,
        n=n,
        method=(
            "Fleiss (1971) kappa (Gwet's generalisation for missing ratings); CI: Gwet (2014) "
            "subjects-sampled variance, t with n-1 df on the Fisher-z (atanh) scale (plain t "
            f"interval as irrCAC prints it in details['ci_wald']); {test}"
        ),
        warnings=warn,
        se_h0=se0,
        observed_agreement=pa,
        expected_agreement=pe,
        categories=cats,
        weights="unweighted",
        details=details,
        per_category=per_category,
    )


def _weighted_fleiss(
    counts: np.ndarray, w: np.ndarray, wname: str, cats: list[Any], alpha: float, warn: list[str]
) -> FleissKappaResult:
    n = counts.shape[0]
    kappa, pa, pe, var = _gwet_core(counts, w, "fleiss")
    se = math.sqrt(max(var, 0.0))
    t = kappa / se if se > 0 else math.nan
    warn = [*warn, *small_n_warning(n, "subjects", "large-sample kappa")]
    return FleissKappaResult(
        name=f"{wname}-weighted Fleiss kappa",
        estimate=kappa,
        se=se,
        ci=fisher_z_ci(kappa, se, alpha, n - 1),
        statistic=float(t),
        statistic_name="t",
        df=float(n - 1),
        p_value=float(2 * stats.t.sf(abs(t), n - 1)) if math.isfinite(t) else math.nan,
        alpha=alpha,
        n=n,
        method=(
            f"weighted Fleiss kappa ({wname} weights on {len(cats)} ordered categories; Gwet "
            "2014); variance: Gwet, subjects sampled; t with n-1 df on the Fisher-z scale"
        ),
        warnings=warn,
        observed_agreement=pa,
        expected_agreement=pe,
        categories=cats,
        weights=wname,
        details={"n_subjects": n, "ci_wald": t_ci(kappa, se, n - 1, alpha)},
    )


def gwet_ac1(
    ratings: pd.DataFrame | np.ndarray | Sequence[Sequence[Any]],
    categories: Sequence[Any],
    weights: WeightsArg = None,
    alpha: float = 0.05,
) -> KappaResult:
    """Gwet's AC1 (unweighted) or AC2 (weighted) for subjects x raters, NaN = not rated.

    Robust to the kappa paradox (high agreement with one dominant category). Variance:
    Gwet (2008; Handbook 2014) with subjects sampled (raters fixed); CI and test use t with
    n-1 df, as irrCAC's ``gwet.ac1.raw``.
    """
    alpha = check_alpha(alpha)
    counts, warn = _rating_counts(ratings, categories, "gwet_ac1")
    n, k = counts.shape
    w, wname = agreement_weights(k, weights)
    coef, pa, pe, var = _gwet_core(counts, w, "ac1")
    se = math.sqrt(max(var, 0.0))
    warn.extend(small_n_warning(n, "subjects", "large-sample AC1"))
    t = coef / se if se > 0 else math.nan
    name = "AC1" if wname == "unweighted" else f"AC2 ({wname})"
    return KappaResult(
        name=name,
        estimate=coef,
        se=se,
        ci=fisher_z_ci(coef, se, alpha, n - 1),
        statistic=float(t),
        statistic_name="t",
        df=float(n - 1),
        p_value=float(2 * stats.t.sf(abs(t), n - 1)) if math.isfinite(t) else math.nan,
        alpha=alpha,
        n=n,
        method=(
            f"Gwet's {name} with {wname} weights on {k} ordered categories; variance: Gwet "
            "(2008/2014), subjects sampled, raters fixed; t with n-1 df, CI on the Fisher-z "
            "(atanh) scale (plain t interval in details['ci_wald'])"
        ),
        warnings=warn,
        observed_agreement=pa,
        expected_agreement=pe,
        categories=list(categories),
        weights=wname,
        details={"ci_wald": t_ci(coef, se, n - 1, alpha)},
    )


# ------------------------------------------------------------------ intra-reader agreement


@dataclass
class IntraReaderResult(Result):
    """Per-reader kappas (one per reader and modality) and a pooled kappa per modality."""

    per_reader: list[KappaResult]
    pooled: list[Estimate]
    method: str
    warnings: list[str] = field(default_factory=list)


def intra_reader_agreement(
    df: pd.DataFrame,
    categories: Sequence[Any],
    weights: WeightsArg = None,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
) -> IntraReaderResult:
    """Intra-reader agreement from repeat reads (columns reader_id, case_id, modality_id,
    read_index, value).

    For every reader (and modality) the first two reads (lowest two ``read_index``) of each
    case are compared with :func:`cohen_kappa` (use ``weights='linear'``/``'quadratic'`` for
    ordinal scales). The pooled kappa per modality is computed from all reader-case pairs;
    because the same cases are read by every reader its CI comes from a case-level cluster
    bootstrap (percentile, ``n_boot`` resamples, vectorised over per-case tables).
    """
    alpha = check_alpha(alpha)
    ctx = "intra_reader_agreement"
    n_boot = check_n_boot(n_boot, ctx)
    require_columns(df, ("reader_id", "case_id", "modality_id", "read_index", "value"), ctx)
    data = df[["reader_id", "case_id", "modality_id", "read_index", "value"]]
    if data.empty:
        raise AnalysisError(f"{ctx}: the reads table is empty (no repeat reads to compare)")
    if data[["reader_id", "case_id", "modality_id", "read_index"]].isna().any().any():
        raise AnalysisError(f"{ctx}: identifiers must not be missing")
    if data.duplicated(["reader_id", "case_id", "modality_id", "read_index"]).any():
        raise AnalysisError(f"{ctx}: duplicate (reader_id, case_id, modality_id, read_index)")
    k = len(categories)
    w, wname = agreement_weights(k, weights)
    warn: list[str] = []
    per_reader: list[KappaResult] = []
    pooled: list[Estimate] = []
    rng = np.random.default_rng(seed)
    for modality, mdf in data.groupby("modality_id", sort=True):
        wide = mdf.pivot(index=["reader_id", "case_id"], columns="read_index", values="value")
        reads = sorted(wide.columns)
        if len(reads) < 2:
            raise AnalysisError(f"{ctx}: modality {modality!r} has no repeat reads")
        if len(reads) > 2:
            warn.append(f"modality {modality!r}: {len(reads)} reads; the first two are compared")
        pair = wide[reads[:2]].dropna()
        if pair.empty:
            raise AnalysisError(f"{ctx}: modality {modality!r} has no case read twice by a reader")
        if len(pair) < len(wide):
            warn.append(f"modality {modality!r}: {len(wide) - len(pair)} case(s) lack a repeat")
        few: list[str] = []
        for reader, rdf in pair.groupby(level="reader_id", sort=True):
            res = cohen_kappa(rdf[reads[0]], rdf[reads[1]], categories, weights, alpha)
            res.details.update({"reader_id": reader, "modality_id": modality})
            per_reader.append(res)
            if len(rdf) < 10:
                few.append(f"{reader} ({len(rdf)})")
        if few:
            warn.append(
                f"modality {modality!r}: intra-reader kappa of reader(s) {', '.join(few)} "
                "from fewer than 10 repeated cases; those intervals are unreliable"
            )
        c1 = _encode(pair[reads[0]].to_numpy(dtype=object), categories, ctx)
        c2 = _encode(pair[reads[1]].to_numpy(dtype=object), categories, ctx)
        case_codes, case_index = np.unique(
            pair.index.get_level_values("case_id").to_numpy(), return_inverse=True
        )
        n_cases = case_codes.size
        flat = case_index * k * k + c1 * k + c2
        case_tables = np.bincount(flat, minlength=n_cases * k * k).reshape(n_cases, k * k)
        total = case_tables.sum(0).reshape(k, k).astype(float)
        kappa, po, pe = _kappa_from_table(total, w)
        wts = bootstrap_weights(n_cases, n_boot, rng)
        boot = _kappa_batch((wts @ case_tables).reshape(n_boot, k, k), w)
        lo, hi = percentile_ci(boot, alpha)
        pooled_warn = small_n_warning(int(n_cases), "repeated cases", "case-bootstrap kappa")
        warn.extend(f"modality {modality!r}: {w_}" for w_ in pooled_warn)
        pooled.append(
            Estimate(
                name=f"pooled intra-reader kappa [{modality}]",
                estimate=float(kappa),
                se=float(np.nanstd(boot, ddof=1)),
                ci=(float(lo), float(hi)),
                alpha=alpha,
                n=int(len(pair)),
                method=(
                    f"Cohen's kappa ({wname} weights) over all reader-case repeat pairs; CI: "
                    f"percentile case-cluster bootstrap ({n_boot} resamples, seed {seed})"
                ),
                details={"modality_id": modality, "n_cases": int(n_cases), "p_o": po, "p_e": pe},
                warnings=pooled_warn,
            )
        )
    return IntraReaderResult(
        per_reader=per_reader,
        pooled=pooled,
        method=(
            f"intra-reader agreement: read 1 vs read 2 per reader and modality, {wname} "
            "weights, Fleiss-Cohen-Everitt SEs per reader, case-cluster bootstrap when pooled"
        ),
        warnings=warn,
    )


# --------------------------------------------------------------------------------- ICC

_ICC_FORMS = {
    "ICC(1,1)": ("1", False),
    "ICC(2,1)": ("2", False),
    "ICC(A,1)": ("2", False),
    "ICC(3,1)": ("3", False),
    "ICC(C,1)": ("3", False),
    "ICC(1,K)": ("1", True),
    "ICC(2,K)": ("2", True),
    "ICC(A,K)": ("2", True),
    "ICC(3,K)": ("3", True),
    "ICC(C,K)": ("3", True),
}

_ICC_DESCRIPTION = {
    "1": "one-way random effects, absolute agreement (Shrout & Fleiss ICC(1))",
    "2": "two-way random effects, absolute agreement (Shrout & Fleiss ICC(2); McGraw & Wong "
    "ICC(A))",
    "3": "two-way mixed effects, consistency (Shrout & Fleiss ICC(3); McGraw & Wong ICC(C))",
}


def _icc_matrix(data: Any, targets: str, raters: str, value: str) -> np.ndarray:
    if isinstance(data, pd.DataFrame) and {targets, raters, value} <= set(data.columns):
        if data.duplicated([targets, raters]).any():
            raise AnalysisError(f"icc: duplicate ({targets}, {raters}) rows")
        mat = data.pivot(index=targets, columns=raters, values=value)
    elif isinstance(data, pd.DataFrame):
        mat = data
    else:
        mat = pd.DataFrame(np.asarray(data, dtype=float))
    x = mat.to_numpy(dtype=float)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise AnalysisError(f"icc: need at least 2 targets x 2 raters, got shape {x.shape}")
    n_missing = int(np.isnan(x).sum())
    if n_missing:
        raise AnalysisError(
            f"icc: {n_missing} missing target x rater cell(s); the ANOVA ICCs need a complete "
            "design"
        )
    if not np.all(np.isfinite(x)):
        raise AnalysisError("icc: values must be finite")
    return x


def icc(
    data: pd.DataFrame | np.ndarray,
    form: str = "ICC(2,1)",
    alpha: float = 0.05,
    targets: str = "case_id",
    raters: str = "reader_id",
    value: str = "value",
) -> Estimate:
    """Intraclass correlation for continuous measures (e.g. SNR, thickness).

    ``data`` is a tidy table (``targets``, ``raters``, ``value`` columns) or a targets x
    raters matrix. ``form`` is one of ICC(1,1), ICC(2,1) = ICC(A,1) two-way random absolute
    agreement, ICC(3,1) = ICC(C,1) two-way mixed consistency, and the average-measure forms
    ICC(1,k), ICC(2,k), ICC(3,k). Estimates and F-tests (H0: ICC = 0, one-sided) follow
    Shrout & Fleiss (1979); CIs McGraw & Wong (1996) (Satterthwaite df for ICC(2,.)).
    """
    alpha = check_alpha(alpha)
    key = form.upper().replace(" ", "")
    if key not in _ICC_FORMS:
        raise AnalysisError(f"icc: unknown form {form!r}; use one of {sorted(_ICC_FORMS)}")
    model, average = _ICC_FORMS[key]
    x = _icc_matrix(data, targets, raters, value)
    n, k = x.shape
    grand = x.mean()
    ss_total = ((x - grand) ** 2).sum()
    ss_r = k * ((x.mean(1) - grand) ** 2).sum()
    ss_c = n * ((x.mean(0) - grand) ** 2).sum()
    msr = ss_r / (n - 1)
    msc = ss_c / (k - 1)
    mse = (ss_total - ss_r - ss_c) / ((n - 1) * (k - 1))
    msw = (ss_total - ss_r) / (n * (k - 1))
    q = 1 - alpha / 2
    details = {"MSR": msr, "MSC": msc, "MSE": mse, "MSW": msw, "n_targets": n, "n_raters": k}
    if model == "1":
        f = msr / msw
        df1, df2 = n - 1, n * (k - 1)
        est = (msr - msw) / msr if average else (msr - msw) / (msr + (k - 1) * msw)
    else:
        f = msr / mse
        df1, df2 = n - 1, (n - 1) * (k - 1)
        if model == "3":
            est = (msr - mse) / msr if average else (msr - mse) / (msr + (k - 1) * mse)
        elif average:
            est = (msr - mse) / (msr + (msc - mse) / n)
        else:
            est = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    if model in ("1", "3"):
        fl = f / stats.f.ppf(q, df1, df2)
        fu = f * stats.f.ppf(q, df2, df1)
        if average:
            ci = (1 - 1 / fl, 1 - 1 / fu)
        else:
            ci = ((fl - 1) / (fl + k - 1), (fu - 1) / (fu + k - 1))
    else:
        rho = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        fj = msc / mse
        vn = (k - 1) * (n - 1) * (k * rho * fj + n * (1 + (k - 1) * rho) - k * rho) ** 2
        vd = (n - 1) * k**2 * rho**2 * fj**2 + (n * (1 + (k - 1) * rho) - k * rho) ** 2
        v = vn / vd
        details["satterthwaite_df"] = v
        f_u = stats.f.ppf(q, n - 1, v)
        f_l = stats.f.ppf(q, v, n - 1)
        lo = n * (msr - f_u * mse) / (f_u * (k * msc + (k * n - k - n) * mse) + n * msr)
        hi = n * (f_l * msr - mse) / (k * msc + (k * n - k - n) * mse + n * f_l * msr)
        ci = (k * lo / (1 + lo * (k - 1)), k * hi / (1 + hi * (k - 1))) if average else (lo, hi)
    label = {"1": "ICC(1", "2": "ICC(2", "3": "ICC(3"}[model] + (",k)" if average else ",1)")
    # Parameter space: a single-rater ICC lies in [-1/(k-1), 1], an average-measure one in
    # (-inf, 1]; McGraw & Wong's ICC(2,.) interval can leave it on small samples.
    floor = -math.inf if average else -1.0 / (k - 1)
    details["ci_mcgraw_wong"] = (float(ci[0]), float(ci[1]))
    bounded = tuple(float(min(max(v, floor), 1.0)) if math.isfinite(v) else v for v in ci)
    warn = small_n_warning(n, "targets", "ICC")
    if bounded != details["ci_mcgraw_wong"]:
        warn.append(
            f"the McGraw-Wong interval left the parameter space [{floor:.3g}, 1] and was "
            "truncated to it"
        )
    if est < floor:
        warn.append("negative variance-component estimate: the ICC estimate is below its range")
    return Estimate(
        name=label,
        estimate=float(est),
        ci=(float(bounded[0]), float(bounded[1])),
        warnings=warn,
        statistic=float(f),
        statistic_name="F",
        df=(float(df1), float(df2)),
        p_value=float(stats.f.sf(f, df1, df2)),
        alpha=alpha,
        n=n,
        method=(
            f"{label}: {_ICC_DESCRIPTION[model]}, "
            f"{'mean of k raters' if average else 'single rater'}; ANOVA estimate (Shrout & "
            "Fleiss 1979), one-sided F-test of ICC = 0, CI McGraw & Wong (1996) truncated to "
            "the parameter space (untruncated in details['ci_mcgraw_wong'])"
        ),
        details=details,
    )
