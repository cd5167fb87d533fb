"""Obuchowski-Rockette MRMC analysis against the published Van Dyke et al. (1993) analysis.

Reference output: OR-DBM MRMC 2.51 (Schartz, Hillis, Pesce, Berbaum), trapezoidal AUC with
jackknife covariance, shipped in RJafroc as inst/IowaResults/
VanDyke_trap_area_jackknife_anova.txt (and the JAFROC 4.2.1 report VanDykeROC.txt).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from studies.analysis import AnalysisError, mrmc_or
from studies.analysis.mrmc import auc_covariance, placement_values

from .reference_data import vandyke_long


@pytest.fixture(scope="module")
def vd_jack():
    return mrmc_or(vandyke_long(), covariance="jackknife")


def test_reader_aucs(vd_jack):
    published = [
        [0.91964573, 0.85877617, 0.90386473, 0.97310789, 0.82979066],
        [0.94782609, 0.90531401, 0.92173913, 0.99935588, 0.92995169],
    ]
    assert np.array(vd_jack.auc) == pytest.approx(np.array(published), abs=1e-8)
    assert (vd_jack.n_normal, vd_jack.n_abnormal) == (69, 45)


def test_or_variance_components(vd_jack):
    assert vd_jack.var_error == pytest.approx(0.00080229, abs=5e-9)
    assert vd_jack.cov1 == pytest.approx(0.00034661, abs=5e-9)
    assert vd_jack.cov2 == pytest.approx(0.00034407, abs=5e-9)
    assert vd_jack.cov3 == pytest.approx(0.00023903, abs=5e-9)
    assert vd_jack.ms_t == pytest.approx(0.00479617, abs=5e-9)
    assert vd_jack.ms_tr == pytest.approx(0.00055103, abs=5e-9)


def test_random_readers_random_cases(vd_jack):
    """F(1, 15.26) = 4.46, p = 0.0517; difference -0.04380, SE 0.02075, CI (-0.08796,
    0.00036); single-modality SEs 0.03317360 / 0.02156637 with df 12.74 / 12.71."""
    a = vd_jack.random_readers_random_cases
    assert a.statistic == pytest.approx(4.46, abs=5e-3)
    assert a.df[1] == pytest.approx(15.26, abs=5e-3)
    assert a.p_value == pytest.approx(0.0517, abs=5e-5)
    d = a.differences[0]
    assert d.estimate == pytest.approx(-0.04380032, abs=1e-8)
    assert d.se == pytest.approx(0.02075, abs=5e-6)
    assert d.ci == pytest.approx((-0.08796, 0.00036), abs=5e-6)
    m0, m1 = a.modality_auc
    assert m0.se == pytest.approx(0.03317360, abs=5e-8)
    assert m1.se == pytest.approx(0.02156637, abs=5e-8)
    assert (m0.df, m1.df) == pytest.approx((12.74, 12.71), abs=5e-3)
    assert m0.details["ci_wald"] == pytest.approx((0.82522360, 0.96885048), abs=5e-8)


def test_fixed_readers_random_cases(vd_jack):
    """X2(1) = 5.47595, p = 0.0193; difference SE 0.01872, CI (-0.08049, -0.00711); per-reader
    SEs 0.02551 0.02630 0.03121 0.01729 0.04406 and p .2693 .0768 .5668 .1290 .0230."""
    a = vd_jack.fixed_readers_random_cases
    assert a.statistic == pytest.approx(5.47595, abs=5e-6)
    assert a.p_value == pytest.approx(0.0193, abs=5e-5)
    assert a.differences[0].se == pytest.approx(0.01872, abs=5e-6)
    assert a.differences[0].ci == pytest.approx((-0.08049, -0.00711), abs=5e-6)
    assert [m.se for m in a.modality_auc] == pytest.approx([0.02428971, 0.01677632], abs=5e-8)
    ses = [e.se for e in a.reader_differences]
    ps = [e.p_value for e in a.reader_differences]
    assert ses == pytest.approx([0.02551, 0.02630, 0.03121, 0.01729, 0.04406], abs=5e-6)
    assert ps == pytest.approx([0.2693, 0.0768, 0.5668, 0.1290, 0.0230], abs=5e-5)


def test_random_readers_fixed_cases(vd_jack):
    """F(1, 4) = 8.70, p = 0.0420; SE 0.01485, CI (-0.08502, -0.00258)."""
    a = vd_jack.random_readers_fixed_cases
    assert a.statistic == pytest.approx(8.70, abs=5e-3)
    assert a.df == (1.0, 4.0)
    assert a.p_value == pytest.approx(0.0420, abs=5e-5)
    assert a.differences[0].se == pytest.approx(0.01485, abs=5e-6)
    assert a.differences[0].ci == pytest.approx((-0.08502, -0.00258), abs=5e-6)
    assert [m.se for m in a.modality_auc] == pytest.approx([0.02482994, 0.01615303], abs=5e-8)


def _brute_force_delong(ratings: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong, DeLong & Clarke-Pearson (1988) written from the definition with explicit
    kernel matrices psi(x, y) = 1, 1/2, 0 (independent of the rank-based implementation)."""
    flat = ratings.reshape(-1, ratings.shape[-1])
    pos, neg = flat[:, truth == 1], flat[:, truth == 0]
    psi = (pos[:, :, None] > neg[:, None, :]) + 0.5 * (pos[:, :, None] == neg[:, None, :])
    v10, v01 = psi.mean(2), psi.mean(1)
    auc = psi.mean(axis=(1, 2))
    s10, s01 = np.cov(v10), np.cov(v01)
    return auc, s10 / pos.shape[1] + s01 / neg.shape[1]


