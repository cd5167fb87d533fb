"""Reference standard of a reader study: the truth each reader's answer is scored against.

A reference value belongs to one (study case, question) cell, for the questions that have a
truth: diagnostic findings and measurements (:data:`REFERENCE_KINDS`). It uses the same
coding as the readers' answers and is checked by :func:`studies.questions.validate_answer`.
A cell's final value (:class:`~studies.models.ReferenceStandard`) comes from one of:

* **consensus** — entered by the study's coordinator or a reference-panel member for the
  panel (:func:`enter_consensus`); replacing a stored final value needs a reason and is
  audited with the old and new value;
* **import** — a CSV file of external truth, e.g. arthroscopy (:func:`import_reference_csv`);
* **agreement** — the two independent reference reads of the cell are equal
  (:func:`enter_reference_read` stores it when the second read arrives);
* **adjudicated** — the two reads differ and the study's adjudicator decides
  (:func:`adjudicate`), seeing both reads.

Panel rules. Per cell exactly two independent reads count (:data:`PANEL_READS`): the first
two panel members to enter one; a third member's read of that cell is refused. A member
sees the other read of a cell only once their own is in, may change their own read only
while the other is not yet in, and cannot read a cell whose final value came from
consensus or import. The adjudicator must not be one of the cell's two readers. Two
measurements agree only when they are exactly equal; otherwise the adjudicator decides.

After closing. Once the study is closed for analysis (the arms are unblinded), a missing
final value may still be completed — the reference can come after reading, e.g. from
arthroscopy — but a stored final value never changes (:func:`refuse_change_after_close`).
Each analysis run records a digest of the reference standard it used
(:func:`reference_digest`), so a later completion is visible.

Who: the study's coordinator(s) (:func:`~studies.permissions.managed_studies`), panel
members (object permission ``studies.reference_study``) and adjudicators
(``studies.adjudicate_study``). A reader of the study never takes part, whatever else they
hold: readers must never see the reference standard. Every write is audited.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from guardian.shortcuts import get_perms

from mriplatform.audit.services import record
from studies.models import (
    Question,
    ReferenceRead,
    ReferenceStandard,
    Study,
    StudyCase,
    StudyReader,
)
from studies.permissions import managed_studies, reference_studies
from studies.questions import choice_label, choice_values, validate_answer
from studies.services import StudyError, image_set

REFERENCE_KINDS = (Question.Kind.FINDING, Question.Kind.NUMBER)
PANEL_READS = 2
MAX_IMPORT_BYTES = 2 * 1024 * 1024
MAX_IMPORT_ROWS = 20_000
IMPORT_COLUMNS = ("case", "question", "value")
MAX_LISTED_ERRORS = 25

COORDINATOR = "coordinator"
PANEL = "panel"
ADJUDICATOR = "adjudicator"


# ----------------------------------------------------------------------------- who


def is_study_reader(user, study: Study) -> bool:
    """Whether ``user`` reads this study as a reader (assigned, or holding ``read_study``)."""
    if not (user and user.is_authenticated):
        return False
    if StudyReader.objects.filter(study=study, reader=user).exists():
        return True
    return "read_study" in get_perms(user, study) and not user.is_superuser


def reference_roles(user, study: Study) -> frozenset[str]:
    """The reference roles ``user`` holds on ``study``: a subset of
    {``coordinator``, ``panel``, ``adjudicator``}; empty for the study's readers."""
    if not (user and user.is_authenticated and user.is_active) or is_study_reader(user, study):
        return frozenset()
    roles = set()
    if managed_studies(user).filter(pk=study.pk).exists():
        roles.add(COORDINATOR)
    if reference_studies(user, "studies.reference_study").filter(pk=study.pk).exists():
        roles.add(PANEL)
    if reference_studies(user, "studies.adjudicate_study").filter(pk=study.pk).exists():
        roles.add(ADJUDICATOR)
    return frozenset(roles)


