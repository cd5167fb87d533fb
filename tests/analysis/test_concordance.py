"""Kendall's W, Friedman, Krippendorff's alpha, weighted Fleiss kappa, Hodges-Lehmann."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from studies.analysis import AnalysisError, fleiss_kappa
from studies.analysis.concordance import (
    friedman_test,
    hodges_lehmann,
    kendall_w,
    krippendorff_alpha,
)

from .reference_data import ANXIETY, DIAGNOSES

nan = np.nan
# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C: 4 observers
# x 12 units with missing values (unit 12 coded once, so not pairable).
KRIPPENDORFF_2011 = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ]
).T


@pytest.mark.parametrize(
    ("level", "published"),
    [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)],
)
def test_krippendorff_2011_worked_example(level, published):
    """Published: nominal 0.743, ordinal 0.815, interval 0.849, ratio 0.797 (40 pairable
    values). The `krippendorff` package (pinned in requirements-dev) is a second, independent
    implementation, agreeing to machine precision."""
    import krippendorff

    res = krippendorff_alpha(KRIPPENDORFF_2011, level, n_boot=200)
    assert res.estimate == pytest.approx(published, abs=5e-4)
    assert res.pairable_values == 40
    reference = krippendorff.alpha(reliability_data=KRIPPENDORFF_2011.T, level_of_measurement=level)
    assert res.estimate == pytest.approx(reference, abs=1e-12)
    assert -1 <= res.ci[0] <= res.ci[1] <= 1
    json.dumps(res.to_dict())


def test_krippendorff_matches_package_on_random_incomplete_data():
    import krippendorff

    rng = np.random.default_rng(2)
    data = rng.integers(1, 6, size=(60, 5)).astype(float)
    data[rng.random(data.shape) < 0.2] = nan
    for level in ("nominal", "ordinal", "interval", "ratio"):
        ours = krippendorff_alpha(data, level, n_boot=100).estimate
        ref = krippendorff.alpha(reliability_data=data.T, level_of_measurement=level)
        assert ours == pytest.approx(ref, abs=1e-12)


def test_krippendorff_bad_input():
    with pytest.raises(AnalysisError, match="level"):
        krippendorff_alpha(KRIPPENDORFF_2011, "cardinal")
    with pytest.raises(AnalysisError, match="2 distinct"):
        krippendorff_alpha(np.ones((5, 3)))
    with pytest.raises(AnalysisError, match="numeric"):
        krippendorff_alpha([["a", "b"], ["c", "d"]])


@pytest.mark.parametrize(("weights", "level"), [(None, "nominal"), ("quadratic", "interval")])
def test_weighted_fleiss_kappa_relates_to_krippendorff_alpha(weights, level):
    """For complete data alpha = 1 - (1 - kappa_F)(N - 1)/N with N ratings (Krippendorff
    2011, section on Fleiss' generalisation), also with matching weights: two independent
    computations (Gwet's pairwise agreement vs Krippendorff's coincidence matrix)."""
    for data, cats in ((DIAGNOSES, [1, 2, 3, 4, 5]), (ANXIETY, [1, 2, 3, 4, 5, 6])):
        kappa = fleiss_kappa(data, cats, weights=weights).estimate
        alpha = krippendorff_alpha(data, level, n_boot=100).estimate
        n = data.size
        assert alpha == pytest.approx(1 - (1 - kappa) * (n - 1) / n, abs=1e-12)


def test_weighted_fleiss_identity_weights_equal_unweighted_and_interval_bounded():
    plain = fleiss_kappa(DIAGNOSES, [1, 2, 3, 4, 5])
    ident = fleiss_kappa(DIAGNOSES, [1, 2, 3, 4, 5], weights=np.eye(5))
    assert ident.estimate == pytest.approx(plain.estimate, abs=1e-12)
    assert ident.se == pytest.approx(plain.se, abs=1e-12)
    lin = fleiss_kappa(ANXIETY, [1, 2, 3, 4, 5, 6], weights="linear")
    assert lin.weights == "linear" and -1 < lin.ci[0] < lin.estimate < lin.ci[1] < 1


def test_kendall_w_and_friedman_match_scipy_with_ties():
    rng = np.random.default_rng(4)
    scores = rng.integers(1, 6, size=(12, 4)).astype(float)  # 12 blocks x 4 treatments
    ref = stats.friedmanchisquare(*scores.T)
    res = friedman_test(scores)
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    w = kendall_w(scores)
    assert w.estimate == pytest.approx(ref.statistic / (12 * 3), rel=1e-12)


def test_kendall_w_perfect_and_no_concordance():
    """W = 1 when all raters rank alike; W = 0 when rank sums are equal (Kendall 1948)."""
    same = np.tile(np.arange(1.0, 7.0), (4, 1))
    assert kendall_w(same).estimate == pytest.approx(1.0)
    latin = np.array([[1, 2, 3], [2, 3, 1], [3, 1, 2]], dtype=float)
    assert kendall_w(latin).estimate == pytest.approx(0.0)
    with pytest.raises(AnalysisError, match="missing"):
        kendall_w([[1, 2, nan], [1, 2, 3]])


def test_hodges_lehmann_matches_r_wilcox_test_example():
    """R ?wilcox.test, Hollander & Wolfe (1973) p. 29 depression data: wilcox.test(x, y,
    paired = TRUE, conf.int = TRUE) gives (pseudo)median 0.46 and 95% CI 0.010 to 0.786."""
    x = np.array([1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30])
    y = np.array([0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29])
    res = hodges_lehmann(x - y)
    assert res.estimate == pytest.approx(0.46, abs=5e-4)
    assert res.ci == pytest.approx((0.010, 0.786), abs=5e-4)


def test_hodges_lehmann_exact_interval_coverage_by_enumeration():
    """The exact order statistic is the alpha/2 quantile of the signed-rank distribution,
    here enumerated over all 2^n sign patterns independently of the implementation."""
    import itertools

    n = 10
    ranks = np.arange(1, n + 1)
    t_plus = np.array(
        [ranks[np.array(s, dtype=bool)].sum() for s in itertools.product([0, 1], repeat=n)]
    )
    c = int(np.min(np.nonzero(np.bincount(t_plus).cumsum() / 2**n >= 0.025)))
    d = np.linspace(-1.3, 2.9, n) + np.arange(n) * 1e-3
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2)
    assert hodges_lehmann(d).ci == pytest.approx((walsh[c - 1], walsh[walsh.size - c]))
