"""The tidy long-format reads table of a closed study: the input of :mod:`studies.analysis`.

One row per submitted (reader x read x question) answer, with the unblinded arm and the
reference standard, so the statistician (report, bundle, API, CSV) and a notebook start
from identical data. Readers are pseudonymised (``R1``, ``R2``, ... in the order they were
added to the study); cases are identified by their study-case pk and the site's
(already de-identified) subject code.

Coding, the same for ``value`` and ``truth``:

* ``value``: Likert score (int), measurement (float), finding / choice label (str), text,
  preference ("left" | "right" | "equal"), ROI as the JSON of its summary;
* ``value_numeric``: Likert score; measurement; finding 1 / 0 for present / absent (by the
  meaning of the two labels) or the grade index (0 = first choice = normal) for graded
  findings and choices; ROI mean; preference +1 left, -1 right, 0 equal (left =
  ``modality_id``, right = ``second_modality_id``); NaN for text.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np
import pandas as pd

from studies.models import Answer, Question, ReferenceStandard, Study, StudyReader
from studies.questions import choice_label, choice_values
from studies.services import StudyError

COLUMNS: tuple[str, ...] = (
    "reader_id",
    "case_id",
    "patient_id",
    "modality_id",
    "arm_protocol",
    "second_modality_id",
    "session",
    "read_index",
    "read_kind",
    "question",
    "question_kind",
    "criterion",
    "structure",
    "value",
    "value_numeric",
    "confidence",
    "truth",
    "truth_numeric",
    "time_on_case_s",
    "submitted_at",
)

POSITIVE = {"present", "yes", "positive", "true", "abnormal", "tear", "torn"}
NEGATIVE = {"absent", "no", "negative", "false", "normal", "none", "intact", "no tear"}
PREFERENCE_CODES = {"left": 1.0, "right": -1.0, "equal": 0.0}


def _binary_codes(question: Question) -> dict[Any, float] | None:
    """{choice: 1/0} when a finding's two choices mean present / absent, else None."""
    options = choice_values(question)
    if len(options) != 2:
        return None
    codes = {}
    for option in options:
        word = str(option).strip().lower()
        codes[option] = 1.0 if word in POSITIVE else 0.0 if word in NEGATIVE else None
    if sorted(v for v in codes.values() if v is not None) != [0.0, 1.0]:
        return None
    return codes


def code_value(question: Question, value: Any) -> tuple[Any, float]:
    """(``value`` as exported, its numeric code) for a stored answer or truth value."""
    if value is None:
        return None, math.nan
    kind = question.kind
    if kind in (Question.Kind.LIKERT, Question.Kind.NUMBER):
        return value, float(value)
    if kind in (Question.Kind.FINDING, Question.Kind.CHOICE):
        label = choice_label(question, value)
        binary = _binary_codes(question) if kind == Question.Kind.FINDING else None
        if binary is not None and value in binary:
            return label, binary[value]
        options = choice_values(question)
        return label, float(options.index(value)) if value in options else math.nan
    if kind == Question.Kind.ROI:
        mean = value.get("mean") if isinstance(value, dict) else None
        return json.dumps(value, sort_keys=True), float(mean) if mean is not None else math.nan
    if kind == Question.Kind.PREFERENCE:
        return value, PREFERENCE_CODES.get(value, math.nan)
    return value, math.nan


def reader_pseudonyms(study: Study) -> dict[int, str]:
    """{user pk: "R1", "R2", ...} in the order readers were added to ``study``."""
    users = (
        StudyReader.objects.filter(study=study).order_by("pk").values_list("reader_id", flat=True)
    )
    return {pk: f"R{i}" for i, pk in enumerate(users, start=1)}


def _require_closed(study: Study) -> None:
    if study.status != Study.Status.CLOSED:
        raise StudyError("reads can only be exported once the study is closed for analysis")


