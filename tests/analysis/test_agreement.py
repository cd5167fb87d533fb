"""Kappa, AC1 and ICC against published outputs (sources cited per test)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

from studies.analysis import (
    AnalysisError,
    cohen_kappa,
    cohen_kappa_table,
    fleiss_kappa,
    gwet_ac1,
    icc,
    intra_reader_agreement,
)

from .reference_data import (
    ANXIETY,
    CAC_RAW4RATERS,
    CONT3X3_ABSTRACTORS,
    DIAGNOSES,
    DISTRIB_6RATERS,
    SAS_TABLE10,
    SHROUT_FLEISS,
    distribution_to_ratings,
)

# ----------------------------------------------------------------------------- Cohen


def test_cohen_unweighted_matches_sas_proc_freq():
    """SAS PROC FREQ simple kappa printout (reproduced in statsmodels test_inter_rater.py,
    TestUnweightedCohens): kappa .4842, ASE .1380, CI .2137-.7547, ASE0 .1484, Z 3.2626."""
    r = cohen_kappa_table(SAS_TABLE10)
    assert r.estimate == pytest.approx(0.4842, abs=5e-5)
    assert r.se == pytest.approx(0.1380, abs=5e-5)
    assert r.details["ci_wald"] == pytest.approx((0.2137, 0.7547), abs=5e-5)
    assert r.se_h0 == pytest.approx(0.1484, abs=5e-5)
    assert r.statistic == pytest.approx(3.2626, abs=5e-5)
    assert r.p_value == pytest.approx(0.0011, abs=5e-5)


def test_cohen_linear_weighted_matches_sas_proc_freq():
    """SAS weighted kappa (Cicchetti-Allison = linear weights): .4701, ASE .1457,
    CI .1845-.7558, ASE0 .1426, Z 3.2971 (statsmodels TestWeightedCohens)."""
    r = cohen_kappa_table(SAS_TABLE10, weights="linear")
    assert r.estimate == pytest.approx(0.4701, abs=5e-5)
    assert r.se == pytest.approx(0.1457, abs=5e-5)
    assert r.details["ci_wald"] == pytest.approx((0.1845, 0.7558), abs=5e-5)
    assert r.se_h0 == pytest.approx(0.1426, abs=5e-5)
    assert r.statistic == pytest.approx(3.2971, abs=5e-5)


@pytest.mark.parametrize(
    ("weights", "kappa", "z", "p"),
    [
        (None, -0.006289308, -0.0604067, 0.9518317),
        ("linear", 0.1459075, 1.282472, 0.1996772),
        ("quadratic", 0.2520325, 1.437451, 0.1505898),
    ],
)
def test_cohen_reproduces_irr_kappa2_on_anxiety(weights, kappa, z, p):
    """R irr::kappa2(anxiety[,2:3], "unweighted"/"equal"/"squared") values recorded in
    statsmodels' test_cohens_kappa_irr. irr drops the unused level 5, so the observed
    levels are passed to reproduce it."""
    r = cohen_kappa(ANXIETY[:, 1], ANXIETY[:, 2], [1, 2, 3, 4, 6], weights=weights)
    assert r.estimate == pytest.approx(kappa, abs=1e-6)
    assert r.statistic == pytest.approx(z, abs=1e-5)
    assert r.p_value == pytest.approx(p, abs=1e-6)


def test_cohen_keeps_unused_levels_which_changes_weighted_kappa():
    """Our convention: the full scale is kept. Weighted kappa on the 6-point scale differs
    from irr's (level 5 dropped); unweighted kappa does not depend on it."""
    full = cohen_kappa(ANXIETY[:, 1], ANXIETY[:, 2], [1, 2, 3, 4, 5, 6], weights="linear")
    dropped = cohen_kappa(ANXIETY[:, 1], ANXIETY[:, 2], [1, 2, 3, 4, 6], weights="linear")
    assert full.estimate != pytest.approx(dropped.estimate, abs=1e-3)
    assert full.categories == [1, 2, 3, 4, 5, 6]
    assert "unused levels kept" in full.method
    u_full = cohen_kappa(ANXIETY[:, 1], ANXIETY[:, 2], [1, 2, 3, 4, 5, 6])
    u_drop = cohen_kappa(ANXIETY[:, 1], ANXIETY[:, 2], [1, 2, 3, 4, 6])
    assert u_full.estimate == pytest.approx(u_drop.estimate, abs=1e-12)


