"""Individual equivalence (interchangeability) of a new image type with the reference.

Obuchowski, Subhas & Schoenhagen (Acad Radiol 2014), as used by Almansour et al.
(Radiology 2023) for deep-learning spine MRI. With readers j = 1..J reading every case
with conventional (C) and new (N) images::

    A_CC  = mean over cases and ordered reader pairs j != j' of I(Y_C,j == Y_C,j')
    A_NC  = mean over cases and ordered pairs j != j'    of I(Y_N,j == Y_C,j')
    gamma = A_CC - A_NC          (excess disagreement caused by the new images)

The new images are interchangeable with the reference when the upper bound of the CI of
gamma lies below the margin (5 % in Almansour 2023, 10 % in Subhas 2020).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ._common import (
    AnalysisError,
    Result,
    bca_interval,
    bootstrap_weights,
    check_alpha,
    factorize_sorted,
    percentile_ci,
    small_n_warning,
)
from .tidy import require_modalities, validate_reads


@dataclass
class InterchangeabilityResult(Result):
    """gamma = A_CC - A_NC with its patient-cluster bootstrap CI and the verdict."""

    gamma: float
    a_cc: float
    a_nc: float
    se: float
    ci: tuple[float, float]
    margin: float
    interchangeable: bool
    alpha: float
    n_boot: int
    seed: int
    n_patients: int
    n_cases: int
    n_readers: int
    pairs_cc: int
    pairs_nc: int
    reference: str
    new: str
    method: str
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def _pair_counts(
    yc: np.ndarray, yn: np.ndarray, n_levels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-case agreeing and total ordered reader pairs for C-C and N-C.

    ``yc`` / ``yn`` are (cases, readers) integer codes with -1 where a read is missing.
    With one-hot reads X (case, reader, level): agreeing C-C ordered pairs
    = sum_l (sum_j Xc)^2 - (reads present); N-C pairs exclude the same reader
    (sum_l sum_j Xn * sum_j Xc - sum_j sum_l Xn Xc).
    """
    levels = np.arange(n_levels)
    xc = (yc[:, :, None] == levels).astype(float)
    xn = (yn[:, :, None] == levels).astype(float)
    pc, pn = (yc >= 0).astype(float), (yn >= 0).astype(float)
    sc, sn = xc.sum(1), xn.sum(1)
    mc, mn = pc.sum(1), pn.sum(1)
    agree_cc = (sc**2).sum(1) - mc
    pairs_cc = mc**2 - mc
    agree_nc = (sn * sc).sum(1) - (xn * xc).sum(axis=(1, 2))
    pairs_nc = mn * mc - (pn * pc).sum(1)
    return agree_cc, pairs_cc, agree_nc, pairs_nc