def tidy_reads(study: Study) -> pd.DataFrame:
    """The tidy reads table of a closed ``study`` (columns :data:`COLUMNS`).

    Only submitted reads and non-empty answers; rows ordered by reader, session, reading
    order and question order. Raises :class:`StudyError` unless the study is closed.
    """
    _require_closed(study)
    questions = {q.key: q for q in Question.objects.filter(study=study)}
    pseudonyms = reader_pseudonyms(study)
    truths = {
        (t.study_case_id, t.question): t.value
        for t in ReferenceStandard.objects.filter(study_case__study=study)
    }
    answers = (
        Answer.objects.filter(
            read_item__session__study=study,
            read_item__submitted_at__isnull=False,
            value__isnull=False,
        )
        .select_related(
            "read_item__session",
            "read_item__study_case__case",
            "read_item__arm__protocol",
            "read_item__second_arm",
        )
        .order_by("read_item__session__index", "read_item__order_index", "pk")
    )
    rows = []
    for answer in answers:
        question = questions.get(answer.question)
        if question is None:
            continue
        item = answer.read_item
        value, value_numeric = code_value(question, answer.value)
        if value == "":
            continue
        truth, truth_numeric = code_value(question, truths.get((item.study_case_id, question.key)))
        protocol = item.arm.protocol
        rows.append(
            {
                "reader_id": pseudonyms.get(item.reader_id, f"U{item.reader_id}"),
                "case_id": str(item.study_case_id),
                "patient_id": item.study_case.case.subject_code,
                "modality_id": item.arm.label,
                "arm_protocol": f"{protocol.name} v{protocol.version}",
                "second_modality_id": item.second_arm.label if item.second_arm_id else None,
                "session": item.session.index + 1,
                "read_index": item.read_index + 1,
                "read_kind": item.kind,
                "question": question.key,
                "question_kind": question.kind,
                "criterion": question.criterion,
                "structure": question.structure,
                "value": value,
                "value_numeric": value_numeric,
                "confidence": answer.confidence,
                "truth": truth,
                "truth_numeric": truth_numeric,
                "time_on_case_s": item.time_on_case_s,
                "submitted_at": item.submitted_at.isoformat(),
                "_item": item.order_index,
                "_order": (question.order, question.pk),
            }
        )
    df = pd.DataFrame(rows, columns=[*COLUMNS, "_item", "_order"])
    if df.empty:
        return df.drop(columns=["_item", "_order"])
    df["_reader"] = df["reader_id"].str[1:].astype(int)
    df = df.sort_values(["_reader", "session", "_item", "_order"], kind="stable")
    df = df.drop(columns=["_item", "_order", "_reader"]).reset_index(drop=True)
    df["confidence"] = df["confidence"].astype("Int64")
    return df


def tidy_csv(study: Study) -> str:
    """:func:`tidy_reads` as CSV text (UTF-8, header row, empty cells for missing)."""
    buffer = io.StringIO()
    tidy_reads(study).to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def tidy_records(study: Study) -> list[dict[str, Any]]:
    """:func:`tidy_reads` as JSON-ready dicts (NaN -> None, ROI values as objects)."""
    df = tidy_reads(study)
    records = []
    for row in df.astype(object).where(df.notna(), None).to_dict(orient="records"):
        if row["question_kind"] == Question.Kind.ROI:
            for key in ("value", "truth"):
                if isinstance(row[key], str):
                    row[key] = json.loads(row[key])
        records.append({k: _plain(v) for k, v in row.items()})
    return records


def _plain(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def analysis_table(
    study: Study, question: str, repeats: bool = False, binary: bool = False
) -> pd.DataFrame:
    """The reads of one question in the layout :mod:`studies.analysis` takes.

    Columns ``reader_id, case_id, patient_id, modality_id, value, read_index`` plus, for
    findings, ``confidence``, ``rating`` (the confidence signed by the call, higher = more
    likely diseased: present with confidence c -> 5 + c, absent -> 6 - c; the ``rating`` of
    :func:`studies.analysis.mrmc_or`) and ``truth`` (where a reference standard exists).
    ``value`` is numeric (``value_numeric``) except for text. Paired reads are left out;
    repeat reads only with ``repeats=True`` (for :func:`~studies.analysis.intra_reader_agreement`).
    ``binary=True`` turns graded findings into lesion present (grade > 0) / absent.
    """
    df = tidy_reads(study)
    sub = df[(df["question"] == question) & df["second_modality_id"].isna()]
    if not repeats:
        sub = sub[sub["read_index"] == 1]
    if sub.empty:
        raise StudyError(f"no submitted reads answer question “{question}”")
    kind = sub["question_kind"].iloc[0]
    out = sub[["reader_id", "case_id", "patient_id", "modality_id", "read_index"]].copy()
    numeric = kind != Question.Kind.TEXT
    out["value"] = sub["value_numeric"].astype(float) if numeric else sub["value"]
    if kind == Question.Kind.FINDING:
        truth = sub["truth_numeric"].astype(float)
        if binary:
            out["value"] = (out["value"] > 0).astype(float)
            truth = truth.where(truth.isna(), (truth > 0).astype(float))
        out["confidence"] = sub["confidence"].astype(float)
        call = out["value"] > 0
        out["rating"] = np.where(call, 5 + out["confidence"], 6 - out["confidence"])
        if truth.notna().any():
            out["truth"] = truth
    first = ["reader_id", "case_id", "patient_id", "modality_id", "value", "read_index"]
    return out[first + [c for c in out.columns if c not in first]].reset_index(drop=True)