@pytest.mark.parametrize(
    ("weights", "kappa", "z"),
    [(None, 0.651, 7.00), ("linear", 0.633, 5.43), ("quadratic", 0.655, 3.91)],
)
def test_cohen_reproduces_irr_kappa2_on_diagnoses(weights, kappa, z):
    """irr::kappa2(diagnoses[, c("rater1","rater2")], weight=...) printed output
    (3 significant figures): unweighted .651 z=7, equal .633 z=5.43, squared .655 z=3.91."""
    r = cohen_kappa(DIAGNOSES[:, 0], DIAGNOSES[:, 1], [1, 2, 3, 4, 5], weights=weights)
    assert r.estimate == pytest.approx(kappa, abs=5e-4)
    assert r.statistic == pytest.approx(z, abs=5e-3)


def test_cohen_table_matches_irrcac_kappa2_table():
    """irrCAC::kappa2.table(cont3x3abstractors): 0.7964094, SE 0.05891072 (Gwet's README)."""
    r = cohen_kappa_table(CONT3X3_ABSTRACTORS)
    assert r.estimate == pytest.approx(0.7964094, abs=1e-7)
    assert r.se == pytest.approx(0.05891072, abs=1e-8)


def test_cohen_drops_incomplete_pairs_and_reports_it():
    a = [1, 2, np.nan, 3, 1, 2]
    b = [1, 2, 3, None, 1, 3]
    r = cohen_kappa(a, b, [1, 2, 3])
    ref = cohen_kappa([1, 2, 1, 2], [1, 2, 1, 3], [1, 2, 3])
    assert r.n == 4 and r.estimate == pytest.approx(ref.estimate)
    assert any("dropped" in w for w in r.warnings)


def test_cohen_bad_input_raises_clear_errors():
    with pytest.raises(AnalysisError, match="not in categories"):
        cohen_kappa([1, 2, 7], [1, 2, 3], [1, 2, 3])
    with pytest.raises(AnalysisError, match="equal length"):
        cohen_kappa([1, 2], [1, 2, 3], [1, 2, 3])
    with pytest.raises(AnalysisError, match="at least 2 categories"):
        cohen_kappa([1, 1], [1, 1], [1])
    with pytest.raises(AnalysisError, match="weights"):
        cohen_kappa([1, 2], [1, 2], [1, 2], weights="cubic")
    with pytest.raises(AnalysisError, match="alpha"):
        cohen_kappa([1, 2], [1, 2], [1, 2], alpha=1.5)


def test_cohen_single_category_is_undefined_not_an_exception():
    r = cohen_kappa([2, 2, 2], [2, 2, 2], [1, 2, 3])
    assert np.isnan(r.estimate) and r.warnings
    json.dumps(r.to_dict())


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 4), min_size=3, max_size=40).filter(lambda v: len(set(v)) > 1),
    st.sampled_from([None, "linear", "quadratic"]),
)
def test_property_identical_raters_have_kappa_one(values, weights):
    r = cohen_kappa(values, values, [0, 1, 2, 3, 4], weights=weights)
    assert r.estimate == pytest.approx(1.0)
    assert r.ci[0] - 1e-9 <= 1.0 <= r.ci[1] + 1e-9


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=4, max_size=40))
def test_property_kappa_symmetric_in_raters(pairs):
    a, b = zip(*pairs)
    r1 = cohen_kappa(a, b, [0, 1, 2, 3], weights="quadratic")
    r2 = cohen_kappa(b, a, [0, 1, 2, 3], weights="quadratic")
    assert r1.estimate == pytest.approx(r2.estimate, nan_ok=True)
    assert r1.se_h0 == pytest.approx(r2.se_h0, abs=1e-6, nan_ok=True)


# ----------------------------------------------------------------------------- Fleiss


def test_fleiss_reproduces_irr_kappam_fleiss_on_diagnoses():
    """irr::kappam.fleiss(diagnoses): Kappa 0.4302445, z 17.65183 (values recorded in
    statsmodels' test_fleiss_kappa_irr); Fleiss (1971) reports kappa = .430."""
    r = fleiss_kappa(DIAGNOSES, [1, 2, 3, 4, 5])
    assert r.estimate == pytest.approx(0.4302445, abs=1e-7)
    assert r.statistic == pytest.approx(17.65183, abs=1e-5)
    assert r.n == 30 and r.df is None


