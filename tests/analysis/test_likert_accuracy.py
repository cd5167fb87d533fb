"""Likert comparisons, diagnostic accuracy and McNemar."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from studies.analysis import (
    AnalysisError,
    diagnostic_accuracy,
    holm,
    likert_comparison,
    mcnemar,
    rank_biserial,
)


def _likert(seed: int = 0, n_cases: int = 50, n_readers: int = 3, shift: float = 0.8):
    """Scores from a latent proportional-odds model with a case effect (clustering)."""
    rng = np.random.default_rng(seed)
    case_effect = rng.normal(size=n_cases)
    rows = []
    for r in range(n_readers):
        for c in range(n_cases):
            for mod, beta in (("ref", 0.0), ("dl", shift)):
                latent = case_effect[c] + beta + 0.2 * r + rng.logistic()
                score = int(np.digitize(latent, [-1.5, -0.5, 0.5, 1.5])) + 1
                rows.append((f"r{r}", f"c{c}", f"p{c}", mod, score))
    return pd.DataFrame(
        rows, columns=["reader_id", "case_id", "patient_id", "modality_id", "value"]
    )


def test_per_reader_wilcoxon_matches_scipy_and_holm_matches_statsmodels():
    df = _likert()
    res = likert_comparison(df, "ref", "dl", n_boot=300)
    for est in res.per_reader:
        sub = df[df.reader_id == est.details["reader_id"]].pivot(
            index="case_id", columns="modality_id", values="value"
        )
        d = (sub["dl"] - sub["ref"]).to_numpy()
        ref = stats.wilcoxon(d, zero_method="wilcox")
        assert est.p_value == pytest.approx(ref.pvalue)
        assert est.statistic == pytest.approx(ref.statistic)
        assert est.estimate == pytest.approx(rank_biserial(d))
    raw = [e.p_value for e in res.per_reader]
    assert [e.details["p_holm"] for e in res.per_reader] == pytest.approx(
        multipletests(raw, method="holm")[1]
    )
    json.dumps(res.to_dict())


def test_pooled_uses_case_means_and_reports_naive_pairs():
    df = _likert(seed=2)
    res = likert_comparison(df, "ref", "dl", n_boot=300)
    assert res.pooled.n == 50 and res.pooled_pairs.n == 150
    wide = df.pivot(index=["reader_id", "case_id"], columns="modality_id", values="value")
    case_mean = (wide["dl"] - wide["ref"]).groupby(level="case_id").mean()
    assert res.pooled.p_value == pytest.approx(stats.wilcoxon(case_mean.to_numpy()).pvalue)
    assert "ignores clustering" in res.pooled_pairs.method


def test_ordinal_model_recovers_the_simulated_effect():
    """Latent proportional-odds model with log-OR 0.8: the estimate is near 0.8 and its
    case-clustered CI covers it."""
    res = likert_comparison(_likert(seed=7, n_cases=150, n_readers=4), "ref", "dl", n_boot=200)
    m = res.ordinal_model
    assert m is not None and "cluster-robust" in m.method
    assert m.ci[0] < 0.8 < m.ci[1]
    assert 0.5 < m.estimate < 1.1
    assert m.details["odds_ratio"] == pytest.approx(np.exp(m.estimate))


def test_rank_biserial_known_values():
    """Kerby (2014) simple difference formula: all positive -> 1; ranks 1,2,3 with the
    largest negative -> (1 + 2 - 3) / 6 = 0."""
    assert rank_biserial(np.array([1, 2, 3, 0])) == 1.0
    assert rank_biserial(np.array([1, 2, -3])) == pytest.approx(0.0)
    assert rank_biserial(np.zeros(4)) == 0.0


def test_proportion_diagnostic_point_estimates():
    df = _likert(seed=3)
    res = likert_comparison(df, "ref", "dl", threshold=3, n_boot=300)
    ref_p = (df[df.modality_id == "ref"].value >= 3).mean()
    dl_p = (df[df.modality_id == "dl"].value >= 3).mean()
    assert [d.estimate for d in res.diagnostic] == pytest.approx([ref_p, dl_p, dl_p - ref_p])
    assert all(d.ci[0] <= d.estimate <= d.ci[1] for d in res.diagnostic)


def test_likert_bad_input():
    df = _likert()
    with pytest.raises(AnalysisError, match="modality 'sr'"):
        likert_comparison(df, "ref", "sr")
    with pytest.raises(AnalysisError, match="numeric"):
        likert_comparison(df.assign(value="good"), "ref", "dl")


def test_holm_helper():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = holm([0.01, np.nan])
    assert out[0] == pytest.approx(0.01) and np.isnan(out[1])
    with pytest.raises(AnalysisError):
        holm([0.5, 1.5])


# ------------------------------------------------------------------------------ McNemar


def test_mcnemar_agresti_presidential_approval():
    """Agresti, Categorical Data Analysis (2002) Table 10.1: 794 / 150 / 86 / 570;
    z^2 = (86 - 150)^2 / (86 + 150) = 17.36, p < 0.001."""
    res = mcnemar(150, 86, exact=False, correction=False)
    assert res.statistic == pytest.approx(17.36, abs=5e-3)
    assert res.p_value < 1e-4


def test_mcnemar_exact_for_few_discordant_pairs():
    res = mcnemar(1, 7)
    assert "exact" in res.method
    assert res.p_value == pytest.approx(stats.binomtest(1, 8, 0.5).pvalue)
    assert mcnemar(0, 0).p_value == 1.0
    with pytest.raises(AnalysisError):
        mcnemar(-1, 3)


# -------------------------------------------------------------------------- accuracy


def _accuracy_reads(seed: int = 0, n_patients: int = 60, findings: int = 2):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        for f in range(findings):
            truth = int(rng.integers(0, 2))
            for r in range(3):
                for mod, acc in (("ref", 0.8), ("dl", 0.85)):
                    call = truth if rng.random() < acc else 1 - truth
                    rows.append((f"r{r}", f"p{p}-{f}", f"p{p}", mod, call, truth))
    return pd.DataFrame(
        rows, columns=["reader_id", "case_id", "patient_id", "modality_id", "value", "truth"]
    )


def test_accuracy_point_estimates_match_counts():
    df = _accuracy_reads()
    res = diagnostic_accuracy(df, n_boot=300)
    table = res.to_frame()
    sub = df[(df.modality_id == "dl") & (df.reader_id == "r1")]
    tp = ((sub.value == 1) & (sub.truth == 1)).sum()
    fn = ((sub.value == 0) & (sub.truth == 1)).sum()
    fp = ((sub.value == 1) & (sub.truth == 0)).sum()
    tn = ((sub.value == 0) & (sub.truth == 0)).sum()
    row = table[(table.modality_id == "dl") & (table.reader_id == "r1")].set_index("metric")
    assert row.loc["sensitivity", "estimate"] == pytest.approx(tp / (tp + fn))
    assert row.loc["specificity", "estimate"] == pytest.approx(tn / (tn + fp))
    assert row.loc["ppv", "estimate"] == pytest.approx(tp / (tp + fp))
    assert row.loc["npv", "estimate"] == pytest.approx(tn / (tn + fn))
    pooled = table[(table.modality_id == "dl") & (table.reader_id == "pooled")].set_index("metric")
    dl = df[df.modality_id == "dl"]
    assert pooled.loc["accuracy", "estimate"] == pytest.approx((dl.value == dl.truth).mean())
    assert (table.ci_low <= table.estimate + 1e-12).all()
    json.dumps(res.to_dict())


def test_accuracy_mcnemar_per_reader_matches_direct_counts():
    df = _accuracy_reads(seed=4)
    res = diagnostic_accuracy(df, n_boot=200)
    test = next(
        t
        for t in res.mcnemar
        if t.details["metric"] == "sensitivity" and t.details["reader_id"] == "r2"
    )
    sub = df[(df.reader_id == "r2") & (df.truth == 1)].pivot(
        index="case_id", columns="modality_id", values="value"
    )
    b = int(((sub["dl"] == 1) & (sub["ref"] == 0)).sum())
    c = int(((sub["dl"] == 0) & (sub["ref"] == 1)).sum())
    assert (test.details["b"], test.details["c"]) == (b, c)  # modality_a = 'dl' sorts first
    assert "p_holm" in test.details


def test_patient_clustering_widens_the_interval():
    """Duplicating every finding inside its patient adds no information: the patient-level
    bootstrap CI must stay (almost) as wide as for the original data, whereas treating the
    duplicates as independent would shrink it by about sqrt(2)."""
    df = _accuracy_reads(seed=5, findings=1)
    twin = df.assign(case_id=df.case_id + "-twin")
    doubled = pd.concat([df, twin], ignore_index=True)
    one = diagnostic_accuracy(df, n_boot=1000).to_frame()
    two = diagnostic_accuracy(doubled, n_boot=1000).to_frame()
    key = (one.metric == "accuracy") & (one.reader_id == "pooled") & (one.modality_id == "dl")
    w1 = float((one[key].ci_high - one[key].ci_low).iloc[0])
    w2 = float((two[key].ci_high - two[key].ci_low).iloc[0])
    assert w2 == pytest.approx(w1, rel=0.2)


def test_accuracy_threshold_and_errors():
    df = _accuracy_reads().assign(value=lambda d: d.value * 4 + 1)
    res = diagnostic_accuracy(df, threshold=3, n_boot=200)
    assert len(res.estimates) == 5 * (6 + 2)
    with pytest.raises(AnalysisError, match="0/1"):
        diagnostic_accuracy(df, n_boot=200)
    with pytest.raises(AnalysisError, match="missing column"):
        diagnostic_accuracy(df.drop(columns="truth"), threshold=3)


def _counts_table(tp: int, fn: int, tn: int, fp: int) -> pd.DataFrame:
    calls = [(1, 1)] * tp + [(0, 1)] * fn + [(0, 0)] * tn + [(1, 0)] * fp
    return pd.DataFrame(
        [("r1", f"c{i}", f"p{i}", "ref", v, t) for i, (v, t) in enumerate(calls)],
        columns=["reader_id", "case_id", "patient_id", "modality_id", "value", "truth"],
    )


@pytest.mark.parametrize(
    ("method", "sens_ci", "spec_ci"),
    [
        ("wilson", (0.2553, 0.3662), (0.0624, 0.1605)),
        ("exact", (0.2527, 0.3676), (0.0578, 0.1617)),
    ],
)
def test_wilson_and_exact_intervals_match_newcombe_1998(method, sens_ci, spec_ci):
    """Newcombe (1998) Stat Med 17:857, Table II: 81/263 and 15/148 by the Wilson score
    method (3) and the Clopper-Pearson exact method (5)."""
    res = diagnostic_accuracy(_counts_table(81, 182, 15, 133), n_boot=200, ci_method=method)
    table = {e.details["metric"]: e for e in res.estimates if e.details["reader_id"] == "r1"}
    assert table["sensitivity"].ci == pytest.approx(sens_ci, abs=5e-5)
    assert table["specificity"].ci == pytest.approx(spec_ci, abs=5e-5)
    assert table["sensitivity"].details[f"ci_{method}"] == table["sensitivity"].ci


def test_boundary_proportion_interval_is_inside_zero_one():
    """Newcombe (1998) Table II, 0/20: Wilson 0 to 0.1611, exact 0 to 0.1684."""
    res = diagnostic_accuracy(_counts_table(0, 20, 5, 0), n_boot=200)
    sens = next(e for e in res.estimates if e.details["metric"] == "sensitivity")
    assert sens.details["ci_wilson"] == pytest.approx((0.0, 0.1611), abs=5e-5)
    assert sens.details["ci_exact"] == pytest.approx((0.0, 0.1684), abs=5e-5)
    assert sens.ci == (0.0, 0.0)
    spec = next(e for e in res.estimates if e.details["metric"] == "specificity")
    assert any("specificity of 2 modality-reader" in w and "(fewest 5)" in w for w in res.warnings)
    assert spec.estimate == 1.0


def test_accuracy_n_boot_zero_is_refused_not_nan():
    """Issue 14: n_boot=0 returned NaN intervals; it is now a clear error."""
    with pytest.raises(AnalysisError, match="n_boot"):
        diagnostic_accuracy(_accuracy_reads(), n_boot=0)
    with pytest.raises(AnalysisError, match="ci_method"):
        diagnostic_accuracy(_accuracy_reads(), ci_method="wald")


def test_wilson_on_clustered_findings_warns():
    res = diagnostic_accuracy(_accuracy_reads(findings=2), n_boot=200, ci_method="wilson")
    assert any("too narrow" in w for w in res.warnings)


def test_ordinal_model_is_fitted_to_a_zero_score_and_ignores_reader_labels():
    """Issue 14: the BFGS fit stopped with score components ~1e-3, so beta moved when the
    readers were renamed (1.2e-5) and was off ordinal::clm by up to 1e-4."""
    df = _likert(seed=7, n_cases=150, n_readers=4)
    res = likert_comparison(df, "ref", "dl", n_boot=200).ordinal_model
    assert res.details["max_abs_score"] < 1e-6
    renamed = df.assign(
        reader_id=df["reader_id"].map({"r0": "z9", "r1": "a1", "r2": "m", "r3": "b"})
    )
    again = likert_comparison(renamed, "ref", "dl", n_boot=200).ordinal_model
    assert again.estimate == pytest.approx(res.estimate, abs=1e-8)
    assert again.se == pytest.approx(res.se, rel=1e-6)  # numerical-derivative sandwich


def test_ordinal_model_with_two_levels_equals_logistic_regression():
    """With two score levels the cumulative logit model is a logistic regression of the
    higher level on arm + reader: statsmodels Logit is an independent reference (to 1e-8)."""
    import statsmodels.api as sm

    df = _likert(seed=3, n_cases=80, n_readers=3)
    df = df.assign(value=(df["value"] >= 3).astype(int) + 1)
    res = likert_comparison(df, "ref", "dl", threshold=2, n_boot=200).ordinal_model
    x = pd.get_dummies(df["reader_id"], prefix="reader", drop_first=True).astype(float)
    x.insert(0, "new", (df["modality_id"] == "dl").astype(float))
    logit = sm.Logit((df["value"] == 2).astype(float), sm.add_constant(x)).fit(
        disp=False, tol=1e-12
    )
    assert res.estimate == pytest.approx(logit.params["new"], abs=1e-8)


def test_proportional_odds_fit_matches_clm_on_the_wine_data():
    """R ordinal::clm(rating ~ temp + contact, data = wine) (Christensen, clm article and
    ?clm): tempwarm 2.5031 (SE 0.5287), contactyes 1.5278 (SE 0.4766), thresholds -1.3444,
    1.2508, 3.4669, 5.0064."""
    from studies.analysis.likert import proportional_odds_fit

    from .reference_data import DATA

    wine = pd.read_csv(DATA / "wine.csv", comment="#")
    exog = pd.DataFrame(
        {
            "tempwarm": (wine.temp == "warm").astype(float),
            "contactyes": (wine.contact == "yes").astype(float),
        }
    )
    endog = pd.Series(pd.Categorical(wine.rating, categories=[1, 2, 3, 4, 5], ordered=True))
    fit, score = proportional_odds_fit(endog, exog)
    assert score < 1e-6
    assert fit.params["tempwarm"] == pytest.approx(2.5031, abs=5e-5)
    assert fit.params["contactyes"] == pytest.approx(1.5278, abs=5e-5)
    assert fit.bse["tempwarm"] == pytest.approx(0.5287, abs=5e-4)
    assert fit.bse["contactyes"] == pytest.approx(0.4766, abs=5e-4)
    cuts = fit.model.transform_threshold_params(fit.params)[1:-1]
    assert cuts == pytest.approx([-1.3444, 1.2508, 3.4669, 5.0064], abs=5e-5)