def test_delong_covariance_matches_definition():
    df = vandyke_long()
    ratings = np.zeros((2, 5, 114))
    ratings[df.modality_id, df.reader_id, df.case_id] = df.confidence
    truth = df.drop_duplicates("case_id").sort_values("case_id").truth.to_numpy()
    auc, v10, v01 = placement_values(ratings, truth)
    ref_auc, ref_cov = _brute_force_delong(ratings, truth)
    assert auc.ravel() == pytest.approx(ref_auc, abs=1e-12)
    assert auc_covariance(auc, v10, v01, "delong") == pytest.approx(ref_cov, abs=1e-12)


def test_jackknife_closed_form_matches_explicit_leave_one_out():
    rng = np.random.default_rng(2)
    truth = np.r_[np.zeros(9, int), np.ones(7, int)]
    ratings = rng.integers(1, 6, size=(2, 3, 16)).astype(float) + truth
    auc, v10, v01 = placement_values(ratings, truth)
    loo = np.stack(
        [
            placement_values(np.delete(ratings, k, -1), np.delete(truth, k))[0].ravel()
            for k in range(16)
        ],
        axis=1,
    )
    dev = loo - loo.mean(1, keepdims=True)
    assert auc_covariance(auc, v10, v01, "jackknife") == pytest.approx(15 / 16 * dev @ dev.T)


def test_delong_analysis_close_to_jackknife(vd_jack):
    dl = mrmc_or(vandyke_long(), covariance="delong")
    assert dl.covariance == "delong"
    assert dl.var_error == pytest.approx(vd_jack.var_error, rel=0.05)
    assert dl.random_readers_random_cases.p_value == pytest.approx(0.0517, abs=0.002)


def test_invariant_to_relabelling_readers_and_cases(vd_jack):
    df = vandyke_long()
    df["reader_id"] = df["reader_id"].map({0: "e", 1: "d", 2: "c", 3: "b", 4: "a"})
    df["case_id"] = "case-" + (113 - df["case_id"]).astype(str)
    res = mrmc_or(df.sample(frac=1, random_state=1))
    a, b = res.random_readers_random_cases, vd_jack.random_readers_random_cases
    assert a.statistic == pytest.approx(b.statistic)
    assert a.differences[0].ci == pytest.approx(b.differences[0].ci)
    json.dumps(res.to_dict())


def test_three_modalities_gives_three_pairwise_differences():
    rng = np.random.default_rng(0)
    n = 60
    truth = rng.integers(0, 2, n)
    rows = [
        (r, c, m, float(rng.normal() + (1 + 0.3 * m) * truth[c]), truth[c])
        for m in range(3)
        for r in range(4)
        for c in range(n)
    ]
    df = pd.DataFrame(rows, columns=["reader_id", "case_id", "modality_id", "confidence", "truth"])
    res = mrmc_or(df, covariance="delong")
    assert len(res.random_readers_random_cases.differences) == 3
    assert res.random_readers_random_cases.df[0] == 2


def test_bad_designs_raise():
    df = vandyke_long()
    with pytest.raises(AnalysisError, match="fully crossed"):
        mrmc_or(df.iloc[1:])
    with pytest.raises(AnalysisError, match="truth"):
        mrmc_or(df.drop(columns="truth"))
    bad = df.copy()
    bad.loc[0, "truth"] = 1 - bad.loc[0, "truth"]
    with pytest.raises(AnalysisError, match="truth differs"):
        mrmc_or(bad)
    with pytest.raises(AnalysisError, match="covariance"):
        mrmc_or(df, covariance="bootstrap")
    with pytest.raises(AnalysisError, match="2 modalities"):
        mrmc_or(df[df.modality_id == 0])


def test_single_modality_auc_interval_is_on_the_logit_scale_and_bounded(vd_jack):
    """The plain t interval of a high AUC can pass 1 (the report printed '0.945 to 1.034');
    the logit-scale interval, computed here by hand, stays inside (0, 1)."""
    from scipy import stats

    for m in vd_jack.random_readers_random_cases.modality_auc:
        q = stats.t.ppf(0.975, m.df)
        logit = np.log(m.estimate / (1 - m.estimate))
        half = q * m.se / (m.estimate * (1 - m.estimate))
        expected = 1 / (1 + np.exp(-(logit - half))), 1 / (1 + np.exp(-(logit + half)))
        assert m.ci == pytest.approx(expected, abs=1e-12)
        assert 0 < m.ci[0] < m.estimate < m.ci[1] < 1
    near_one = vandyke_long()
    near_one["confidence"] = np.where(
        near_one["truth"] == 1, near_one["confidence"] + 4, near_one["confidence"]
    )
    res = mrmc_or(near_one)
    for analysis in (res.random_readers_random_cases, res.fixed_readers_random_cases):
        for m in analysis.modality_auc:
            assert 0 <= m.ci[0] <= m.estimate <= m.ci[1] <= 1


def test_perfect_separation_and_all_ties_warn_instead_of_silent_nan():
    """Issue 14: all AUCs 1, or all ratings tied, gave F = p = NaN with no warning."""
    df = vandyke_long()
    perfect = df.assign(confidence=df["truth"] * 4 + 1)
    res = mrmc_or(perfect)
    assert np.isnan(res.random_readers_random_cases.statistic)
    assert any("AUC 1" in w for w in res.warnings)
    tied = df.assign(confidence=3)
    res = mrmc_or(tied)
    assert np.isnan(res.random_readers_random_cases.p_value)
    assert any("same AUC (0.500)" in w for w in res.warnings)
    assert not mrmc_or(df).warnings
