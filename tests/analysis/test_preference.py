"""Side-by-side preference analysis: mapping left/right to arms, sign test, bootstrap CI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from studies.analysis import AnalysisError, preference_analysis


def _reads(table: list[tuple[str, str, str, str, int]]) -> pd.DataFrame:
    """(reader, case, left arm, right arm, value +1 left / -1 right / 0 equal)."""
    return pd.DataFrame(
        [
            {
                "reader_id": r,
                "case_id": c,
                "patient_id": f"p{c}",
                "modality_id": left,
                "second_modality_id": right,
                "value": v,
            }
            for r, c, left, right, v in table
        ]
    )


# Reader r1 prefers A 6x, B 2x, equal 1x; reader r2 A 3x, B 3x, equal 2x. A is shown on
# the left or the right, so the mapping from +1/-1 to arms is exercised.
HAND = (
    [("r1", f"c{i}", "A", "B", 1) for i in range(3)]
    + [("r1", f"c{i}", "B", "A", -1) for i in range(3, 6)]
    + [("r1", "c6", "A", "B", -1), ("r1", "c7", "B", "A", 1), ("r1", "c8", "A", "B", 0)]
    + [("r2", f"c{i}", "B", "A", -1) for i in range(3)]
    + [("r2", f"c{i}", "A", "B", -1) for i in range(3, 6)]
    + [("r2", "c6", "A", "B", 0), ("r2", "c7", "B", "A", 0)]
)


def test_counts_and_sign_test_match_binomtest_on_hand_table():
    res = preference_analysis(_reads(HAND), "A", "B", n_boot=200)
    r1, r2 = res.per_reader
    assert (r1["prefer_a"], r1["prefer_b"], r1["equal"]) == (6, 2, 1)
    assert (r2["prefer_a"], r2["prefer_b"], r2["equal"]) == (3, 3, 2)
    assert r1["p_value"] == pytest.approx(stats.binomtest(6, 8, 0.5).pvalue)
    assert r2["p_value"] == pytest.approx(1.0)
    assert (res.prefer_a, res.prefer_b, res.equal) == (9, 5, 3)
    assert res.p_value == pytest.approx(stats.binomtest(9, 14, 0.5).pvalue)
    assert res.proportion_a == pytest.approx(9 / 17)
    assert res.p_a_among_decided == pytest.approx(9 / 14)
    assert res.pooled_ci[0] < 9 / 14 < res.pooled_ci[1]


def test_swapping_arms_flips_the_proportions():
    ab = preference_analysis(_reads(HAND), "A", "B", n_boot=300, seed=1)
    ba = preference_analysis(_reads(HAND), "B", "A", n_boot=300, seed=1)
    assert ba.prefer_a == ab.prefer_b and ba.prefer_b == ab.prefer_a
    assert ba.proportion_equal == ab.proportion_equal
    assert ba.p_a_among_decided == pytest.approx(1 - ab.p_a_among_decided)
    assert ba.pooled_ci[0] == pytest.approx(1 - ab.pooled_ci[1])
    assert ba.p_value == pytest.approx(ab.p_value)


def test_bootstrap_ci_covers_the_true_proportion_in_most_simulations():
    """Cases carry a shared preference (clustered); the 90% CI should cover 0.65 in
    roughly 90% of 40 seeded simulated studies (sanity band, not an exact coverage)."""
    rng = np.random.default_rng(2024)
    covered = 0
    for _ in range(40):
        case_p = np.clip(rng.normal(0.65, 0.1, 30), 0, 1)
        rows = []
        for c, p in enumerate(case_p):
            for r in range(3):
                v = 1 if rng.random() < p else -1
                rows.append((f"r{r}", f"c{c}", "A", "B", v))
        res = preference_analysis(_reads(rows), "A", "B", alpha=0.10, n_boot=400, seed=7)
        covered += res.pooled_ci[0] <= 0.65 <= res.pooled_ci[1]
    assert 30 <= covered <= 40


def test_bad_values_and_unknown_arms_are_refused():
    with pytest.raises(AnalysisError, match="no side-by-side"):
        preference_analysis(_reads(HAND), "A", "C")
    bad = _reads([("r1", "c1", "A", "B", 2), ("r1", "c2", "A", "B", 1)])
    with pytest.raises(AnalysisError, match=r"\+1"):
        preference_analysis(bad, "A", "B")


def test_only_ties_leave_the_test_undefined_with_a_warning():
    res = preference_analysis(
        _reads([("r1", "c1", "A", "B", 0), ("r1", "c2", "B", "A", 0)]), "A", "B", n_boot=50
    )
    assert res.equal == 2 and np.isnan(res.p_value)
    assert res.warnings
    assert res.to_dict()["p_value"] is None