def interchangeability(
    df: pd.DataFrame,
    reference: str,
    new: str,
    margin: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    ci_method: str = "percentile",
) -> InterchangeabilityResult:
    """Obuchowski's individual equivalence index gamma with a patient-level bootstrap CI.

    ``df`` holds one row per read (reader_id, case_id, patient_id, modality_id, value) for
    the ``reference`` and ``new`` modalities; ``value`` is the categorical finding (any
    hashable label). Each case is one finding; a patient can have several. The CI is the
    two-sided ``1 - alpha`` percentile interval of ``n_boot`` resamples of patients (all of
    a resampled patient's cases and reads kept). The bootstrap is vectorised: per-patient
    agreeing/total pair counts are precomputed and every resample is one row of a
    (n_boot x n_patients) multiplicity matrix. Missing reads are allowed; only pairs with
    both reads present count.

    ``ci_method='bca'`` gives the bias-corrected and accelerated interval instead (Efron
    1987; acceleration from the leave-one-patient-out jackknife), better when gamma's
    bootstrap distribution is skewed near 0; both intervals are in ``details``.
    """
    alpha = check_alpha(alpha)
    ctx = "interchangeability"
    if not 0 < margin < 1:
        raise AnalysisError(f"{ctx}: margin must lie in (0, 1), got {margin}")
    if ci_method not in ("percentile", "bca"):
        raise AnalysisError(f"{ctx}: ci_method must be 'percentile' or 'bca', got {ci_method!r}")
    if int(n_boot) < 100:
        raise AnalysisError(f"{ctx}: n_boot must be at least 100, got {n_boot}")
    n_boot = int(n_boot)
    data = validate_reads(df, ctx, numeric=())
    require_modalities(data, ctx, reference, new)
    data = data[data["modality_id"].isin([reference, new])]
    per_case_patients = data.groupby("case_id")["patient_id"].nunique()
    if (per_case_patients > 1).any():
        bad = per_case_patients[per_case_patients > 1].index[0]
        raise AnalysisError(f"{ctx}: case {bad!r} is assigned to more than one patient")
    readers, reader_idx = factorize_sorted(data["reader_id"].to_numpy())
    if readers.size < 2:
        raise AnalysisError(f"{ctx}: need at least 2 readers, got {readers.size}")
    levels, codes = factorize_sorted(data["value"].to_numpy())
    cases, case_idx = factorize_sorted(data["case_id"].to_numpy())
    is_mod = {mod: (data["modality_id"] == mod).to_numpy() for mod in (reference, new)}
    y = {}
    for mod, mask in is_mod.items():
        arr = np.full((cases.size, readers.size), -1, dtype=int)
        arr[case_idx[mask], reader_idx[mask]] = codes[mask]
        y[mod] = arr
    agree_cc, pairs_cc, agree_nc, pairs_nc = _pair_counts(y[reference], y[new], levels.size)
    warn = []
    n_missing = int((y[reference] < 0).sum() + (y[new] < 0).sum())
    if n_missing:
        warn.append(f"{n_missing} missing read(s); only pairs with both reads are counted")
    if pairs_cc.sum() == 0 or pairs_nc.sum() == 0:
        raise AnalysisError(f"{ctx}: no case has reads from two readers under both modalities")
    patients, row_patient = factorize_sorted(data["patient_id"].to_numpy())
    patient_index = np.empty(cases.size, dtype=int)
    patient_index[case_idx] = row_patient
    n_pat = patients.size
    if n_pat < 2:
        raise AnalysisError(f"{ctx}: need at least 2 patients for the bootstrap, got {n_pat}")
    per_patient = np.zeros((n_pat, 4))
    np.add.at(per_patient, patient_index, np.column_stack([agree_cc, pairs_cc, agree_nc, pairs_nc]))
    a_cc = per_patient[:, 0].sum() / per_patient[:, 1].sum()
    a_nc = per_patient[:, 2].sum() / per_patient[:, 3].sum()
    gamma = a_cc - a_nc
    wts = bootstrap_weights(n_pat, n_boot, np.random.default_rng(seed))
    sums = wts @ per_patient
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = sums[:, 0] / sums[:, 1] - sums[:, 2] / sums[:, 3]
    lo, hi = percentile_ci(boot, alpha)
    total = per_patient.sum(0)
    loo = total[None, :] - per_patient
    with np.errstate(invalid="ignore", divide="ignore"):
        jack = loo[:, 0] / loo[:, 1] - loo[:, 2] / loo[:, 3]
    bca = bca_interval(float(gamma), boot, jack[np.isfinite(jack)], alpha)
    percentile = (float(lo), float(hi))
    ci = bca if ci_method == "bca" else percentile
    warn.extend(small_n_warning(int(n_pat), "patients", "bootstrap"))
    return InterchangeabilityResult(
        gamma=float(gamma),
        a_cc=float(a_cc),
        a_nc=float(a_nc),
        se=float(np.nanstd(boot, ddof=1)),
        ci=ci,
        margin=float(margin),
        interchangeable=bool(ci[1] < margin),
        alpha=alpha,
        n_boot=n_boot,
        seed=int(seed),
        n_patients=int(n_pat),
        n_cases=int(cases.size),
        n_readers=int(readers.size),
        pairs_cc=int(pairs_cc.sum()),
        pairs_nc=int(pairs_nc.sum()),
        reference=str(reference),
        new=str(new),
        method=(
            "Obuchowski individual equivalence index gamma = A_CC - A_NC (exact agreement over "
            "ordered reader pairs, pooled over cases); two-sided "
            f"{100 * (1 - alpha):g}% {'BCa' if ci_method == 'bca' else 'percentile'} bootstrap "
            "CI resampling patients "
            f"({n_boot} resamples, seed {seed}); interchangeable iff upper bound < margin "
            f"{margin:g}"
        ),
        warnings=warn,
        details={"ci_percentile": percentile, "ci_bca": bca},
    )
