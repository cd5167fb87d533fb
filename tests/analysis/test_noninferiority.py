"""Non-inferiority by logistic GEE and Obuchowski's clustered McNemar test."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from studies.analysis import AnalysisError
from studies.analysis.noninferiority import clustered_mcnemar, noninferiority_gee


def _reads(seed: int, n_patients: int, findings: int, p_ref: float, p_new: float) -> pd.DataFrame:
    """Binary outcomes with a shared patient effect (clustered findings), 3 readers."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        u = rng.normal(0, 0.8)
        for f in range(findings):
            for r in range(3):
                for arm, base in (("ref", p_ref), ("new", p_new)):
                    logit = np.log(base / (1 - base)) + u
                    y = int(rng.random() < 1 / (1 + np.exp(-logit)))
                    rows.append((f"r{r}", f"p{p}-{f}", f"p{p}", arm, y))
    return pd.DataFrame(
        rows, columns=["reader_id", "case_id", "patient_id", "modality_id", "value"]
    )


def test_independence_gee_equals_proportions_and_hand_sandwich():
    """With independence working correlation the arm-only logistic GEE reproduces the two
    observed proportions, and its delta-method SE of the difference equals the cluster
    sandwich sum_i (e_new,i / n_new - e_ref,i / n_ref)^2 written out by hand."""
    df = _reads(1, 40, 2, 0.85, 0.83)
    res = noninferiority_gee(df, "ref", "new", margin=0.10, correlation="independence")
    ref, new = df[df.modality_id == "ref"], df[df.modality_id == "new"]
    assert res.p_reference == pytest.approx(ref.value.mean(), abs=1e-10)
    assert res.p_new == pytest.approx(new.value.mean(), abs=1e-10)
    e_ref = (ref.value - ref.value.mean()).groupby(ref.patient_id).sum() / len(ref)
    e_new = (new.value - new.value.mean()).groupby(new.patient_id).sum() / len(new)
    se = np.sqrt(((e_new - e_ref) ** 2).sum())
    assert res.difference.se == pytest.approx(se, rel=1e-6)
    z = (res.difference.estimate + 0.10) / se
    assert res.p_value == pytest.approx(stats.norm.sf(z), rel=1e-5)
    assert res.noninferior == (res.difference.ci[0] > -0.10)
    json.dumps(res.to_dict())


def test_verdict_follows_the_margin():
    good = _reads(2, 120, 2, 0.85, 0.85)
    bad = _reads(3, 120, 2, 0.85, 0.65)
    assert noninferiority_gee(good, "ref", "new", margin=0.10).noninferior
    res = noninferiority_gee(bad, "ref", "new", margin=0.10)
    assert not res.noninferior and res.difference.ci[1] < 0


def test_noninferiority_bad_input():
    df = _reads(4, 10, 1, 0.8, 0.8)
    with pytest.raises(AnalysisError, match="margin"):
        noninferiority_gee(df, "ref", "new", margin=0)
    with pytest.raises(AnalysisError, match="0/1"):
        noninferiority_gee(df.assign(value=df.value * 3), "ref", "new")
    with pytest.raises(AnalysisError, match="not in the table"):
        noninferiority_gee(df, "ref", "other")
    with pytest.raises(AnalysisError, match="correlation"):
        noninferiority_gee(df, "ref", "new", correlation="ar1")


def test_clustered_mcnemar_variance_by_hand():
    rng = np.random.default_rng(8)
    clusters = np.repeat(np.arange(20), 3)
    a = rng.integers(0, 2, 60)
    b = rng.integers(0, 2, 60)
    res = clustered_mcnemar(a, b, clusters)
    d = (a - b).astype(float)
    big_d = d.sum() / 60
    per = pd.Series(d).groupby(clusters).sum().to_numpy() - 3 * big_d
    var = 20 / 19 * (per**2).sum() / 60**2
    assert res.estimate == pytest.approx(big_d)
    assert res.se == pytest.approx(np.sqrt(var))
    assert res.p_value == pytest.approx(stats.chi2.sf(big_d**2 / var, 1))


def test_clustered_mcnemar_keeps_its_size_where_plain_mcnemar_does_not():
    """Under H0 with strongly correlated findings within patients, Obuchowski's test
    rejects at about the nominal 5 %, the plain McNemar test far more often."""
    from studies.analysis import mcnemar

    rng = np.random.default_rng(0)
    clustered, plain = 0, 0
    n_sim = 400
    for _ in range(n_sim):
        clusters = np.repeat(np.arange(30), 6)
        shift = np.repeat(rng.normal(0, 1.5, 30), 6)
        diff = np.repeat(rng.choice([-1, 1], 30), 6)  # a patient's findings move together
        latent = shift + rng.normal(0, 0.3, 180)
        a = (latent > 0).astype(int)
        b = np.where(rng.random(180) < 0.3, a, ((latent + 0.6 * diff) > 0).astype(int))
        clustered += clustered_mcnemar(a, b, clusters).p_value < 0.05
        plain += (
            mcnemar(int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())).p_value
            < 0.05
        )
    assert clustered / n_sim < 0.09
    assert plain / n_sim > 2 * clustered / n_sim