def reference_study_list(user) -> list[tuple[Study, frozenset[str]]]:
    """The studies where ``user`` has a reference role, with the roles, newest first."""
    if not (user and user.is_authenticated and user.is_active):
        return []
    candidates = (
        managed_studies(user)
        | reference_studies(user, "studies.reference_study")
        | reference_studies(user, "studies.adjudicate_study")
    )
    studies = Study.objects.filter(pk__in=candidates.values("pk")).order_by("-created")
    listed = [(study, reference_roles(user, study)) for study in studies]
    return [(study, roles) for study, roles in listed if roles]


def _require(user, study: Study, *allowed: str) -> frozenset[str]:
    roles = reference_roles(user, study)
    if not roles.intersection(allowed):
        raise StudyError("you may not do this for this study's reference standard")
    return roles


# ----------------------------------------------------------------------------- values


def reference_questions(study: Study) -> list[Question]:
    """The study's questions that take a reference value (findings, measurements)."""
    return list(study.questions.filter(kind__in=REFERENCE_KINDS).order_by("order", "pk"))


def _question(study: Study, question: Question | str) -> Question:
    key = question.key if isinstance(question, Question) else str(question)
    found = study.questions.filter(key=key).first()
    if found is None:
        raise ValidationError(f"the study has no question “{key}”")
    if found.kind not in REFERENCE_KINDS:
        raise ValidationError(
            f"question “{key}” is a {found.get_kind_display().lower()}: only findings and "
            "measurements take a reference value"
        )
    return found


def choice_options(question: Question) -> list[tuple[Any, str]]:
    """(stored value, label) of each choice of a finding question, in the form's order."""
    return [(value, choice_label(question, value)) for value in choice_values(question)]


def clean_value(question: Question, value: Any) -> Any:
    """``value`` checked and normalised as a reader's answer to ``question`` would be
    (:func:`studies.questions.validate_answer`; no confidence: the truth has none);
    raises ValidationError with the reason."""
    if value is None or value == "":
        raise ValidationError(f"a value is needed for “{question.label}”")
    cleaned, _ = validate_answer(question, value)
    return cleaned


def parse_value(question: Question, text: str) -> Any:
    """A reference value typed as text (CSV cell, form field) in the answers' coding:
    a finding's choice (its stored value or label, case-insensitive) or a number (with a
    decimal point or a decimal comma)."""
    text = (text or "").strip()
    if not text:
        raise ValidationError("the value is empty")
    if question.kind == Question.Kind.NUMBER:
        try:
            number = float(text.replace(",", ".")) if text.count(",") == 1 else float(text)
        except ValueError:
            raise ValidationError(f"“{text}” is not a number") from None
        if not math.isfinite(number):
            raise ValidationError(f"“{text}” is not a finite number")
        return clean_value(question, number)
    return clean_value(question, text)


def display_value(question: Question | None, value: Any) -> str:
    """A stored value as the user sees it: a choice's label, a number with its unit."""
    if value is None:
        return ""
    if question is not None and question.kind == Question.Kind.FINDING:
        for stored, label in choice_options(question):
            if stored == value:
                return label
    if question is not None and question.kind == Question.Kind.NUMBER and question.unit:
        number = f"{value:g}" if isinstance(value, float) else str(value)
        return f"{number} {question.unit}"
    return str(value)


def same_value(a: Any, b: Any) -> bool:
    """Whether two reference reads agree (numbers by value: 3 == 3.0)."""
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def refuse_change_after_close(study: Study, cell: dict[str, Any], truth: ReferenceStandard) -> None:
    """Refuse changing the stored final value ``truth`` once ``study`` is closed for
    analysis (the arms are unblinded: the truth must not move under known results)."""
    if study.status == Study.Status.CLOSED:
        raise StudyError(
            f"{cell['case']} / {cell['question']} already has its final reference value and "
            "the study is closed for analysis: a stored reference value can no longer change "
            "(missing values can still be completed)"
        )


