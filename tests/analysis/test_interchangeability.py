"""Individual equivalence index (Obuchowski, Subhas & Schoenhagen, Acad Radiol 2014)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studies.analysis import AnalysisError, interchangeability

HAND_C = {"R1": [1, 0, 1, 1], "R2": [1, 0, 0, 1], "R3": [1, 1, 1, 1]}
HAND_N = {"R1": [1, 0, 1, 0], "R2": [1, 0, 1, 1], "R3": [0, 1, 1, 1]}


def _hand_check_frame() -> pd.DataFrame:
    rows = []
    for mod, reads in (("conventional", HAND_C), ("dl", HAND_N)):
        for reader, values in reads.items():
            for case, v in enumerate(values):
                rows.append((reader, f"case{case}", f"pt{case}", mod, v))
    return pd.DataFrame(
        rows, columns=["reader_id", "case_id", "patient_id", "modality_id", "value"]
    )


def test_hand_check_from_design_document():
    """/work/shared/design/statistics.md: A_CC = 16/24, A_NC = 14/24, gamma = 0.0833."""
    res = interchangeability(_hand_check_frame(), "conventional", "dl", n_boot=500)
    assert res.a_cc == pytest.approx(16 / 24, abs=1e-15)
    assert res.a_nc == pytest.approx(14 / 24, abs=1e-15)
    assert res.gamma == pytest.approx(2 / 24, abs=1e-15)
    assert round(res.gamma, 4) == 0.0833
    assert (res.pairs_cc, res.pairs_nc) == (24, 24)
    assert res.ci[0] <= res.gamma <= res.ci[1]
    json.dumps(res.to_dict())


def _simulate(rng, n_patients, n_findings, n_readers, p_c, p_n, labels=("absent", "present")):
    truth = rng.integers(0, 2, size=(n_patients, n_findings))
    pid = np.repeat(np.arange(n_patients), n_findings)
    cid = np.arange(n_patients * n_findings)
    frames = []
    for mod, p in (("C", p_c), ("N", p_n)):
        correct = rng.random((n_readers, n_patients, n_findings)) < p
        reads = np.where(correct, truth, 1 - truth).reshape(n_readers, -1)
        frames.append(
            pd.DataFrame(
                {
                    "reader_id": np.repeat(np.arange(n_readers), cid.size),
                    "case_id": np.tile(cid, n_readers),
                    "patient_id": np.tile(pid, n_readers),
                    "modality_id": mod,
                    "value": np.asarray(labels)[reads.ravel()],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_bootstrap_matches_explicit_patient_resampling():
    """The vectorised bootstrap equals recomputing gamma on explicitly resampled patients
    (same random index matrix)."""
    rng = np.random.default_rng(4)
    df = _simulate(rng, 12, 3, 4, 0.8, 0.7)
    res = interchangeability(df, "C", "N", n_boot=100, seed=9)
    idx = np.random.default_rng(9).integers(0, 12, size=(100, 12))
    patients = np.sort(df.patient_id.unique())  # clusters are drawn in sorted-id order
    gammas = []
    for row in idx:
        parts = []
        for k, p in enumerate(row):
            part = df[df.patient_id == patients[p]].copy()
            part["case_id"] = part["case_id"].astype(str) + f"-{k}"
            part["patient_id"] = f"b{k}"
            parts.append(part)
        gammas.append(interchangeability(pd.concat(parts), "C", "N", n_boot=100).gamma)
    lo, hi = np.quantile(gammas, [0.025, 0.975])
    assert res.ci == pytest.approx((lo, hi), abs=1e-12)


def test_bootstrap_ci_coverage_near_nominal():
    """200 simulated studies with known gamma = (pc^2 + qc^2) - (pn pc + qn qc): the 95 %
    patient bootstrap CI should cover it about 95 % of the time (accept 0.90-0.99)."""
    rng = np.random.default_rng(2024)
    p_c, p_n = 0.85, 0.75
    true_gamma = (p_c**2 + (1 - p_c) ** 2) - (p_n * p_c + (1 - p_n) * (1 - p_c))
    hits = 0
    for sim in range(200):
        df = _simulate(rng, 40, 2, 4, p_c, p_n)
        res = interchangeability(df, "C", "N", n_boot=400, seed=sim)
        hits += res.ci[0] <= true_gamma <= res.ci[1]
    assert 0.90 <= hits / 200 <= 0.99


def test_verdict_follows_upper_bound():
    rng = np.random.default_rng(1)
    same = _simulate(rng, 150, 2, 4, 0.9, 0.9)
    worse = _simulate(rng, 150, 2, 4, 0.9, 0.6)
    ok = interchangeability(same, "C", "N", margin=0.05)
    bad = interchangeability(worse, "C", "N", margin=0.05)
    assert ok.interchangeable and ok.ci[1] < 0.05
    assert not bad.interchangeable and bad.gamma > 0.1


def test_missing_reads_only_count_present_pairs():
    df = _hand_check_frame()
    dropped = df.drop(index=df[(df.reader_id == "R3") & (df.case_id == "case0")].index)
    res = interchangeability(dropped, "conventional", "dl", n_boot=200)
    # case0 loses R3 in both arms: C-C pairs 24 - 4 = 20, N-C pairs 24 - 4 = 20. Its C reads
    # (R1, R2) = (1, 1) keep 2 agreeing pairs of the former 6: A_CC = (16 - 6 + 2) / 20.
    # N-C on case0 had 4 agreeing pairs (N = 1, 1, 0 vs C = 1, 1, 1); without R3 it has 2:
    # A_NC = (14 - 4 + 2) / 20.
    assert (res.pairs_cc, res.pairs_nc) == (20, 20)
    assert res.a_cc == pytest.approx(12 / 20)
    assert res.a_nc == pytest.approx(12 / 20)
    assert res.warnings


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.permutations(["R1", "R2", "R3"]))
def test_property_invariant_to_relabelling_readers(seed, perm):
    df = _simulate(np.random.default_rng(seed), 8, 2, 3, 0.8, 0.7)
    base = interchangeability(df, "C", "N", n_boot=200, seed=1)
    relabel = df.assign(reader_id=df.reader_id.map(dict(enumerate(perm))))
    other = interchangeability(relabel, "C", "N", n_boot=200, seed=1)
    assert other.gamma == pytest.approx(base.gamma)
    assert other.ci == pytest.approx(base.ci)


def test_bad_input_raises():
    df = _hand_check_frame()
    with pytest.raises(AnalysisError, match="missing column"):
        interchangeability(df.drop(columns="patient_id"), "conventional", "dl")
    with pytest.raises(AnalysisError, match="modality 'sr'"):
        interchangeability(df, "conventional", "sr")
    with pytest.raises(AnalysisError, match="margin"):
        interchangeability(df, "conventional", "dl", margin=0)
    with pytest.raises(AnalysisError, match="share the key"):
        interchangeability(pd.concat([df, df.iloc[:1]]), "conventional", "dl")
    with pytest.raises(AnalysisError, match="missing value"):
        interchangeability(df.assign(value=df.value.where(df.index > 0)), "conventional", "dl")


def test_row_order_and_mixed_type_ids_do_not_change_the_result():
    df = _simulate(np.random.default_rng(8), 20, 2, 3, 0.8, 0.7)
    base = interchangeability(df, "C", "N", n_boot=300, seed=2)
    mixed = df.assign(patient_id=df.patient_id.map(lambda p: p if p % 2 else f"pt{p}"))
    shuffled = mixed.sample(frac=1.0, random_state=3)
    other = interchangeability(shuffled, "C", "N", n_boot=300, seed=2)
    assert other.gamma == pytest.approx(base.gamma)
    assert other.n_patients == base.n_patients == 20
    same_order = interchangeability(
        df.sample(frac=1.0, random_state=4), "C", "N", n_boot=300, seed=2
    )
    assert same_order.ci == pytest.approx(base.ci)


def test_bca_interval_equals_scipy_on_the_same_resamples():
    """``bca_interval`` reproduces scipy.stats.bootstrap(method='BCa') when fed the same
    resamples (scipy draws them as rng.integers(0, n, (n_resamples, n)), as we do)."""
    from scipy import stats

    from studies.analysis._common import bca_interval, bootstrap_weights

    x = np.random.default_rng(3).exponential(size=30)
    ref = stats.bootstrap(
        (x,), np.mean, method="BCa", n_resamples=5000, random_state=np.random.default_rng(7)
    ).confidence_interval
    boot = bootstrap_weights(30, 5000, np.random.default_rng(7)) @ x / 30
    jack = (x.sum() - x) / 29
    assert bca_interval(x.mean(), boot, jack, 0.05) == pytest.approx((ref.low, ref.high), abs=1e-12)


def test_interchangeability_bca_uses_the_patient_jackknife():
    """The BCa interval of gamma equals bca_interval on the same bootstrap replicates and an
    explicit leave-one-patient-out jackknife of gamma."""
    from studies.analysis._common import bca_interval

    rng = np.random.default_rng(11)
    df = _simulate(rng, 15, 3, 4, 0.8, 0.7)
    res = interchangeability(df, "C", "N", n_boot=400, seed=5, ci_method="bca")
    patients = np.sort(df.patient_id.unique())
    jack = [
        interchangeability(df[df.patient_id != p], "C", "N", n_boot=100).gamma for p in patients
    ]
    boot_res = interchangeability(df, "C", "N", n_boot=400, seed=5)
    assert res.details["ci_percentile"] == boot_res.ci
    assert res.interchangeable == (res.ci[1] < res.margin)
    idx = np.random.default_rng(5).integers(0, 15, size=(400, 15))
    gammas = []
    for row in idx:
        parts = []
        for k, p in enumerate(row):
            part = df[df.patient_id == patients[p]].copy()
            part["case_id"] = part["case_id"].astype(str) + f"-{k}"
            part["patient_id"] = f"b{k}"
            parts.append(part)
        gammas.append(interchangeability(pd.concat(parts), "C", "N", n_boot=100).gamma)
    expected = bca_interval(res.gamma, np.array(gammas), np.array(jack), 0.05)
    assert res.ci == pytest.approx(expected, abs=1e-12)
    with pytest.raises(AnalysisError, match="ci_method"):
        interchangeability(df, "C", "N", ci_method="basic")
