"""Computation of the report: parameters, the reads table, and every analysis run with
:mod:`studies.analysis` into a JSON-friendly results dict (numpy / pandas only, so the
bundle's ``reproduce.py`` recomputes the numbers without matplotlib, Jinja2 or Django).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from studies import analysis as sa
from studies.analysis._common import jsonable
from studies.analysis.image_quality import NON_UNIFORM_NOISE_FAMILIES

ANALYSES: dict[str, str] = {
    "inter_reader": "Inter-reader agreement",
    "intra_reader": "Intra-reader agreement (repeat reads)",
    "likert": "Likert scores against the reference arm",
    "interchangeability": "Interchangeability of findings",
    "accuracy": "Diagnostic accuracy and MRMC ROC analysis",
    "image_quality": "SNR and CNR from regions of interest",
    "bland_altman": "Bland-Altman agreement of measurements",
    "preference": "Side-by-side preference between arms",
    "scan_time": "Scan-time reduction",
}

DEFAULT_PARAMETERS: dict[str, Any] = {
    "analyses": list(ANALYSES),
    "reference": None,
    "alpha": 0.05,
    "n_boot": 2000,
    "seed": 0,
    "margin": 0.05,
    "noninferiority_margin": 0.10,
    "likert_threshold": 3,
    "kappa_weights": "linear",
    "roc_rating": "signed",
    "mrmc_covariance": "jackknife",
    "n_coils": 1,
    "scales": {},
    "categories": {},
    "scan_times_s": {},
    "reconstruction_families": {},
}

POSITIVE = {"present", "yes", "positive", "true", "1", "1.0", "abnormal"}
NEGATIVE = {"absent", "no", "negative", "false", "0", "0.0", "normal"}
NOISE_WORDS = ("background", "noise", "air")
CATEGORICAL_KINDS = ("likert", "finding", "choice")

ProgressCallback = Callable[[float, str], None]


class ReportError(ValueError):
    """The parameters or the reads table cannot produce a report (message says why)."""


# ----------------------------------------------------------------------------- inputs


def normalise_parameters(params: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults filled in and every value checked; the result is what the analysis uses.

    Raises :class:`ReportError` naming the bad value.
    """
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULT_PARAMETERS))
    if unknown:
        raise ReportError(f"unknown parameter(s): {', '.join(unknown)}")
    out = json.loads(json.dumps(DEFAULT_PARAMETERS))
    out.update(params)
    analyses = out["analyses"]
    if isinstance(analyses, str):
        analyses = [a.strip() for a in analyses.split(",") if a.strip()]
    bad = [a for a in analyses if a not in ANALYSES]
    if bad:
        raise ReportError(f"unknown analyses {bad}; choose from {', '.join(ANALYSES)}")
    if not analyses:
        raise ReportError("choose at least one analysis")
    out["analyses"] = [a for a in ANALYSES if a in analyses]
    try:
        out["alpha"] = float(out["alpha"])
        out["n_boot"] = int(out["n_boot"])
        out["seed"] = int(out["seed"])
        out["margin"] = float(out["margin"])
        out["noninferiority_margin"] = float(out["noninferiority_margin"])
        out["likert_threshold"] = float(out["likert_threshold"])
        out["n_coils"] = int(out["n_coils"])
    except (TypeError, ValueError) as exc:
        raise ReportError(f"a numeric parameter is not a number: {exc}") from exc
    if not 0 < out["alpha"] < 0.5:
        raise ReportError(f"alpha must lie in (0, 0.5), got {out['alpha']}")
    if not 100 <= out["n_boot"] <= 100_000:
        raise ReportError(f"n_boot must lie in [100, 100000], got {out['n_boot']}")
    if not 0 <= out["seed"] < 2**63:
        raise ReportError(f"seed must be a non-negative integer, got {out['seed']}")
    if not 0 < out["margin"] < 1:
        raise ReportError(f"margin must lie in (0, 1), got {out['margin']}")
    if not 0 < out["noninferiority_margin"] < 1:
        raise ReportError(
            f"noninferiority_margin must lie in (0, 1), got {out['noninferiority_margin']}"
        )
    if out["n_coils"] < 1:
        raise ReportError(f"n_coils must be at least 1, got {out['n_coils']}")
    if out["kappa_weights"] not in ("linear", "quadratic", "unweighted"):
        raise ReportError("kappa_weights must be linear, quadratic or unweighted")
    if out["roc_rating"] not in ("signed", "confidence"):
        raise ReportError("roc_rating must be 'signed' or 'confidence'")
    if out["mrmc_covariance"] not in ("jackknife", "delong"):
        raise ReportError("mrmc_covariance must be 'jackknife' or 'delong'")
    if out["reference"] is not None:
        out["reference"] = str(out["reference"])
    return out


