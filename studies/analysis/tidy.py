"""Validation of the tidy long-format reads table every analysis takes.

One row per read: ``reader_id, case_id, patient_id, modality_id, value`` plus, where an
analysis needs them, ``truth`` (0/1 reference standard), ``confidence`` (ROC rating) or
``read_index`` (1, 2, ... for repeat reads). ``case_id`` is the unit that is read (an
image set, or one finding on it); ``patient_id`` is the cluster cases belong to.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from ._common import AnalysisError

READ_COLUMNS: tuple[str, ...] = ("reader_id", "case_id", "patient_id", "modality_id", "value")


def require_columns(df: pd.DataFrame, columns: Iterable[str], context: str) -> None:
    """Raise :class:`AnalysisError` naming every column of ``columns`` missing from ``df``."""
    if not isinstance(df, pd.DataFrame):
        raise AnalysisError(f"{context}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise AnalysisError(
            f"{context}: missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"the table has {', '.join(repr(str(c)) for c in df.columns)}"
        )


def validate_reads(
    df: pd.DataFrame,
    context: str,
    columns: Sequence[str] = READ_COLUMNS,
    numeric: Sequence[str] = ("value",),
    unique_by: Sequence[str] | None = ("reader_id", "case_id", "modality_id"),
) -> pd.DataFrame:
    """Check a reads table and return a copy restricted to ``columns``.

    Raises when a column is missing, when identifiers or values are missing (NaN), when a
    ``numeric`` column is not numeric, when the table is empty, or when two rows share the
    ``unique_by`` key (a reader read the same case twice under one modality without a
    ``read_index``).
    """
    require_columns(df, columns, context)
    out = df.loc[:, list(dict.fromkeys(columns))].copy()
    if out.empty:
        raise AnalysisError(f"{context}: the reads table is empty")
    for col in columns:
        n_missing = int(out[col].isna().sum())
        if n_missing:
            raise AnalysisError(f"{context}: column {col!r} has {n_missing} missing value(s)")
    for col in numeric:
        if col in out.columns and not pd.api.types.is_numeric_dtype(out[col]):
            try:
                out[col] = pd.to_numeric(out[col])
            except (TypeError, ValueError) as exc:
                raise AnalysisError(f"{context}: column {col!r} must be numeric") from exc
        if col in out.columns and not np.all(np.isfinite(out[col].to_numpy(dtype=float))):
            raise AnalysisError(f"{context}: column {col!r} has non-finite values")
    if unique_by:
        key = [c for c in unique_by if c in out.columns]
        dup = out.duplicated(subset=key, keep=False)
        if dup.any():
            first = out.loc[dup, key].iloc[0].to_dict()
            raise AnalysisError(
                f"{context}: {int(dup.sum())} rows share the key {key} (e.g. {first}); "
                "each reader reads each case once per modality (use read_index for repeats)"
            )
    return out


def require_modalities(df: pd.DataFrame, context: str, *modalities: object) -> None:
    """Raise when one of ``modalities`` does not occur in ``df.modality_id``."""
    present = set(df["modality_id"].unique())
    missing = [m for m in modalities if m not in present]
    if missing:
        raise AnalysisError(
            f"{context}: modality {', '.join(repr(m) for m in missing)} not in the table "
            f"(present: {sorted(map(str, present))})"
        )


def binary_column(values: pd.Series, name: str, context: str) -> np.ndarray:
    """Return ``values`` as an int array of 0/1, raising if anything else occurs."""
    arr = values.to_numpy()
    try:
        as_float = arr.astype(float)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"{context}: column {name!r} must be 0/1") from exc
    bad = ~np.isin(as_float, (0.0, 1.0))
    if bad.any():
        raise AnalysisError(
            f"{context}: column {name!r} must be 0/1, found {sorted(set(as_float[bad]))[:5]}"
        )
    return as_float.astype(int)


def ratings_matrix(
    df: pd.DataFrame,
    modality: object | None = None,
    value: str = "value",
    subjects: str = "case_id",
    raters: str = "reader_id",
) -> pd.DataFrame:
    """Subjects x raters table of ``value`` (NaN where a reader did not read a case).

    The input of :func:`~studies.analysis.fleiss_kappa` and
    :func:`~studies.analysis.gwet_ac1`; ``modality`` selects one ``modality_id`` first.
    """
    context = "ratings_matrix"
    require_columns(df, (subjects, raters, value), context)
    data = df
    if modality is not None:
        require_columns(df, ("modality_id",), context)
        require_modalities(df, context, modality)
        data = df[df["modality_id"] == modality]
    if data.duplicated([subjects, raters]).any():
        raise AnalysisError(
            f"{context}: a reader has several reads of one case"
            + ("" if modality is not None else "; select a modality")
        )
    return data.pivot(index=subjects, columns=raters, values=value)