def test_fleiss_per_category_kappas_match_fleiss_1971():
    """Fleiss (1971) / irr kappam.fleiss(diagnoses, detail=TRUE): category kappas .245,
    .245, .520, .471, .566 with z 5.192, 5.192, 11.031, 9.994, 12.009."""
    r = fleiss_kappa(DIAGNOSES, [1, 2, 3, 4, 5])
    est = [c.estimate for c in r.per_category]
    z = [c.statistic for c in r.per_category]
    assert est == pytest.approx([0.245, 0.245, 0.520, 0.471, 0.566], abs=5e-4)
    assert z == pytest.approx([5.192, 5.192, 11.031, 9.994, 12.009], abs=5e-4)


def test_fleiss_three_raters_matches_irr():
    """irr::kappam.fleiss(diagnoses[, 1:3]) printed: Kappa 0.534, z 9.89."""
    r = fleiss_kappa(DIAGNOSES[:, :3], [1, 2, 3, 4, 5])
    assert r.estimate == pytest.approx(0.534, abs=5e-4)
    assert r.statistic == pytest.approx(9.89, abs=5e-3)


def test_fleiss_with_missing_ratings_matches_irrcac():
    """irrCAC::fleiss.kappa.raw(cac.raw4raters): pa 0.8181818, pe 0.2387153, kappa 0.76117,
    SE 0.15302 (Gwet's generalisation for unequal numbers of raters)."""
    r = fleiss_kappa(CAC_RAW4RATERS, [1, 2, 3, 4, 5])
    assert r.observed_agreement == pytest.approx(0.8181818, abs=1e-7)
    assert r.expected_agreement == pytest.approx(0.2387153, abs=1e-7)
    assert r.estimate == pytest.approx(0.76117, abs=5e-6)
    assert r.se == pytest.approx(0.15302, abs=5e-6)
    assert r.statistic_name == "t" and r.df == 11
    assert np.isnan(r.se_h0)


def test_fleiss_standard_error_matches_irrcac_dist():
    """irrCAC::fleiss.kappa.dist(distrib.6raters): 0.4139265, SE 0.08119291."""
    r = fleiss_kappa(distribution_to_ratings(DISTRIB_6RATERS), range(5))
    assert r.estimate == pytest.approx(0.4139265, abs=1e-7)
    assert r.se == pytest.approx(0.08119291, abs=1e-8)


def test_fleiss_agrees_with_statsmodels_on_complete_data():
    """Independent implementation: statsmodels.stats.inter_rater.fleiss_kappa."""
    rng = np.random.default_rng(3)
    ratings = rng.integers(0, 4, size=(50, 5))
    ratings[:25, :3] = ratings[:25, [0]]  # some agreement
    table, _ = aggregate_raters(ratings, n_cat=4)
    assert fleiss_kappa(ratings, range(4)).estimate == pytest.approx(sm_fleiss_kappa(table))


def test_fleiss_binary_h0_se_reduces_to_category_se():
    """Fleiss, Nee & Landis (1979): with 2 categories the overall H0 SE equals the
    per-category SE sqrt(2 / (n m (m-1)))."""
    rng = np.random.default_rng(5)
    ratings = rng.integers(0, 2, size=(40, 4))
    r = fleiss_kappa(ratings, [0, 1])
    assert r.se_h0 == pytest.approx(np.sqrt(2 / (40 * 4 * 3)))
    assert r.per_category[0].se == pytest.approx(r.se_h0)


def test_fleiss_h0_se_matches_null_simulation():
    """Under H0 (raters independent, same marginals) the SD of kappa over simulated studies
    approaches the FNL (1979) SE (Monte Carlo check, 4000 studies, tolerance 6 %)."""
    rng = np.random.default_rng(11)
    probs = np.array([0.5, 0.3, 0.2])
    n, m, reps = 40, 5, 4000
    sims = rng.choice(3, p=probs, size=(reps, n, m))
    counts = (sims[..., None] == np.arange(3)).sum(2)
    pa = ((counts * (counts - 1)).sum(2) / (m * (m - 1))).mean(1)
    p = counts.sum(1) / (n * m)
    pe = (p**2).sum(1)
    kappas = (pa - pe) / (1 - pe)
    se0 = fleiss_kappa(sims[0], [0, 1, 2]).se_h0
    assert kappas.std() == pytest.approx(se0, rel=0.06)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.permutations(range(5)))