def load_reads(source: str | Path | io.IOBase) -> pd.DataFrame:
    """The tidy reads table from its CSV (identifiers as strings, numbers as floats)."""
    df = pd.read_csv(
        source,
        dtype={
            "reader_id": str,
            "case_id": str,
            "patient_id": str,
            "modality_id": str,
            "second_modality_id": str,
            "question": str,
            "question_kind": str,
            "criterion": str,
            "structure": str,
            "value": str,
            "truth": str,
        },
        keep_default_na=False,
        na_values=[""],
    )
    for col in ("value_numeric", "truth_numeric", "confidence", "read_index", "time_on_case_s"):
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    required = ("reader_id", "case_id", "patient_id", "modality_id", "question", "value")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ReportError(f"the reads table lacks column(s) {', '.join(missing)}")
    return df


def single_arm_reads(df: pd.DataFrame) -> pd.DataFrame:
    """Reads of one arm at a time: side-by-side (paired) reads only carry preferences,
    which only the preference analysis uses (:func:`paired_reads`)."""
    if "second_modality_id" not in df.columns:
        return df
    return df[df["second_modality_id"].isna()]


def paired_reads(df: pd.DataFrame) -> pd.DataFrame:
    """Side-by-side reads (two arms shown together); empty without ``second_modality_id``."""
    if "second_modality_id" not in df.columns:
        return df.iloc[0:0]
    return df[df["second_modality_id"].notna()]


def _first_reads(df: pd.DataFrame) -> pd.DataFrame:
    if "read_index" in df.columns:
        return df[df["read_index"].fillna(1) == 1]
    return df


def _kind(df: pd.DataFrame) -> pd.Series:
    if "question_kind" in df.columns:
        return df["question_kind"].fillna("")
    return pd.Series("", index=df.index)


def _text(row: pd.Series, column: str) -> str:
    value = row.get(column)
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _questions(df: pd.DataFrame, kinds: Iterable[str]) -> list[tuple[str, dict[str, str]]]:
    """(key, {kind, criterion, structure, label}) of questions of ``kinds``, in table order."""
    sub = df[_kind(df).isin(list(kinds))]
    out = []
    for key, g in sub.groupby("question", sort=False):
        row = g.iloc[0]
        meta = {col: _text(row, col) for col in ("criterion", "structure")}
        meta["kind"] = _text(row, "question_kind")
        meta["label"] = " / ".join(p for p in (meta["criterion"], meta["structure"]) if p) or key
        out.append((str(key), meta))
    return out


def _numeric_value(df: pd.DataFrame) -> pd.Series:
    if "value_numeric" in df.columns and df["value_numeric"].notna().all():
        return df["value_numeric"].astype(float)
    return pd.to_numeric(df["value"], errors="coerce")


def _binary(values: pd.Series) -> pd.Series:
    """1 / 0 for present / absent style labels, NaN for anything else."""
    text = values.astype(str).str.strip().str.lower()
    return text.map(lambda v: 1.0 if v in POSITIVE else (0.0 if v in NEGATIVE else math.nan))


def _modalities(df: pd.DataFrame) -> list[str]:
    return sorted(df["modality_id"].dropna().astype(str).unique())


def _reference(df: pd.DataFrame, params: dict[str, Any]) -> str | None:
    ref = params.get("reference")
    mods = _modalities(df)
    if ref is not None and ref in mods:
        return ref
    return None


def _categories(sub: pd.DataFrame, key: str, kind: str, params: dict[str, Any]) -> list[Any]:
    if kind == "likert":
        scale = params.get("scales", {}).get(key)
        if scale:
            return list(range(int(scale[0]), int(scale[1]) + 1))
        values = _numeric_value(sub).dropna()
        return list(range(int(values.min()), int(values.max()) + 1)) if len(values) else []
    choices = params.get("categories", {}).get(key)
    if choices:
        return [str(c) for c in choices]
    return sorted(sub["value"].dropna().astype(str).unique())


def _reads_frame(sub: pd.DataFrame, value: pd.Series, extra: Iterable[str] = ()) -> pd.DataFrame:
    cols = ["reader_id", "case_id", "patient_id", "modality_id", *extra]
    out = sub[cols].copy()
    out["value"] = value.to_numpy()
    return out.dropna(subset=["value"])


# ---------------------------------------------------------------------------- results


def _section(name: str) -> dict[str, Any]:
    return {"title": ANALYSES[name], "status": "done", "reason": "", "items": [], "skipped": []}


