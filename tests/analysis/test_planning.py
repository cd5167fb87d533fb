"""Study planning against RJafroc's published sample-size results on the Van Dyke data.

Reference values: RJafroc tests/testthat (SsPowerGivenJK tests "after updating Ss routines
from Hillis 2011 and 2018 papers"), dataset02 = Van Dyke et al. (1993), FOM Wilcoxon, OR
method, observed effect size -0.043800322:
  SsPowerGivenJK(J = 10, K = 165, RRRC) power 0.80541995
  SsPowerGivenJK(J = 10, K = 131, FRRC) power 0.80091813
  SsPowerGivenJK(J = 10, K = 53,  RRFC) power 0.80496663
  SsPowerGivenJK(J = 6,  K = 111, RRRC) power 0.5526116
  SsSampleSizeKGivenJ(J = 6, RRRC) K = 251; SsPowerTable row J = 6: K = 251, power 0.801
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from studies.analysis import AnalysisError, cohen_kappa_table
from studies.analysis.planning import (
    interchangeability_sample_size,
    kappa_sample_size,
    kappa_variance_binary,
    mrmc_power,
    mrmc_power_table,
    mrmc_sample_size,
    or_components_from_pilot,
)

from .reference_data import vandyke_long

EFFECT = -0.043800322


@pytest.fixture(scope="module")
def vd():
    return or_components_from_pilot(vandyke_long())


def test_pilot_components_and_observed_effect(vd):
    assert vd.n_cases == 114
    assert vd.observed_effect == pytest.approx(EFFECT, abs=1e-9)
    # sigma2_TR = MS(T*R) - Var + Cov1 + max(Cov2 - Cov3, 0) from the OR-DBM MRMC values.
    assert vd.var_tr == pytest.approx(0.00055103 - 0.00080229 + 0.00034661 + 0.00010504, abs=2e-8)


@pytest.mark.parametrize(
    ("readers", "cases", "analysis", "expected"),
    [
        (10, 165, "RRRC", 0.80541995),
        (10, 131, "FRRC", 0.80091813),
        (10, 53, "RRFC", 0.80496663),
        (6, 111, "RRRC", 0.5526116),
    ],
)
def test_power_matches_rjafroc(vd, readers, cases, analysis, expected):
    res = mrmc_power(readers, cases, EFFECT, components=vd, analysis=analysis)
    assert res.power == pytest.approx(expected, abs=5e-8)
    json.dumps(res.to_dict())


def test_power_from_pilot_table_uses_observed_effect():
    res = mrmc_power(6, 111, pilot=vandyke_long())
    assert res.power == pytest.approx(0.5526116, abs=5e-8)
    assert "Hillis" in res.method


def test_sample_size_matches_rjafroc(vd):
    res = mrmc_sample_size(6, power=0.8, components=vd)
    assert res.cases == 251
    assert round(res.power, 3) == 0.801
    assert mrmc_power(6, 250, EFFECT, components=vd).power < 0.8
    table = mrmc_power_table(range(3, 11), components=vd)
    ks = [row.cases for row in table if row.cases is not None]
    assert ks == sorted(ks, reverse=True)
    assert table[3].readers == 6 and table[3].cases == 251


def test_components_as_dict_and_bad_input(vd):
    comp = {k: getattr(vd, k) for k in ("var_error", "cov1", "cov2", "cov3", "var_tr")}
    comp["n_cases"] = 114
    assert mrmc_power(10, 165, EFFECT, components=comp).power == pytest.approx(0.80541995, abs=5e-8)
    with pytest.raises(AnalysisError, match="effect"):
        mrmc_power(10, 165, components=comp)
    with pytest.raises(AnalysisError, match="either"):
        mrmc_power(10, 165, EFFECT)
    with pytest.raises(AnalysisError, match="readers"):
        mrmc_power(1, 165, EFFECT, components=comp)
    with pytest.raises(AnalysisError, match="analysis"):
        mrmc_power(5, 165, EFFECT, components=comp, analysis="XYZ")
    with pytest.raises(AnalysisError, match="lack"):
        mrmc_power(5, 165, EFFECT, components={"var_error": 1})


def test_unreachable_power_with_too_few_readers_says_add_readers(vd):
    comp = {**{k: getattr(vd, k) for k in ("var_error", "cov1", "cov2", "cov3")}, "n_cases": 114}
    comp["var_tr"] = 0.01
    res = mrmc_sample_size(3, components=comp, effect=0.03, max_cases=5000)
    assert res.cases is None
    assert any("add readers" in w for w in res.warnings)


def test_kappa_variance_equals_fleiss_cohen_everitt_on_the_expected_table():
    """The closed form reproduces the FCE SE that cohen_kappa_table (validated against SAS
    PROC FREQ) computes on the expected 2 x 2 table."""
    pi, kappa, n = 0.3, 0.6, 1000
    off = pi * (1 - pi) * (1 - kappa)
    table = n * np.array([[pi - off, off], [off, 1 - pi - off]])
    res = cohen_kappa_table(table)
    assert res.estimate == pytest.approx(kappa)
    assert kappa_variance_binary(kappa, pi) == pytest.approx(n * res.se**2, rel=1e-10)


def test_kappa_sample_size_reaches_its_power_in_simulation():
    plan = kappa_sample_size(0.7, 0.4, prevalence=0.3, alpha=0.05, power=0.8)
    rng = np.random.default_rng(0)
    pi, k1, n = 0.3, 0.7, plan.subjects
    off = pi * (1 - pi) * (1 - k1)
    probs = [pi - off, off, off, 1 - pi - off]
    q0 = np.sqrt(kappa_variance_binary(0.4, pi) / n)
    rejections = 0
    for _ in range(400):
        counts = rng.multinomial(n, probs).reshape(2, 2)
        k = cohen_kappa_table(counts).estimate
        rejections += (k - 0.4) / q0 > 1.6448536269514722
    assert rejections / 400 == pytest.approx(0.8, abs=0.07)


def test_interchangeability_plan_power_grows_with_patients():
    plan = interchangeability_sample_size(
        readers=4, prevalence=0.4, accuracy_reference=0.85, margin=0.05,
        patients=[20, 80, 200], n_simulations=400, seed=1,
    )  # fmt: skip
    powers = [r["power"] for r in plan.rows]
    assert powers == sorted(powers)
    assert powers[-1] > 0.8 and powers[0] < 0.5
    assert plan.patients == 200 or plan.patients == 80
    worse = interchangeability_sample_size(
        readers=4, prevalence=0.4, accuracy_reference=0.85, accuracy_new=0.75,
        margin=0.05, patients=[200], n_simulations=400, seed=1,
    )  # fmt: skip
    assert worse.rows[0]["power"] < 0.2


def test_published_default_components_equal_the_pilot_computation(vd):
    from studies.analysis import VAN_DYKE_COMPONENTS

    for name in ("var_error", "cov1", "cov2", "cov3", "var_tr"):
        assert getattr(VAN_DYKE_COMPONENTS, name) == pytest.approx(getattr(vd, name), abs=2e-8)
    res = mrmc_power(10, 165, EFFECT, components=VAN_DYKE_COMPONENTS)
    assert res.power == pytest.approx(0.80541995, abs=1e-4)