def test_property_fleiss_invariant_to_rater_order(seed, perm):
    ratings = np.random.default_rng(seed).integers(0, 3, size=(12, 5)).astype(float)
    ratings[0, 1] = np.nan
    a = fleiss_kappa(ratings, [0, 1, 2])
    b = fleiss_kappa(ratings[:, list(perm)], [0, 1, 2])
    assert a.estimate == pytest.approx(b.estimate, nan_ok=True)
    assert a.se == pytest.approx(b.se, nan_ok=True)


def test_fleiss_identical_raters_give_one_and_bad_shape_raises():
    ratings = np.repeat(np.array([[1], [2], [3], [1]]), 4, axis=1)
    assert fleiss_kappa(ratings, [1, 2, 3]).estimate == pytest.approx(1.0)
    with pytest.raises(AnalysisError, match="2-D"):
        fleiss_kappa(np.array([1, 2, 3]), [1, 2, 3])
    with pytest.raises(AnalysisError, match="2 or more raters"):
        fleiss_kappa(np.array([[1, np.nan], [np.nan, 2]]), [1, 2])


# ------------------------------------------------------------------------------- Gwet


def test_gwet_ac1_matches_irrcac_raw():
    """irrCAC::gwet.ac1.raw(cac.raw4raters): pa 0.8181818, pe 0.1903212, AC1 0.77544,
    SE 0.14295, p 0.000208721."""
    r = gwet_ac1(CAC_RAW4RATERS, [1, 2, 3, 4, 5])
    assert r.observed_agreement == pytest.approx(0.8181818, abs=1e-7)
    assert r.expected_agreement == pytest.approx(0.1903212, abs=1e-7)
    assert r.estimate == pytest.approx(0.77544, abs=5e-6)
    assert r.se == pytest.approx(0.14295, abs=5e-6)
    assert r.p_value == pytest.approx(0.000208721, rel=1e-5)


def test_gwet_ac1_matches_irrcac_dist():
    """irrCAC::gwet.ac1.dist(distrib.6raters): 0.4448007, SE 0.08418757."""
    r = gwet_ac1(distribution_to_ratings(DISTRIB_6RATERS), range(5))
    assert r.estimate == pytest.approx(0.4448007, abs=1e-7)
    assert r.se == pytest.approx(0.08418757, abs=1e-8)


def test_gwet_ac1_two_raters_matches_irrcac_table_coefficient():
    """irrCAC::gwet.ac1.table(cont3x3abstractors) = 0.8493305 (the coefficient; the table
    function uses a different two-rater variance, so only the value is compared)."""
    t = CONT3X3_ABSTRACTORS
    a = np.repeat(np.arange(3), t.sum(1))
    b = np.concatenate([np.repeat(np.arange(3), row) for row in t])
    r = gwet_ac1(np.column_stack([a, b]), [0, 1, 2])
    assert r.estimate == pytest.approx(0.8493305, abs=1e-7)


def test_gwet_ac1_resists_kappa_paradox():
    """One dominant category with 95 % raw agreement: kappa collapses, AC1 stays high."""
    a = np.array([1] * 95 + [1, 1, 0, 0, 1])
    b = np.array([1] * 95 + [0, 0, 1, 1, 1])
    kappa = fleiss_kappa(np.column_stack([a, b]), [0, 1]).estimate
    ac1 = gwet_ac1(np.column_stack([a, b]), [0, 1]).estimate
    assert kappa < 0 < 0.9 < ac1


def test_gwet_ac2_weighted_uses_weights():
    r1 = gwet_ac1(DIAGNOSES, [1, 2, 3, 4, 5])
    r2 = gwet_ac1(DIAGNOSES, [1, 2, 3, 4, 5], weights="quadratic")
    assert r1.name == "AC1" and r2.name.startswith("AC2")
    assert r2.estimate != pytest.approx(r1.estimate)


# ------------------------------------------------------------------------ intra-reader