def _skip(section: dict[str, Any], reason: str) -> dict[str, Any]:
    """Mark ``section`` skipped; when comparisons were tried and refused, say why."""
    section["status"] = "skipped"
    refused = section["skipped"]
    if refused:
        reason = f"no comparison could be computed ({refused[0]['id']}: {refused[0]['reason']})"
    section["reason"] = reason
    return section


def _item(section: dict[str, Any], item_id: str, result: Any, **labels: Any) -> None:
    data = result.to_dict() if hasattr(result, "to_dict") else jsonable(result)
    section["items"].append({"id": item_id, **jsonable(labels), "result": data})


def _try(section: dict[str, Any], item_id: str, func: Callable[[], Any], **labels: Any) -> bool:
    try:
        result = func()
    except sa.AnalysisError as exc:
        section["skipped"].append({"id": item_id, **jsonable(labels), "reason": str(exc)})
        return False
    _item(section, item_id, result, **labels)
    return True


def _inter_reader(df: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    section = _section("inter_reader")
    first = _first_reads(df)
    questions = _questions(first, CATEGORICAL_KINDS)
    if not questions:
        return _skip(section, "no Likert, finding or choice questions were answered")
    weights = None if params["kappa_weights"] == "unweighted" else params["kappa_weights"]
    for key, meta in questions:
        q = first[first["question"] == key]
        kind = meta["kind"]
        value = (
            _numeric_value(q)
            if kind == "likert"
            else q["value"].astype(str).where(q["value"].notna())
        )
        cats = _categories(q, key, kind, params)
        w = weights if kind == "likert" else None
        all_reads = _reads_frame(q, value)
        for mod in _modalities(q):
            reads = all_reads[all_reads["modality_id"] == mod]
            matrix = sa.ratings_matrix(reads) if not reads.empty else pd.DataFrame()
            labels = {"question": key, "label": meta["label"], "modality": mod}
            if matrix.shape[1] < 2:
                section["skipped"].append(
                    {"id": f"{key}/{mod}", **labels, "reason": "fewer than 2 readers"}
                )
                continue
            if matrix.shape[1] == 2:
                a, b = matrix.columns
                _try(
                    section,
                    f"{key}/{mod}/cohen",
                    lambda m=matrix, a=a, b=b, c=cats, w=w: sa.cohen_kappa(
                        m[a], m[b], c, weights=w, alpha=params["alpha"]
                    ),
                    coefficient="Cohen kappa" + (f" ({w})" if w else ""),
                    **labels,
                )
            else:
                _try(
                    section,
                    f"{key}/{mod}/fleiss",
                    lambda m=matrix, c=cats: sa.fleiss_kappa(m, c, alpha=params["alpha"]),
                    coefficient="Fleiss kappa",
                    **labels,
                )
                _try(
                    section,
                    f"{key}/{mod}/gwet",
                    lambda m=matrix, c=cats, w=w: sa.gwet_ac1(
                        m, c, weights=w, alpha=params["alpha"]
                    ),
                    coefficient="Gwet AC1" if w is None else f"Gwet AC2 ({w})",
                    **labels,
                )
            level = "ordinal" if kind == "likert" else "nominal"
            codes = {c: i for i, c in enumerate(cats)}
            coded = matrix if kind == "likert" else matrix.apply(lambda col, c=codes: col.map(c))
            _try(
                section,
                f"{key}/{mod}/krippendorff",
                lambda m=coded, lv=level: sa.krippendorff_alpha(
                    m, lv, alpha=params["alpha"], n_boot=params["n_boot"], seed=params["seed"]
                ),
                coefficient=f"Krippendorff alpha ({level})",
                **labels,
            )
    if not section["items"]:
        return _skip(section, "no question had two readers' ratings of the same cases")
    return section


def _intra_reader(df: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    section = _section("intra_reader")
    if "read_index" not in df.columns or not (df["read_index"] > 1).any():
        return _skip(section, "the study has no repeat reads")
    repeated = df[df["read_index"].notna()]
    questions = _questions(repeated[repeated["read_index"] > 1], ("likert", "finding", "choice"))
    weights = None if params["kappa_weights"] == "unweighted" else params["kappa_weights"]
    for key, meta in questions:
        q = repeated[repeated["question"] == key]
        kind = meta["kind"]
        value = (
            _numeric_value(q)
            if kind == "likert"
            else q["value"].astype(str).where(q["value"].notna())
        )
        reads = _reads_frame(q, value, ("read_index",))
        n_reads = reads.groupby(["reader_id", "case_id", "modality_id"])["read_index"]
        reads = reads[n_reads.transform("nunique") > 1]
        cats = _categories(q, key, kind, params)
        _try(
            section,
            key,
            lambda r=reads, c=cats, w=(weights if kind == "likert" else None): (
                sa.intra_reader_agreement(
                    r,
                    c,
                    weights=w,
                    alpha=params["alpha"],
                    n_boot=params["n_boot"],
                    seed=params["seed"],
                )
            ),
            question=key,
            label=meta["label"],
        )
    if not section["items"]:
        return _skip(section, "no repeat read of a Likert, finding or choice question")
    return section


def against_reference(
    source: pd.DataFrame, kinds: Iterable[str], reference: str
) -> Iterator[tuple[str, dict[str, str], pd.DataFrame, str]]:
    """(question key, question meta, the question's reads, new arm) for every question of
    ``kinds`` in ``source`` and every arm other than ``reference`` that read it: the one
    loop behind every comparison against the reference arm."""
    for key, meta in _questions(source, kinds):
        q = source[source["question"] == key]
        for new in _modalities(q):
            if new != reference:
                yield key, meta, q, new


def _likert(df: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    section = _section("likert")
    ref = _reference(df, params)
    if ref is None:
        return _skip(section, "no reference arm among the arms read")
    first = _first_reads(df)
    if not _questions(first, ("likert",)):
        return _skip(section, "no Likert questions were answered")
    for key, meta, q, new in against_reference(first, ("likert",), ref):
        reads = _reads_frame(q, _numeric_value(q))
        _try(
            section,
            f"{key}/{new}",
            lambda r=reads, n=new: sa.likert_comparison(
                r,
                ref,
                n,
                threshold=params["likert_threshold"],
                alpha=params["alpha"],
                n_boot=params["n_boot"],
                seed=params["seed"],
            ),
            question=key,
            label=meta["label"],
            criterion=meta["criterion"],
            structure=meta["structure"],
            reference=ref,
            modality=new,
        )
    if not section["items"]:
        return _skip(section, "no Likert question was read under the reference and another arm")
    adjusted = sa.holm([item["result"]["pooled"]["p_value"] for item in section["items"]])
    for item, p in zip(section["items"], adjusted, strict=True):
        item["p_holm"] = jsonable(float(p))
    section["note"] = "p_holm: pooled p-values Holm-adjusted across questions and arms"
    return section


def _interchangeability(df: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    section = _section("interchangeability")
    ref = _reference(df, params)
    if ref is None:
        return _skip(section, "no reference arm among the arms read")
    first = _first_reads(df)
    if not _questions(first, ("finding",)):
        return _skip(section, "no finding questions were answered")
    for key, meta, q, new in against_reference(first, ("finding",), ref):
        reads = _reads_frame(q, q["value"].astype(str).where(q["value"].notna()))
        _try(
            section,
            f"{key}/{new}",
            lambda r=reads, n=new: sa.interchangeability(
                r,
                ref,
                n,
                margin=params["margin"],
                n_boot=params["n_boot"],
                seed=params["seed"],
                alpha=params["alpha"],
            ),
            question=key,
            label=meta["label"],
            reference=ref,
            modality=new,
        )
    if not section["items"]:
        return _skip(section, "no finding was read under the reference and another arm")
    return section


def _coded(q: pd.DataFrame, column: str) -> pd.Series:
    """The numeric code of ``column`` (value / truth): the export's ``<column>_numeric``
    where it has one, else present / absent style labels as 1 / 0."""
    numeric = "value_numeric" if column == "value" else f"{column}_numeric"
    coded = _binary(q[column])
    if numeric in q.columns:
        coded = pd.to_numeric(q[numeric], errors="coerce").where(q[numeric].notna(), coded)
    return coded.astype(float)


def finding_calls(q: pd.DataFrame) -> tuple[pd.Series, pd.Series, bool]:
    """(call, truth, dichotomised) of a finding's reads as 0/1.

    Binary findings keep their 1 / 0 coding; graded findings (grade index, 0 = normal) are
    dichotomised as lesion present (grade > 0), as is usual for accuracy and ROC analysis.
    NaN where a value is not codable.
    """
    call, truth = _coded(q, "value"), _coded(q, "truth")
    observed = set(call.dropna().unique()) | set(truth.dropna().unique())
    if observed <= {0.0, 1.0}:
        return call, truth, False
    return (
        call.where(call.isna(), (call > 0).astype(float)),
        truth.where(truth.isna(), (truth > 0).astype(float)),
        True,
    )


def roc_ratings(q: pd.DataFrame, params: dict[str, Any]) -> pd.Series:
    """The ROC rating of every read of a finding (higher = more likely diseased): the
    confidence signed by the call (present: 5 + c, absent: 6 - c), or the confidence itself
    with ``roc_rating = 'confidence'``."""
    conf = q["confidence"].astype(float) if "confidence" in q.columns else pd.Series(np.nan)
    if params["roc_rating"] == "confidence":
        return conf
    call, _, _ = finding_calls(q)
    return pd.Series(np.where(call == 1, 5 + conf, 6 - conf), index=q.index)


def _accuracy(df: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    section = _section("accuracy")
    if "truth" not in df.columns or df["truth"].isna().all():
        return _skip(section, "no reference standard (truth) was entered")
    first = _first_reads(df)
    ref = _reference(first, params)
    questions = _questions(first, ("finding",))
    if not questions:
        return _skip(section, "no finding questions were answered")
    for key, meta in questions:
        q = first[(first["question"] == key) & first["truth"].notna()]
        labels = {"question": key, "label": meta["label"]}
        if q.empty:
            section["skipped"].append({"id": key, **labels, "reason": "no truth entered"})
            continue
        call, truth, dichotomised = finding_calls(q)
        if call.isna().any() or truth.isna().any():
            reason = "values are neither present/absent nor grades"
            section["skipped"].append({"id": key, **labels, "reason": reason})
            continue
        if dichotomised:
            labels["dichotomised"] = "graded finding: present = grade above the first choice"
        reads = _reads_frame(q, call).assign(truth=truth.to_numpy())
        _try(
            section,
            f"{key}/accuracy",
            lambda r=reads: sa.diagnostic_accuracy(
                r, alpha=params["alpha"], n_boot=params["n_boot"], seed=params["seed"]
            ),
            analysis="accuracy",
            **labels,
        )
        correct = reads.assign(value=(reads["value"] == reads["truth"]).astype(int))
        for new in [m for m in _modalities(q) if ref is not None and m != ref]:
            _try(
                section,
                f"{key}/{new}/noninferiority",
                lambda r=correct, n=new: sa.noninferiority_gee(
                    r, ref, n, margin=params["noninferiority_margin"], alpha=params["alpha"]
                ),
                analysis="noninferiority",
                reference=ref,
                modality=new,
                **labels,
            )
        rating = roc_ratings(q, params)
        if rating.isna().any():
            section["skipped"].append(
                {"id": f"{key}/mrmc", **labels, "reason": "confidence ratings are missing"}
            )
            continue
        roc = reads.assign(confidence=rating.to_numpy())
        _try(
            section,
            f"{key}/mrmc",
            lambda r=roc: sa.mrmc_or(
                r, covariance=params["mrmc_covariance"], alpha=params["alpha"]
            ),
            analysis="mrmc",
            **labels,
        )
    if not section["items"]:
        return _skip(section, "no finding with a reference standard could be analysed")
    return section


def _roi_stats(value: Any) -> dict[str, float | None] | None:
    """{mean, sd} of an ROI answer: the viewer's JSON, or just its mean (sd None)."""
    if isinstance(value, dict):
        data: Any = value
    else:
        try:
            data = json.loads(value)
        except (TypeError, ValueError):
            return None
    if isinstance(data, int | float) and not isinstance(data, bool):
        return {"mean": float(data), "sd": None} if math.isfinite(data) else None
    if not isinstance(data, dict):
        return None
    try:
        mean = float(data["mean"])
    except (KeyError, TypeError, ValueError):
        return None
    try:
        sd = float(data["sd"])
    except (KeyError, TypeError, ValueError):
        sd = None
    return {"mean": mean, "sd": sd}


def background_sigma(roi: dict[str, float | None], n_coils: int) -> tuple[float, str]:
    """Noise sigma from a background ROI's summary.

    Several coils with mean and SD known: the second moment, sigma = sqrt((mean^2 + SD^2) /
    (2 n)), exact whatever the inter-coil noise correlation (the SD alone overestimates
    sigma by 36 % at rho = 0.4 over 8 coils; :mod:`studies.analysis.image_quality`). One
    coil: SD / SD factor when the SD is known, otherwise mean / mean factor (both
    :func:`studies.analysis.magnitude_noise_factors`).
    """
    mean_f, sd_f = sa.magnitude_noise_factors(n_coils)
    if n_coils > 1 and roi.get("sd") is not None and roi.get("mean") is not None:
        second = float(roi["mean"]) ** 2 + float(roi["sd"]) ** 2
        return math.sqrt(second / (2 * n_coils)), (
            f"sqrt((mean^2 + SD^2)(background) / {2 * n_coils}) (exact for correlated coils)"
        )
    if roi.get("sd") is not None:
        return float(roi["sd"]) / sd_f, f"SD(background) / {sd_f:.4f}"
    return float(roi["mean"]) / mean_f, f"mean(background) / {mean_f:.4f}"


def _is_noise_roi(meta: dict[str, str], key: str) -> bool:
    text = f"{key} {meta['criterion']} {meta['structure']}".lower()
    return any(word in text for word in NOISE_WORDS)


def image_quality_table(df: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """One row per read and signal ROI (SNR) or ROI pair (CNR): reader_id, case_id,
    modality_id, sigma_method, measure, name, value; empty without a background ROI."""
    first = _first_reads(df)
    questions = _questions(first, ("roi",))
    noise = [k for k, m in questions if _is_noise_roi(m, k)]
    signal = [(k, m) for k, m in questions if k not in noise]
    if not noise or not signal:
        return pd.DataFrame(
            columns=[
                "reader_id",
                "case_id",
                "modality_id",
                "sigma_method",
                "measure",
                "name",
                "value",
            ]
        )
    read_key = ["reader_id", "case_id", "modality_id"]
    stats = first[first["question"].isin([k for k, _ in questions])].copy()
    stats["roi"] = stats["value"].map(_roi_stats)
    stats = stats[stats["roi"].notna()]
    rows = []
    for key_vals, read in stats.groupby(read_key, sort=True):
        rois = dict(zip(read["question"], read["roi"], strict=False))
        bg = rois.get(noise[0])
        if bg is None:
            continue
        sigma, how = background_sigma(bg, params["n_coils"])
        if not sigma > 0:
            continue
        labels = {**dict(zip(read_key, key_vals, strict=True)), "sigma_method": how}
        present = [(k, m) for k, m in signal if k in rois]
        for k, m in present:
            snr_value = rois[k]["mean"] / sigma
            rows.append({**labels, "measure": "SNR", "name": m["label"], "value": snr_value})
        for i, (ka, ma) in enumerate(present):
            for kb, mb in present[i + 1 :]:
                contrast = abs(rois[ka]["mean"] - rois[kb]["mean"])
                rows.append(
                    {
                        **labels,
                        "measure": "CNR",
                        "name": f"{ma['label']} vs {mb['label']}",
                        "value": contrast / sigma,
                    }
                )
    return pd.DataFrame(rows, columns=[*read_key, "sigma_method", "measure", "name", "value"])


def paired_case_comparison(
    table: pd.DataFrame, reference: str, new: str, alpha: float
) -> dict[str, Any]:
    """Between-arm comparison of one SNR / CNR: per case the mean over readers' reads, then
    a two-sided Wilcoxon signed-rank test of ``new - reference`` over cases with both arms
    (cases are the independent units; readers' values of a case are averaged first)."""
    from scipy import stats

    per_case = table.pivot_table(
        index="case_id", columns="modality_id", values="value", aggfunc="mean"
    )
    if reference not in per_case.columns or new not in per_case.columns:
        raise sa.AnalysisError(f"no case has {reference!r} and {new!r} values")
    pairs = per_case[[reference, new]].dropna()
    d = (pairs[new] - pairs[reference]).to_numpy(dtype=float)
    if d.size < 3:
        raise sa.AnalysisError(f"the paired comparison needs at least 3 cases, got {d.size}")
    test = stats.wilcoxon(d, alternative="two-sided", zero_method="wilcox")
    walsh = (d[:, None] + d[None, :])[np.triu_indices(d.size)] / 2
    return {
        "n_cases": int(d.size),
        "median_reference": float(np.median(pairs[reference])),
        "median_new": float(np.median(pairs[new])),
        "median_difference": float(np.median(d)),
        "hodges_lehmann": float(np.median(walsh)),
        "statistic": float(test.statistic),
        "p_value": float(test.pvalue),
        "alpha": alpha,
        "method": (
            f"{new} vs {reference}: per-case mean over readers, two-sided Wilcoxon "
            "signed-rank test over cases (scipy.stats.wilcoxon, zero differences dropped); "
            "Hodges-Lehmann estimate of the shift"
        ),
    }


def _image_quality(df: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    section = _section("image_quality")
    questions = _questions(_first_reads(df), ("roi",))
    if not questions:
        return _skip(section, "no ROI questions were answered")
    if not any(_is_noise_roi(m, k) for k, m in questions):
        return _skip(section, "no background ROI (structure 'background'): sigma is unknown")
    table = image_quality_table(df, params)
    if table.empty:
        return _skip(section, "no read has both a signal and a background ROI")
    families = params.get("reconstruction_families", {})
    for (measure, name, mod), g in table.groupby(["measure", "name", "modality_id"], sort=True):
        v = g["value"].to_numpy(dtype=float)
        family = families.get(mod)
        warn = []
        if family in NON_UNIFORM_NOISE_FAMILIES:
            warn.append(
                f"background-noise {measure} on a {family} reconstruction: noise is spatially "
                "varying there, so the value is unreliable"
            )
        summary = {
            "n": int(v.size),
            "mean": float(v.mean()),
            "sd": float(v.std(ddof=1)) if v.size > 1 else None,
            "median": float(np.median(v)),
            "q1": float(np.quantile(v, 0.25)),
            "q3": float(np.quantile(v, 0.75)),
            "method": (
                f"{measure} per read from the viewer's ROI summaries (mean, SD; the "
                "pixel-level studies.analysis snr / cnr need ROI pixels, which reads do not "
                "store, so their background formula is applied to the summaries); background "
                "method, "
                f"{params['n_coils']}-coil magnitude correction: sigma = "
                + " or ".join(sorted(g["sigma_method"].unique()))
            ),
            "reconstruction_family": family,
            "warnings": warn,
        }
        section["items"].append(
            {
                "id": f"{measure}/{name}/{mod}",
                "measure": measure,
                "name": name,
                "modality": mod,
                "result": jsonable(summary),
            }
        )
    ref = _reference(df, params)
    if ref is not None:
        for (measure, name), g in table.groupby(["measure", "name"], sort=True):
            for mod in _modalities(g):
                if mod == ref:
                    continue
                _try(
                    section,
                    f"{measure}/{name}/{mod}-vs-{ref}",
                    lambda g=g, m=mod: paired_case_comparison(g, ref, m, params["alpha"]),
                    measure=measure,
                    name=name,
                    modality=mod,
                    reference=ref,
                    comparison=True,
                )
    return section


def _measurements(q: pd.DataFrame) -> pd.DataFrame:
    """Tidy measurement reads (first and repeat reads: ``read_index`` kept)."""
    extra = ["read_index"] if "read_index" in q.columns else []
    reads = _reads_frame(q, _numeric_value(q), extra)
    if extra:
        reads["read_index"] = reads["read_index"].fillna(1)
    return reads


def _measurement_pairs(q: pd.DataFrame, ref: str, new: str) -> pd.DataFrame:
    """(reader, case[, read]) rows with the ``ref`` and ``new`` measurement side by side."""
    reads = _measurements(q)
    index = ["reader_id", "case_id"] + (["read_index"] if "read_index" in reads.columns else [])
    wide = reads.pivot_table(index=index, columns="modality_id", values="value", aggfunc="mean")
    if ref not in wide.columns or new not in wide.columns:
        return pd.DataFrame(columns=[ref, new])
    return wide[[ref, new]].dropna()


def _bland_altman(df: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    section = _section("bland_altman")
    ref = _reference(df, params)
    if ref is None:
        return _skip(section, "no reference arm among the arms read")
    if not _questions(df, ("number",)):
        return _skip(section, "no measurement (number) questions were answered")
    for key, meta, q, new in against_reference(df, ("number",), ref):
        reads = _measurements(q)
        _try(
            section,
            f"{key}/{new}",
            lambda r=reads, n=new: sa.bland_altman(r, reference=ref, new=n, alpha=params["alpha"]),
            question=key,
            label=meta["label"],
            reference=ref,
            modality=new,
        )
    if not section["items"]:
        return _skip(section, "no measurement was made under the reference and another arm")
    return section


PREFERENCE_CODES = {"left": 1.0, "right": -1.0, "equal": 0.0}


def _preference_value(q: pd.DataFrame) -> pd.Series:
    """+1 left, -1 right, 0 equal: the export's ``value_numeric``, else coded from ``value``
    (anything else becomes NaN, which the library refuses with a message)."""
    if "value_numeric" in q.columns and q["value_numeric"].notna().all():
        return q["value_numeric"].astype(float)
    return q["value"].astype(str).str.strip().str.lower().map(PREFERENCE_CODES)


def _preference(df: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    """Side-by-side preference per question and pair of arms (A = the reference arm when it
    is one of the two, otherwise the alphabetically first)."""
    section = _section("preference")
    paired = paired_reads(df)
    paired = paired[_kind(paired) == "preference"] if len(paired) else paired
    if paired.empty:
        return _skip(section, "no side-by-side preference reads were made")
    ref = _reference(df, params)
    for key, meta in _questions(paired, ("preference",)):
        q = paired[paired["question"] == key]
        reads = q[["reader_id", "case_id", "patient_id", "modality_id", "second_modality_id"]]
        reads = reads.assign(value=_preference_value(q).to_numpy())
        arm_pairs = {
            tuple(sorted((str(a), str(b))))
            for a, b in zip(reads["modality_id"], reads["second_modality_id"], strict=True)
        }
        for pair in sorted(arm_pairs):
            arm_a, arm_b = (pair[1], pair[0]) if pair[1] == ref else pair
            _try(
                section,
                f"{key}/{arm_a}-vs-{arm_b}",
                lambda r=reads, a=arm_a, b=arm_b: sa.preference_analysis(
                    r, a, b, alpha=params["alpha"], n_boot=params["n_boot"], seed=params["seed"]
                ),
                question=key,
                label=meta["label"],
                arm_a=arm_a,
                arm_b=arm_b,
            )
    if not section["items"]:
        return _skip(section, "no side-by-side preference could be analysed")
    return section


def _scan_time(df: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    section = _section("scan_time")
    ref = _reference(df, params)
    times = params.get("scan_times_s") or {}
    if ref is None or ref not in times:
        return _skip(section, "the reference arm's acquisition time is unknown")
    for mod in _modalities(df):
        if mod == ref or mod not in times:
            continue
        _try(
            section,
            mod,
            lambda m=mod: sa.scan_time_reduction(float(times[ref]), float(times[m])),
            reference=ref,
            modality=mod,
        )
    if not section["items"]:
        return _skip(section, "no other arm has an acquisition time")
    return section


RUNNERS: dict[str, Callable[[pd.DataFrame, dict[str, Any]], dict[str, Any]]] = {
    "inter_reader": _inter_reader,
    "intra_reader": _intra_reader,
    "likert": _likert,
    "interchangeability": _interchangeability,
    "accuracy": _accuracy,
    "image_quality": _image_quality,
    "bland_altman": _bland_altman,
    "preference": _preference,
    "scan_time": _scan_time,
}


PAIRED_ANALYSES = {"preference"}


def compute_results(
    reads: pd.DataFrame, params: dict[str, Any], progress: ProgressCallback | None = None
) -> dict[str, Any]:
    """Every chosen analysis on ``reads``; JSON-friendly, deterministic for given params.

    An analysis whose data are absent is kept with ``status = 'skipped'`` and a reason;
    individual comparisons that the library refuses are listed under ``skipped``.
    """
    params = normalise_parameters(params)
    all_reads = reads
    reads = single_arm_reads(reads)
    if reads.empty:
        raise ReportError("the study has no submitted reads to analyse")
    chosen = params["analyses"]
    sections: dict[str, Any] = {}
    for i, name in enumerate(chosen):
        if progress:
            progress(i / len(chosen), f"Running: {ANALYSES[name]}")
        sections[name] = RUNNERS[name](all_reads if name in PAIRED_ANALYSES else reads, params)
    first = _first_reads(reads)
    summary = {
        "n_rows": int(len(reads)),
        "n_readers": int(reads["reader_id"].nunique()),
        "n_cases": int(reads["case_id"].nunique()),
        "n_patients": int(reads["patient_id"].nunique()),
        "modalities": _modalities(reads),
        "reference": _reference(reads, params),
        "n_questions": int(reads["question"].nunique()),
        "n_first_reads": int(len(first)),
    }
    return jsonable({"parameters": params, "summary": summary, "analyses": sections})


def compare_results(expected: Any, actual: Any, rel: float = 1e-9, path: str = "") -> list[str]:
    """Differences between two results dicts (floats within ``rel``); empty when equal."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key in sorted(set(expected) | set(actual)):
            if key not in expected or key not in actual:
                out.append(f"{path}/{key}: present in only one of the results")
            else:
                out += compare_results(expected[key], actual[key], rel, f"{path}/{key}")
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(expected)} vs {len(actual)} entries"]
        out = []
        for i, (a, b) in enumerate(zip(expected, actual, strict=True)):
            out += compare_results(a, b, rel, f"{path}[{i}]")
        return out
    if isinstance(expected, bool) or isinstance(actual, bool):
        return [] if expected == actual else [f"{path}: {expected!r} != {actual!r}"]
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        if math.isclose(expected, actual, rel_tol=rel, abs_tol=1e-12):
            return []
        return [f"{path}: {expected!r} != {actual!r}"]
    return [] if expected == actual else [f"{path}: {expected!r} != {actual!r}"]
