"""Cumulative-link mixed model (clmm-like) against R ordinal::clmm's published wine fit."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from studies.analysis import AnalysisError
from studies.analysis.ordinal_mixed import cumulative_logit_mixed, ordinal_mixed

from .reference_data import DATA
from .test_likert_accuracy import _likert


@pytest.fixture(scope="module")
def wine():
    return pd.read_csv(DATA / "wine.csv", comment="#")


def test_wine_judge_random_intercept_matches_clmm(wine):
    """Christensen, ordinal package tutorial ("clmm2 tutorial") and ?clmm example:
    clmm(rating ~ temp + contact + (1|judge), data = wine) (Laplace) gives tempwarm 3.0630
    (SE 0.5954), contactyes 1.8349 (SE 0.5125), thresholds -1.6237, 1.5134, 4.2285, 6.0888,
    judge variance 1.279 (SD 1.131), log-likelihood -81.57 (AIC 177.13)."""
    x = pd.DataFrame(
        {
            "tempwarm": (wine.temp == "warm").astype(float),
            "contactyes": (wine.contact == "yes").astype(float),
        }
    )
    res = cumulative_logit_mixed(wine.rating.to_numpy() - 1, x, {"judge": wine.judge.to_numpy()})
    temp, contact = res.fixed
    assert temp.estimate == pytest.approx(3.0630, abs=5e-4)
    assert contact.estimate == pytest.approx(1.8349, abs=5e-4)
    assert temp.se == pytest.approx(0.5954, abs=5e-4)
    assert contact.se == pytest.approx(0.5125, abs=5e-4)
    assert res.thresholds == pytest.approx([-1.6237, 1.5134, 4.2285, 6.0888], abs=5e-4)
    assert res.random_sd["judge"] ** 2 == pytest.approx(1.279, abs=5e-3)
    assert res.log_likelihood == pytest.approx(-81.57, abs=5e-3)
    assert 2 * (7 - res.log_likelihood) == pytest.approx(177.13, abs=5e-3)
    assert res.converged
    json.dumps(res.to_dict())


def test_crossed_judge_and_bottle(wine):
    """Adding a bottle intercept crossed with judge: bottles explain nothing beyond temp and
    contact here, so its SD goes to ~0 and the judge-only fit is recovered."""
    x = pd.DataFrame(
        {
            "tempwarm": (wine.temp == "warm").astype(float),
            "contactyes": (wine.contact == "yes").astype(float),
        }
    )
    groups = {"judge": wine.judge.to_numpy(), "bottle": wine.bottle.to_numpy()}
    res = cumulative_logit_mixed(wine.rating.to_numpy() - 1, x, groups)
    assert res.random_sd["bottle"] < 0.05
    assert res.fixed[0].estimate == pytest.approx(3.0630, abs=2e-3)
    assert res.log_likelihood == pytest.approx(-81.57, abs=5e-3)


def test_ordinal_mixed_on_likert_reads_recovers_the_shift_and_ignores_labels():
    df = _likert(seed=7, n_cases=60, n_readers=4, shift=0.8)
    res = ordinal_mixed(df, "ref", "dl")
    (arm,) = res.fixed
    assert arm.ci[0] < 0.8 < arm.ci[1] or abs(arm.estimate - 0.8) < 3 * arm.se
    assert res.random_sd["case_id"] > 0.5  # the simulated case effect (SD 1)
    renamed = df.assign(reader_id=df.reader_id.map(lambda r: f"x{r[::-1]}"))
    again = ordinal_mixed(renamed, "ref", "dl")
    assert again.fixed[0].estimate == pytest.approx(arm.estimate, abs=1e-5)


def test_ordinal_mixed_bad_input():
    df = _likert(seed=1, n_cases=10, n_readers=2)
    with pytest.raises(AnalysisError, match="not in the table"):
        ordinal_mixed(df, "ref", "other")
    with pytest.raises(AnalysisError, match="2 consecutive levels"):
        ordinal_mixed(df.assign(value=3), "ref", "dl")
    with pytest.raises(AnalysisError, match="column"):
        ordinal_mixed(df, "ref", "dl", random=("site",))
    assert np.isfinite(ordinal_mixed(df, "ref", "dl").log_likelihood)