def _repeat_reads(seed: int = 0, n_cases: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for reader in ("r1", "r2", "r3"):
        for case in range(n_cases):
            first = int(rng.integers(1, 6))
            second = first if rng.random() < 0.7 else int(rng.integers(1, 6))
            for k, v in ((1, first), (2, second)):
                rows.append((reader, f"c{case}", "DL", k, v))
    return pd.DataFrame(
        rows, columns=["reader_id", "case_id", "modality_id", "read_index", "value"]
    )


def test_intra_reader_per_reader_equals_cohen_kappa_and_pooled_has_ci():
    df = _repeat_reads()
    res = intra_reader_agreement(df, [1, 2, 3, 4, 5], weights="quadratic", n_boot=500)
    assert len(res.per_reader) == 3 and len(res.pooled) == 1
    sub = df[df.reader_id == "r2"].pivot(index="case_id", columns="read_index", values="value")
    direct = cohen_kappa(sub[1], sub[2], [1, 2, 3, 4, 5], weights="quadratic")
    got = next(r for r in res.per_reader if r.details["reader_id"] == "r2")
    assert got.estimate == pytest.approx(direct.estimate)
    pooled = res.pooled[0]
    allpairs = df.pivot(index=["reader_id", "case_id"], columns="read_index", values="value")
    ref = cohen_kappa(allpairs[1], allpairs[2], [1, 2, 3, 4, 5], weights="quadratic")
    assert pooled.estimate == pytest.approx(ref.estimate)
    assert pooled.ci[0] < pooled.estimate < pooled.ci[1]
    json.dumps(res.to_dict())


def test_intra_reader_requires_read_index():
    with pytest.raises(AnalysisError, match="read_index"):
        intra_reader_agreement(_repeat_reads().drop(columns="read_index"), [1, 2, 3, 4, 5])


# -------------------------------------------------------------------------------- ICC

SF_PUBLISHED = {
    # Shrout & Fleiss (1979) Table 4 / R DescTools::ICC and psych::ICC on the same data:
    # estimate (3 d.p., DescTools), F (DescTools), CI (psych, 2-3 d.p.).
    "ICC(1,1)": (0.166, 1.79, (-0.133, 0.72)),
    "ICC(2,1)": (0.290, 11.03, (0.019, 0.76)),
    "ICC(3,1)": (0.715, 11.03, (0.342, 0.95)),
    "ICC(1,k)": (0.443, 1.79, (-0.884, 0.91)),
    "ICC(2,k)": (0.620, 11.03, (0.071, 0.93)),
    "ICC(3,k)": (0.909, 11.03, (0.676, 0.99)),
}


@pytest.mark.parametrize("form", sorted(SF_PUBLISHED))
def test_icc_reproduces_shrout_fleiss_table(form):
    est, f, ci = SF_PUBLISHED[form]
    r = icc(SHROUT_FLEISS, form)
    assert r.estimate == pytest.approx(est, abs=5e-4)
    assert r.statistic == pytest.approx(f, abs=5e-3)
    assert r.ci[0] == pytest.approx(ci[0], abs=5e-3)
    assert r.ci[1] == pytest.approx(ci[1], abs=5e-3)
    assert form.split("(")[1][0] in r.name


def test_icc_psych_p_value_and_dfs():
    """psych/DescTools: ICC(2,1) F(5, 15) = 11.03, p = 0.000135."""
    r = icc(SHROUT_FLEISS, "ICC(2,1)")
    assert r.df == (5.0, 15.0)
    assert r.p_value == pytest.approx(0.000135, abs=5e-7)
    assert "absolute agreement" in r.method


def test_icc_agreement_reproduces_irr_on_anxiety():
    """irr::icc(anxiety, "twoway", "agreement"): ICC(A,1) = 0.198, F = 1.83, CI -0.039 to
    0.494, Satterthwaite df 39.7."""
    r = icc(ANXIETY, "ICC(A,1)")
    assert r.estimate == pytest.approx(0.198, abs=5e-4)
    assert r.statistic == pytest.approx(1.83, abs=5e-3)
    assert r.ci == pytest.approx((-0.039, 0.494), abs=5e-4)
    assert r.details["satterthwaite_df"] == pytest.approx(39.7, abs=0.05)


def test_icc_accepts_tidy_frame_and_rejects_incomplete_design():
    long = pd.DataFrame(
        [(t, j, SHROUT_FLEISS[t, j]) for t in range(6) for j in range(4)],
        columns=["case_id", "reader_id", "value"],
    )
    assert icc(long, "ICC(3,1)").estimate == pytest.approx(icc(SHROUT_FLEISS, "ICC(3,1)").estimate)
    with pytest.raises(AnalysisError, match="missing"):
        icc(long.iloc[1:], "ICC(2,1)")
    with pytest.raises(AnalysisError, match="unknown form"):
        icc(SHROUT_FLEISS, "ICC(4,1)")


# ------------------------------------------------------- issue 14: fragile cases, bounds


def test_fleiss_kappa_single_category_is_nan_with_reason():
    """Issue 14: np.full((10, 3), 2) raised ZeroDivisionError (spq = 0); irr's kappam.fleiss
    returns NaN for it."""
    r = fleiss_kappa(np.full((10, 3), 2), [1, 2, 3])
    assert np.isnan(r.estimate)
    assert any("one category" in w for w in r.warnings)
    assert json.dumps(r.to_dict())


def test_kappa_interval_stays_inside_minus_one_one_and_is_fisher_z():
    """High agreement on few subjects gave a Wald interval above 1 (report printed
    '0.410 to 1.123'); the interval is now the Fisher-z one, computed here by hand."""
    a = [1, 1, 2, 2, 3, 3, 1, 2]
    b = [1, 1, 2, 2, 3, 3, 1, 3]
    r = cohen_kappa(a, b, [1, 2, 3])
    wald = r.details["ci_wald"]
    assert wald[1] > 1.0
    z = 1.959963984540054
    half = z * r.se / (1 - r.estimate**2)
    expected = (np.tanh(np.arctanh(r.estimate) - half), np.tanh(np.arctanh(r.estimate) + half))
    assert r.ci == pytest.approx(expected, abs=1e-12)
    assert -1 < r.ci[0] < r.estimate < r.ci[1] < 1
    assert any("only 8 subjects" in w for w in r.warnings)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=2, max_size=30),
    st.sampled_from([None, "linear", "quadratic"]),
)
def test_property_kappa_intervals_respect_the_parameter_space(pairs, weights):
    a, b = zip(*pairs)
    r = cohen_kappa(list(a), list(b), [0, 1, 2, 3], weights=weights)
    if np.isfinite(r.estimate):
        assert -1 <= r.ci[0] <= r.estimate + 1e-12
        assert r.estimate - 1e-12 <= r.ci[1] <= 1


