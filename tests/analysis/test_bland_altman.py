"""Bland-Altman with repeated differences per case (Bland & Altman 2007, true value varies).

No published worked example with all the numbers (bias CI, variance components, LoA CIs)
could be located in the reference material available here, so the function is validated
against independent computations: (1) the classic 1986 formulas when every case has one
difference, (2) a brute-force ANOVA written out in the test for unbalanced data, and
(3) statsmodels' MixedLM (REML random intercept per case), whose variance components equal
the ANOVA estimates on balanced data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from studies.analysis import AnalysisError, bland_altman


def _tidy(diffs: dict[str, list[float]], offset: float = 50.0) -> pd.DataFrame:
    """Tidy reads where reader r on case c gives ref = offset, new = offset + d."""
    rows = []
    for case, ds in diffs.items():
        for r, d in enumerate(ds):
            for arm, value in (("ref", offset + r), ("new", offset + r + d)):
                rows.append(
                    {
                        "reader_id": f"r{r}",
                        "case_id": case,
                        "patient_id": f"p{case}",
                        "modality_id": arm,
                        "value": value,
                    }
                )
    return pd.DataFrame(rows)


def test_one_difference_per_case_reduces_to_classic_1986_formulas():
    rng = np.random.default_rng(3)
    d = rng.normal(1.5, 2.0, 25)
    res = bland_altman(_tidy({f"c{i}": [x] for i, x in enumerate(d)}), "ref", "new", 0.05)
    s, n, z = d.std(ddof=1), d.size, stats.norm.ppf(0.975)
    assert res.bias == pytest.approx(d.mean())
    assert res.sd == pytest.approx(s)
    assert res.loa == pytest.approx((d.mean() - z * s, d.mean() + z * s))
    assert res.bias_se == pytest.approx(s / np.sqrt(n))
    # Bland & Altman 1999: SE(LoA)^2 = s^2/n + z^2 s^2 / (2(n-1)).
    assert res.loa_se == pytest.approx(np.sqrt(s**2 / n + z**2 * s**2 / (2 * (n - 1))))
    assert res.n_pairs == res.n_cases == 25


def test_alpha_sets_the_multiplier_of_the_limits():
    d = [0.3, -1.2, 2.2, 0.9, 1.1, -0.4, 0.0, 1.7]
    res = bland_altman(_tidy({f"c{i}": [x] for i, x in enumerate(d)}), "ref", "new", 0.10)
    z = stats.norm.ppf(0.95)
    assert res.loa[1] - res.bias == pytest.approx(z * np.std(d, ddof=1))


def test_unbalanced_repeats_match_brute_force_anova():
    diffs = {
        "a": [1.0, 2.0, 1.5],
        "b": [4.0, 3.0],
        "c": [-1.0, 0.0, 0.5, -0.5],
        "d": [2.5],
        "e": [0.0, 1.0, 3.0],
    }
    res = bland_altman(_tidy(diffs), "ref", "new")
    all_d = np.concatenate([np.array(v) for v in diffs.values()])
    m = np.array([len(v) for v in diffs.values()], dtype=float)
    n, big_n = len(m), all_d.size
    grand = all_d.mean()
    ssb = sum(len(v) * (np.mean(v) - grand) ** 2 for v in diffs.values())
    ssw = sum(((np.array(v) - np.mean(v)) ** 2).sum() for v in diffs.values())
    msb, msw = ssb / (n - 1), ssw / (big_n - n)
    var_b = (msb - msw) / ((big_n**2 - (m**2).sum()) / ((n - 1) * big_n))
    assert res.bias == pytest.approx(grand)
    assert res.sd_within**2 == pytest.approx(msw)
    assert res.sd_between**2 == pytest.approx(var_b)
    assert res.sd == pytest.approx(np.sqrt(var_b + msw))
    expected_var_bias = (var_b * (m**2).sum() + msw * big_n) / big_n**2
    assert res.bias_se == pytest.approx(np.sqrt(expected_var_bias))
    assert res.loa_lower_ci[0] < res.loa[0] < res.loa_lower_ci[1]
    assert res.loa_upper_ci[0] < res.loa[1] < res.loa_upper_ci[1]
    assert "2007" in res.method


def test_variance_components_agree_with_mixed_model_on_balanced_data():
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(11)
    n_cases, n_readers = 30, 4
    case_effect = rng.normal(0, 1.5, n_cases)
    diffs = {
        f"c{i}": list(0.8 + case_effect[i] + rng.normal(0, 1.0, n_readers)) for i in range(n_cases)
    }
    res = bland_altman(_tidy(diffs), "ref", "new")
    long = pd.DataFrame([(c, d) for c, ds in diffs.items() for d in ds], columns=["case", "d"])
    fit = smf.mixedlm("d ~ 1", long, groups=long["case"]).fit(reml=True)
    assert res.sd_between**2 == pytest.approx(float(fit.cov_re.iloc[0, 0]), rel=1e-4)
    assert res.sd_within**2 == pytest.approx(float(fit.scale), rel=1e-4)
    assert res.bias == pytest.approx(float(fit.fe_params.iloc[0]), rel=1e-6)
    assert res.bias_se == pytest.approx(float(fit.bse.iloc[0]), rel=1e-3)


def test_clustered_bias_ci_is_wider_than_the_naive_one():
    rng = np.random.default_rng(5)
    case_effect = rng.normal(0, 2.0, 20)
    diffs = {f"c{i}": list(case_effect[i] + rng.normal(0, 0.5, 5)) for i in range(20)}
    res = bland_altman(_tidy(diffs), "ref", "new")
    all_d = np.concatenate([np.array(v) for v in diffs.values()])
    naive_se = all_d.std(ddof=1) / np.sqrt(all_d.size)
    assert res.bias_se > 1.5 * naive_se


def test_too_few_cases_or_missing_arm_is_a_clear_error():
    with pytest.raises(AnalysisError, match="at least 3 cases"):
        bland_altman(_tidy({"a": [1.0, 2.0], "b": [0.5]}), "ref", "new")
    with pytest.raises(AnalysisError, match="'other' not in the table"):
        bland_altman(_tidy({"a": [1.0], "b": [2.0], "c": [3.0]}), "ref", "other")


def test_result_is_json_friendly():
    res = bland_altman(_tidy({f"c{i}": [i * 0.1, 1.0] for i in range(5)}), "ref", "new")
    out = res.to_dict()
    assert out["reference"] == "ref" and len(out["loa"]) == 2


def _issue_table() -> pd.DataFrame:
    rng = np.random.default_rng(14)
    return _tidy({f"c{i}": list(rng.normal(-0.3, 0.5, 3)) for i in range(12)})


def test_duplicated_row_is_refused_not_averaged():
    """Issue 14: a duplicated reader/case/arm row with value 999 used to be averaged in by
    pivot_table and moved the bias; it must be refused like in every other analysis."""
    data = _issue_table()
    clean = bland_altman(data, "ref", "new")
    dup = data[(data["modality_id"] == "new")].iloc[[0]].assign(value=999.0)
    with pytest.raises(AnalysisError, match="share the key"):
        bland_altman(pd.concat([data, dup], ignore_index=True), "ref", "new")
    assert clean.bias == pytest.approx(
        np.mean(
            data[data.modality_id == "new"]["value"].to_numpy()
            - data[data.modality_id == "ref"]["value"].to_numpy()
        )
    )


def test_missing_value_is_refused_not_dropped():
    data = _issue_table()
    data.loc[3, "value"] = np.nan
    with pytest.raises(AnalysisError, match="missing value"):
        bland_altman(data, "ref", "new")


def test_repeat_reads_are_kept_apart_by_read_index():
    data = _issue_table()
    again = data.assign(read_index=2, value=data["value"] + 0.25 * (data.modality_id == "new"))
    both = pd.concat([data.assign(read_index=1), again], ignore_index=True)
    res = bland_altman(both, "ref", "new")
    assert res.n_pairs == 2 * bland_altman(data, "ref", "new").n_pairs


def test_proportional_bias_matches_ordinary_regression():
    """One pair per case: the slope, its SE and p equal scipy.stats.linregress of the
    difference on the mean (Bland & Altman 1999, section 3.2)."""
    rng = np.random.default_rng(5)
    truth = rng.uniform(20, 80, 30)
    ref = truth + rng.normal(0, 1, 30)
    new = 1.1 * truth + rng.normal(0, 1, 30)
    rows = [
        {"reader_id": "r", "case_id": f"c{i}", "modality_id": arm, "value": v}
        for i in range(30)
        for arm, v in (("ref", ref[i]), ("new", new[i]))
    ]
    res = bland_altman(pd.DataFrame(rows), "ref", "new")
    lr = stats.linregress((new + ref) / 2, new - ref)
    pb = res.proportional_bias
    assert pb["slope"] == pytest.approx(lr.slope, rel=1e-10)
    assert pb["slope_se"] == pytest.approx(lr.stderr, rel=1e-10)
    assert pb["p_value"] == pytest.approx(lr.pvalue, rel=1e-8)
    half = stats.t.ppf(0.975, 28) * lr.stderr
    assert (pb["slope_ci_low"], pb["slope_ci_high"]) == pytest.approx(
        (lr.slope - half, lr.slope + half), rel=1e-10
    )
    assert len(res.points) == 30