def reference_digest(study: Study) -> dict[str, Any]:
    """SHA-256 of the study's reference standard: the sorted (case subject code, question
    key, value) rows as canonical JSON; with the number of cells. Two runs with the same
    digest were scored against the same truth."""
    rows = sorted(
        (
            [t.study_case.case.subject_code, t.study_case_id, t.question, t.value]
            for t in ReferenceStandard.objects.filter(study_case__study=study).select_related(
                "study_case__case"
            )
        ),
        key=lambda row: (row[0], row[1], row[2]),
    )
    canonical = json.dumps(
        [[code, key, value] for code, _, key, value in rows],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return {"sha256": hashlib.sha256(canonical.encode("utf-8")).hexdigest(), "cells": len(rows)}


def _study_case(study_case: StudyCase, lock: bool = False) -> StudyCase:
    rows = StudyCase.objects.select_related("study", "case")
    if lock:
        rows = rows.select_for_update(of=("self",))
    return rows.get(pk=study_case.pk)


def _cell(study_case: StudyCase, question: Question) -> dict[str, Any]:
    return {"case": study_case.case.subject_code, "question": question.key}


# ----------------------------------------------------------------------------- consensus


@transaction.atomic
def enter_consensus(
    study_case: StudyCase,
    question: Question | str,
    value: Any,
    user,
    note: str = "",
    request=None,
) -> ReferenceStandard:
    """Store the panel's consensus value of one cell (coordinator or panel member).

    A cell that already has a final value keeps it unless ``note`` gives the reason for the
    change; the change is audited with the old and new value and source. Once the study is
    closed only missing values can be entered (:func:`refuse_change_after_close`).
    """
    study_case = _study_case(study_case, lock=True)
    study = study_case.study
    _require(user, study, COORDINATOR, PANEL)
    question = _question(study, question)
    value = clean_value(question, value)
    note = (note or "").strip()
    now = timezone.now()
    truth = ReferenceStandard.objects.filter(study_case=study_case, question=question.key).first()
    if truth is None:
        truth = ReferenceStandard.objects.create(
            study_case=study_case,
            question=question.key,
            value=value,
            source=ReferenceStandard.Source.CONSENSUS,
            entered_by=user,
            entered_at=now,
            note=note,
        )
        record(
            user,
            "study.reference.consensus",
            study,
            request=request,
            details={**_cell(study_case, question), "value": value, "note": note},
        )
        return truth
    if truth.source == ReferenceStandard.Source.CONSENSUS and same_value(truth.value, value):
        return truth
    if study.status == Study.Status.CLOSED and same_value(truth.value, value):
        return truth
    refuse_change_after_close(study, _cell(study_case, question), truth)
    if not note:
        raise ValidationError(
            f"{study_case.case.subject_code} / {question.key} already has a reference value "
            f"({display_value(question, truth.value)}, {truth.get_source_display().lower()}): "
            "give the reason for changing it"
        )
    changes = {"value": [truth.value, value], "source": [truth.source, "consensus"]}
    truth.value, truth.source, truth.entered_by = value, ReferenceStandard.Source.CONSENSUS, user
    truth.entered_at, truth.note = now, note
    truth.save()
    record(
        user,
        "study.reference.consensus_change",
        study,
        request=request,
        changes=changes,
        details={**_cell(study_case, question), "reason": note},
    )
    return truth


def _enter_many(function, study_case: StudyCase, values: dict[str, Any], *args, **kwargs):
    """Call ``function(study_case, key, value, ...)`` for each item, all or nothing: the
    errors of every item come back together as ``ValidationError({key: [message]})``."""
    errors: dict[str, list[str]] = {}
    results = []
    with transaction.atomic():
        for key, value in values.items():
            try:
                with transaction.atomic():
                    results.append(function(study_case, key, value, *args, **kwargs))
            except ValidationError as exc:
                errors[key] = exc.messages
            except StudyError as exc:
                errors[key] = [str(exc)]
        if errors:
            raise ValidationError(errors)
    return results


def enter_consensus_values(
    study_case: StudyCase, values: dict[str, Any], user, note: str = "", request=None
) -> list[ReferenceStandard]:
    """:func:`enter_consensus` for several questions of one case (``{key: value}``), all
    or nothing."""
    return _enter_many(enter_consensus, study_case, values, user, note, request=request)


# ----------------------------------------------------------------------------- panel reads


@transaction.atomic
def enter_reference_read(
    study_case: StudyCase, question: Question | str, value: Any, user, request=None
) -> ReferenceRead:
    """Store a panel member's independent read of one cell (see the module's panel rules).

    When it is the cell's second read and both agree, the cell's final value is stored
    with source ``agreement``; when they differ the cell waits for adjudication.
    """
    study_case = _study_case(study_case, lock=True)
    study = study_case.study
    _require(user, study, PANEL)
    question = _question(study, question)
    value = clean_value(question, value)
    cell = _cell(study_case, question)
    truth = ReferenceStandard.objects.filter(study_case=study_case, question=question.key).first()
    reads = list(ReferenceRead.objects.filter(study_case=study_case, question=question.key))
    own = next((r for r in reads if r.user_id == user.pk), None)
    if truth is not None and truth.source in (
        ReferenceStandard.Source.CONSENSUS,
        ReferenceStandard.Source.IMPORT,
    ):
        raise StudyError(
            f"{cell['case']} / {question.key} already has a final reference value "
            f"({truth.get_source_display().lower()}): no panel read is needed"
        )
    if own is not None:
        if len(reads) >= PANEL_READS:
            raise StudyError(
                f"both reference reads of {cell['case']} / {question.key} are in: "
                "yours can no longer change"
            )
        if same_value(own.value, value):
            return own
        old = own.value
        own.value, own.created = value, timezone.now()
        own.save(update_fields=["value", "created"])
        record(
            user,
            "study.reference.read_change",
            study,
            request=request,
            changes={"value": [old, value]},
            details=cell,
        )
        return own
    if len(reads) >= PANEL_READS:
        raise StudyError(
            f"{cell['case']} / {question.key} already has its {PANEL_READS} reference reads; "
            "a further panel member's read is not used"
        )
    read = ReferenceRead.objects.create(
        study_case=study_case, question=question.key, user=user, value=value
    )
    record(user, "study.reference.read", study, request=request, details={**cell, "value": value})
    if len(reads) + 1 == PANEL_READS:
        other = reads[0]
        if same_value(other.value, value):
            ReferenceStandard.objects.create(
                study_case=study_case,
                question=question.key,
                value=value,
                source=ReferenceStandard.Source.AGREEMENT,
                entered_by=user,
                note=f"reads of {other.user.username} and {user.username} agree",
            )
            record(
                user,
                "study.reference.agreement",
                study,
                request=request,
                details={**cell, "value": value, "readers": [other.user.username, user.username]},
            )
        else:
            record(
                user,
                "study.reference.disagreement",
                study,
                request=request,
                details={**cell, "readers": [other.user.username, user.username]},
            )
    return read


def enter_reference_reads(
    study_case: StudyCase, values: dict[str, Any], user, request=None
) -> list[ReferenceRead]:
    """:func:`enter_reference_read` for several questions of one case, all or nothing."""
    return _enter_many(enter_reference_read, study_case, values, user, request=request)


# ----------------------------------------------------------------------------- adjudication


@transaction.atomic
def adjudicate(
    study_case: StudyCase,
    question: Question | str,
    value: Any,
    user,
    note: str = "",
    request=None,
) -> ReferenceStandard:
    """The adjudicator's final value of a cell whose two reference reads disagree."""
    study_case = _study_case(study_case, lock=True)
    study = study_case.study
    _require(user, study, ADJUDICATOR)
    question = _question(study, question)
    value = clean_value(question, value)
    cell = _cell(study_case, question)
    reads = list(
        ReferenceRead.objects.filter(study_case=study_case, question=question.key).select_related(
            "user"
        )
    )
    if len(reads) < PANEL_READS or same_value(reads[0].value, reads[1].value):
        raise StudyError(
            f"{cell['case']} / {question.key} has no disagreement between two reference reads "
            "to adjudicate"
        )
    if any(r.user_id == user.pk for r in reads):
        raise StudyError("you read this case for the reference panel: another adjudicator decides")
    existing = ReferenceStandard.objects.filter(
        study_case=study_case, question=question.key
    ).first()
    if existing is not None:
        refuse_change_after_close(study, cell, existing)
        raise StudyError(f"{cell['case']} / {question.key} already has its final reference value")
    truth = ReferenceStandard.objects.create(
        study_case=study_case,
        question=question.key,
        value=value,
        source=ReferenceStandard.Source.ADJUDICATED,
        entered_by=user,
        note=(note or "").strip(),
    )
    record(
        user,
        "study.reference.adjudicate",
        study,
        request=request,
        details={
            **cell,
            "value": value,
            "reads": {r.user.username: r.value for r in reads},
            "note": truth.note,
        },
    )
    return truth


# ----------------------------------------------------------------------------- CSV import


def _decode(data: bytes) -> str:
    """The text of an uploaded CSV: UTF-16 when it starts with its BOM, else UTF-8 (BOM
    dropped), else Windows-1252 (what Excel writes by default on Windows)."""
    encodings = ("utf-16",) if data.startswith((b"\xff\xfe", b"\xfe\xff")) else ()
    for encoding in encodings or ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ValidationError(
        "the file is not text in UTF-8, UTF-16 or Windows-1252: save it as “CSV UTF-8”"
    )


def _read_upload(file) -> bytes:
    if isinstance(file, bytes | bytearray):
        data = bytes(file)
    else:
        if hasattr(file, "seek"):
            file.seek(0)
        data = file.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        raise ValidationError(
            f"the file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB; split it"
        )
    if not data.strip():
        raise ValidationError("the file is empty")
    return data


def _rows(text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    first_line = text.split("\n", 1)[0]
    try:
        dialect = csv.Sniffer().sniff(first_line, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = next(reader)
        rows = []
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((reader.line_num, row))
            if len(rows) > MAX_IMPORT_ROWS:
                raise ValidationError(f"the file has more than {MAX_IMPORT_ROWS} rows; split it")
    except csv.Error as exc:
        raise ValidationError(f"the file is not valid CSV: {exc}") from None
    return [h.strip().casefold() for h in header], rows


def _case_index(study: Study) -> dict[str, list[StudyCase]]:
    index: dict[str, list[StudyCase]] = {}
    for sc in study.study_cases.select_related("case__institution"):
        index.setdefault(sc.case.subject_code.casefold(), []).append(sc)
        site_code = f"{sc.case.institution.code}:{sc.case.subject_code}".casefold()
        index.setdefault(site_code, []).append(sc)
    return index


@dataclass
class ImportResult:
    """What an import stored: ``created`` new cells, ``unchanged`` rows equal to the
    stored value."""

    created: int = 0
    unchanged: int = 0
    cells: list[dict[str, Any]] = field(default_factory=list)


@transaction.atomic
def import_reference_csv(study: Study, file, user, request=None) -> ImportResult:
    """Import final reference values from a CSV file (coordinators), all or nothing.

    Columns (header row, any order, case-insensitive; comma, semicolon or tab separated;
    UTF-8 with or without BOM, UTF-16 with BOM, or Windows-1252): ``case`` — the case's
    subject code as listed in the study (``SITE:CODE`` when two sites share a code);
    ``question`` — the question key; ``value`` — a finding's choice (stored value or label)
    or a number (decimal point or comma); optional ``note``. At most
    :data:`MAX_IMPORT_BYTES` bytes and :data:`MAX_IMPORT_ROWS` rows.

    A row for a cell that already has a final value is accepted only when the value is the
    same (nothing changes); a different value is an error (change it by consensus, with a
    reason, while the study is not closed). Any bad row refuses the whole file:
    ValidationError lists each row number and its problem, and nothing is stored.
    """
    _require(user, study, COORDINATOR)
    text = _decode(_read_upload(file))
    header, rows = _rows(text)
    missing = [c for c in IMPORT_COLUMNS if c not in header]
    if missing:
        raise ValidationError(
            f"the header row must name the columns case, question, value (missing: "
            f"{', '.join(missing)}; found: {', '.join(h for h in header if h) or 'none'})"
        )
    if not rows:
        raise ValidationError("the file has a header but no rows")
    col = {name: header.index(name) for name in (*IMPORT_COLUMNS, "note") if name in header}
    cases = _case_index(study)
    questions = {q.key: q for q in study.questions.all()}
    stored = {
        (t.study_case_id, t.question): t
        for t in ReferenceStandard.objects.filter(study_case__study=study)
    }
    errors: list[str] = []
    seen: dict[tuple[int, str], int] = {}
    new: list[ReferenceStandard] = []
    result = ImportResult()
    now = timezone.now()

    def cell(row: list[str], name: str) -> str:
        index = col.get(name)
        return row[index].strip() if index is not None and index < len(row) else ""

    for line, row in rows:
        code, key, raw = cell(row, "case"), cell(row, "question"), cell(row, "value")
        try:
            found = cases.get(code.casefold(), [])
            if not code:
                raise ValidationError("the case is empty")
            if not found:
                raise ValidationError(f"no case “{code}” in this study")
            if len(found) > 1:
                sites = ", ".join(f"{sc.case.institution.code}:{code}" for sc in found)
                raise ValidationError(f"“{code}” is ambiguous: write one of {sites}")
            study_case = found[0]
            question = questions.get(key)
            if question is None:
                raise ValidationError(f"no question “{key}” in this study")
            question = _question(study, question)
            value = parse_value(question, raw)
            if (study_case.pk, key) in seen:
                raise ValidationError(
                    f"{code} / {key} is already given on row {seen[(study_case.pk, key)]}"
                )
            seen[(study_case.pk, key)] = line
            truth = stored.get((study_case.pk, key))
            if truth is not None:
                if not same_value(truth.value, value) and study.status == Study.Status.CLOSED:
                    raise ValidationError(
                        f"{code} / {key} already has the reference value "
                        f"{display_value(question, truth.value)}; the study is closed for "
                        "analysis, so a stored reference value can no longer change"
                    )
                if not same_value(truth.value, value):
                    raise ValidationError(
                        f"{code} / {key} already has the reference value "
                        f"{display_value(question, truth.value)} "
                        f"({truth.get_source_display().lower()}); change it by consensus "
                        "entry with a reason"
                    )
                result.unchanged += 1
                continue
        except ValidationError as exc:
            errors.append(f"row {line}: {' '.join(exc.messages)}")
            continue
        note = cell(row, "note") or "imported from CSV"
        new.append(
            ReferenceStandard(
                study_case=study_case,
                question=key,
                value=value,
                source=ReferenceStandard.Source.IMPORT,
                entered_by=user,
                entered_at=now,
                note=note,
            )
        )
        result.cells.append({"case": study_case.case.subject_code, "question": key, "value": value})
    if errors:
        shown = errors[:MAX_LISTED_ERRORS]
        if len(errors) > len(shown):
            shown.append(f"… and {len(errors) - len(shown)} more rows with problems")
        raise ValidationError(["Nothing was imported.", *shown])
    ReferenceStandard.objects.bulk_create(new)
    result.created = len(new)
    record(
        user,
        "study.reference.import",
        study,
        request=request,
        details={"created": result.created, "unchanged": result.unchanged, "cells": result.cells},
    )
    return result


# ----------------------------------------------------------------------------- status


@dataclass
class CellStatus:
    """One (case, question) cell of the reference table as ``viewer`` may see it.

    ``reads`` holds (username, value or None when hidden from the viewer) per entered
    read; ``own_read`` the viewer's own read value.
    """

    study_case: StudyCase
    question: Question
    reads: list[tuple[str, Any]]
    own_read: Any = None
    has_own_read: bool = False
    agreement: bool | None = None
    final: ReferenceStandard | None = None

    @property
    def n_reads(self) -> int:
        return len(self.reads)

    @property
    def needs_adjudication(self) -> bool:
        return self.final is None and self.agreement is False

    @property
    def state(self) -> str:
        if self.final is not None:
            return "final"
        if self.needs_adjudication:
            return "adjudication"
        return "reads" if self.reads else "open"

    @property
    def final_display(self) -> str:
        return display_value(self.question, self.final.value) if self.final else ""

    def read_refusal(self) -> str:
        """Why the viewer (a panel member) cannot enter or change a read of this cell, or
        "" when they can."""
        if self.final is not None and self.final.source in (
            ReferenceStandard.Source.CONSENSUS,
            ReferenceStandard.Source.IMPORT,
        ):
            return f"final by {self.final.get_source_display().lower()}"
        if self.n_reads >= PANEL_READS:
            return "both reads are in" if self.has_own_read else "already read by two members"
        return ""

    @property
    def reads_display(self) -> list[tuple[str, str | None]]:
        return [
            (name, None if value is None else display_value(self.question, value))
            for name, value in self.reads
        ]


def reference_status(
    study: Study, viewer=None, study_case: StudyCase | None = None
) -> dict[str, Any]:
    """Per case x reference question: reads entered, agreement, need for adjudication and
    the final value, with counts. Rows are cases (by subject code), each a list of
    :class:`CellStatus` in question order.

    With ``viewer`` a panel member, the other members' read values of a cell stay hidden
    (``None``) while the viewer may still read the cell; readers of the study get nothing.
    ``study_case`` limits the table to that case.
    """
    roles = reference_roles(viewer, study) if viewer is not None else None
    if roles is not None and not roles:
        raise StudyError("you may not see this study's reference standard")
    questions = reference_questions(study)
    cases = study.study_cases.select_related("case").order_by("case__subject_code", "pk")
    if study_case is not None:
        cases = cases.filter(pk=study_case.pk)
    reads: dict[tuple[int, str], list[ReferenceRead]] = {}
    for r in ReferenceRead.objects.filter(study_case__study=study).select_related("user"):
        reads.setdefault((r.study_case_id, r.question), []).append(r)
    finals = {
        (t.study_case_id, t.question): t
        for t in ReferenceStandard.objects.filter(study_case__study=study).select_related(
            "entered_by"
        )
    }
    counts = {"cells": 0, "final": 0, "adjudication": 0, "reads": 0, "open": 0}
    rows = []
    for sc in cases:
        cells = []
        for q in questions:
            cell_reads = sorted(reads.get((sc.pk, q.key), []), key=lambda r: (r.created, r.pk))
            own = next((r for r in cell_reads if viewer and r.user_id == viewer.pk), None)
            final = finals.get((sc.pk, q.key))
            # A panel member who may still read this cell must not see the other read.
            hide = (
                roles is not None
                and PANEL in roles
                and own is None
                and len(cell_reads) < PANEL_READS
                and final is None
            )
            status = CellStatus(
                study_case=sc,
                question=q,
                reads=[
                    (r.user.username, None if hide and r is not own else r.value)
                    for r in cell_reads
                ],
                own_read=own.value if own else None,
                has_own_read=own is not None,
                final=final,
            )
            if len(cell_reads) >= PANEL_READS:
                status.agreement = same_value(cell_reads[0].value, cell_reads[1].value)
            counts["cells"] += 1
            counts[status.state] += 1
            cells.append(status)
        rows.append({"study_case": sc, "cells": cells})
    return {"questions": questions, "rows": rows, "counts": counts}


def reference_series(study_case: StudyCase):
    """The reference arm's reconstructed Series of the case, or None (no reference arm,
    not reconstructed yet, or ambiguous)."""
    arm = study_case.study.reference_arm
    if arm is None:
        return None
    try:
        return image_set(study_case, arm)
    except StudyError:
        return None


def adjudication_queue(study: Study) -> list[CellStatus]:
    """The cells whose two reference reads disagree and that have no final value yet."""
    return [
        cell
        for row in reference_status(study)["rows"]
        for cell in row["cells"]
        if cell.needs_adjudication
    ]
