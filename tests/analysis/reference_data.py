"""Published example data sets used to validate studies.analysis (sources next to each)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parent / "data"

# R package irr, data set `diagnoses` (Fleiss 1971, Table 1: 30 patients x 6 psychiatrists,
# categories 1 Depression, 2 Personality disorder, 3 Schizophrenia, 4 Neurosis, 5 Other),
# as transcribed in statsmodels' test_inter_rater.py.
DIAGNOSES = np.array(
    [
        [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5],
        [2, 2, 2, 4, 4, 4], [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4],
        [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5], [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4],
        [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5], [3, 3, 3, 3, 3, 5],
        [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
        [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4],
        [1, 4, 4, 4, 4, 5], [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4],
        [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5],
    ]
)  # fmt: skip

# R package irr, data set `anxiety` (20 subjects x 3 raters, 6-point scale; level 5 is
# never used by raters 2 and 3), as transcribed in statsmodels' test_inter_rater.py.
ANXIETY = np.array(
    [
        [3, 3, 2], [3, 6, 1], [3, 4, 4], [4, 6, 4], [5, 2, 3], [5, 4, 2], [2, 2, 1],
        [3, 4, 6], [5, 3, 1], [2, 3, 1], [2, 2, 1], [6, 3, 2], [1, 3, 3], [5, 3, 3],
        [2, 2, 1], [2, 2, 1], [1, 1, 3], [2, 3, 3], [4, 3, 2], [3, 4, 2],
    ]
)  # fmt: skip

# irrCAC (Gwet) data set `cac.raw4raters`: 12 subjects x 4 raters with missing ratings.
CAC_RAW4RATERS = np.array(
    [
        [1, 1, np.nan, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2],
        [1, 2, 3, 4], [4, 4, 4, 4], [1, 1, 2, 1], [2, 2, 2, 2], [np.nan, 5, 5, 5],
        [np.nan, np.nan, 1, 1], [np.nan, np.nan, 3, np.nan],
    ]
)  # fmt: skip

# irrCAC data set `distrib.6raters`: distribution of 6 raters over 5 categories, 15 subjects.
DISTRIB_6RATERS = np.array(
    [
        [0, 0, 0, 6, 0], [0, 3, 0, 0, 3], [0, 1, 4, 0, 1], [0, 0, 0, 0, 6], [0, 3, 0, 3, 0],
        [2, 0, 4, 0, 0], [0, 0, 4, 0, 2], [2, 0, 3, 1, 0], [2, 0, 0, 4, 0], [0, 0, 0, 0, 6],
        [1, 0, 0, 5, 0], [1, 1, 0, 4, 0], [0, 3, 3, 0, 0], [1, 0, 0, 5, 0], [0, 2, 0, 3, 1],
    ]
)  # fmt: skip

# irrCAC data set `cont3x3abstractors` (2 raters, contingency table).
CONT3X3_ABSTRACTORS = np.array([[13, 0, 0], [0, 20, 7], [0, 4, 56]])

# SAS PROC FREQ example table reproduced in statsmodels' test_inter_rater.py (table10).
SAS_TABLE10 = np.array([[0, 4, 1], [0, 8, 0], [0, 1, 5]])

# Shrout & Fleiss (1979) Table 2: 6 targets x 4 judges.
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]],
    dtype=float,
)


def distribution_to_ratings(dist: np.ndarray) -> np.ndarray:
    """Expand a subjects x categories count table to subjects x raters category codes."""
    return np.array([np.repeat(np.arange(dist.shape[1]), row) for row in dist])


def vandyke_long() -> pd.DataFrame:
    """Van Dyke et al. (1993) as a tidy reads table (modality 0 = cine, 1 = spin echo)."""
    wide = pd.read_csv(DATA / "vandyke.csv", comment="#")
    long = wide.melt(
        id_vars=["reader", "case", "truth"],
        value_vars=["rating_mod0", "rating_mod1"],
        var_name="modality_id",
        value_name="confidence",
    )
    long["modality_id"] = long["modality_id"].str[-1].astype(int)
    return long.rename(columns={"reader": "reader_id", "case": "case_id"})