def test_fleiss_and_gwet_intervals_bounded_with_plain_interval_kept():
    ratings = np.array([[1, 1, 1], [2, 2, 2], [1, 1, 1], [2, 2, 1], [3, 3, 3]])
    for res in (fleiss_kappa(ratings, [1, 2, 3]), gwet_ac1(ratings, [1, 2, 3])):
        assert -1 < res.ci[0] < res.ci[1] < 1
        assert res.details["ci_wald"][1] > 1
        assert any("only 5 subjects" in w for w in res.warnings)


def test_intra_reader_empty_table_is_an_error():
    empty = pd.DataFrame(columns=["reader_id", "case_id", "modality_id", "read_index", "value"])
    with pytest.raises(AnalysisError, match="empty"):
        intra_reader_agreement(empty, [1, 2, 3])


def test_intra_reader_few_cases_warns_and_n_boot_zero_is_refused():
    rows = [
        {"reader_id": "r1", "case_id": c, "modality_id": "m", "read_index": i, "value": v}
        for c, vals in enumerate([(1, 1), (2, 2), (3, 2)])
        for i, v in zip((1, 2), vals)
    ]
    res = intra_reader_agreement(pd.DataFrame(rows), [1, 2, 3])
    assert any("r1 (3)" in w and "fewer than 10 repeated" in w for w in res.warnings)
    with pytest.raises(AnalysisError, match="n_boot"):
        intra_reader_agreement(pd.DataFrame(rows), [1, 2, 3], n_boot=0)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(3, 10),
    st.integers(2, 4),
    st.integers(0, 10_000),
    st.sampled_from(["ICC(1,1)", "ICC(2,1)", "ICC(3,1)"]),
)
def test_property_single_rater_icc_interval_stays_in_its_range(n, k, seed, form):
    """A single-rater ICC lies in [-1/(k-1), 1]; McGraw & Wong's ICC(2,1) interval left it
    on small samples (e.g. -2.40 with 3 targets x 2 raters) and is now truncated, with the
    raw interval kept in details and a warning."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, k)) + rng.normal(size=(n, 1)) * rng.uniform(0, 2)
    x += rng.normal(size=(1, k)) * rng.uniform(0, 3)
    res = icc(x, form)
    lo, hi = res.ci
    if np.isfinite(lo) and np.isfinite(hi):
        assert -1 / (k - 1) - 1e-12 <= lo <= hi <= 1
        if tuple(res.details["ci_mcgraw_wong"]) != res.ci:
            assert any("truncated" in w for w in res.warnings)
