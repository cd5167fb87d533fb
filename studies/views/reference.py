"""Reference-standard pages of a study (coordinator, reference panel, adjudicator).

The rules live in :mod:`studies.reference`; these views check who is asking, turn form
text into values and show the service's refusals. Anyone without a reference role on the
study (its readers included) gets 404, so the pages do not even confirm the study exists.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from studies import reference as ref
from studies.models import Question, Study, StudyCase
from studies.services import StudyError


def _study(request, pk: int, *allowed: str) -> tuple[Study, frozenset[str]]:
    """The study and the user's reference roles on it: 404 without any, 403 without one
    of ``allowed``."""
    study = get_object_or_404(Study.objects.select_related("reference_arm"), pk=pk)
    roles = ref.reference_roles(request.user, study)
    if not roles:
        raise Http404("No such study.")
    if allowed and not roles.intersection(allowed):
        raise PermissionDenied("Your part in this study's reference standard does not allow this.")
    return study, roles


def _field(key: str) -> str:
    """The form field name of a question key."""
    return f"q_{key}"


class ReferenceValuesForm(forms.Form):
    """One value field per reference question (choice for findings, number for
    measurements); blank fields are left alone. ``locked`` maps question keys to the reason
    the field cannot change (it is shown disabled)."""

    def __init__(
        self,
        questions: list[Question],
        *args,
        locked: dict[str, str] | None = None,
        with_note: bool = False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.questions = questions
        self.locked = locked or {}
        for q in questions:
            label = f"{q.label} ({q.unit})" if q.unit else q.label
            if q.kind == Question.Kind.FINDING:
                choices = [("", "—")] + [(str(v), lbl) for v, lbl in ref.choice_options(q)]
                f = forms.ChoiceField(label=label, choices=choices, required=False)
            else:
                f = forms.CharField(
                    label=label,
                    required=False,
                    widget=forms.NumberInput(attrs={"step": "any"}),
                )
            f.help_text = self.locked.get(q.key, q.help_text)
            f.disabled = q.key in self.locked
            self.fields[_field(q.key)] = f
        if with_note:
            self.fields["note"] = forms.CharField(
                label="Note (the reason, when changing a stored value)",
                required=False,
                widget=forms.Textarea(attrs={"rows": 2}),
                max_length=2000,
            )

    def values(self, unchanged: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{question key: value}`` of the filled, unlocked fields whose value differs from
        ``unchanged``; text that is no valid value becomes a field error."""
        unchanged = unchanged or {}
        values = {}
        for q in self.questions:
            name = _field(q.key)
            text = self.cleaned_data.get(name) or ""
            if q.key in self.locked or not str(text).strip():
                continue
            try:
                value = ref.parse_value(q, str(text))
            except ValidationError as exc:
                self.add_error(name, exc)
                continue
            if q.key in unchanged and ref.same_value(unchanged[q.key], value):
                continue
            values[q.key] = value
        return values

    def add_service_errors(self, exc: ValidationError) -> None:
        """Put a service's ``ValidationError({key: messages})`` on the matching fields."""
        if not hasattr(exc, "error_dict"):
            self.add_error(None, exc)
            return
        keys = {q.key for q in self.questions}
        for key, messages_ in exc.message_dict.items():
            self.add_error(_field(key) if key in keys else None, messages_)


def _posted(request, files: bool = False) -> tuple:
    """A form's data arguments: bound on POST (even an empty one), unbound on GET."""
    if request.method != "POST":
        return ()
    return (request.POST, request.FILES) if files else (request.POST,)


def _initial(values: dict[str, Any]) -> dict[str, str]:
    return {_field(k): ("" if v is None else str(v)) for k, v in values.items()}


@require_GET
@login_required
def reference_list(request):
    """The studies whose reference standard the user works on (any reference role)."""
    studies = [
        {"study": study, "roles": sorted(roles)}
        for study, roles in ref.reference_study_list(request.user)
    ]
    return render(request, "studies/reference/list.html", {"studies": studies})


@require_GET
@login_required
def reference_status_view(request, pk: int):
    """The table of every case x reference question, as the user may see it."""
    study, roles = _study(request, pk)
    status = ref.reference_status(study, viewer=request.user)
    if ref.COORDINATOR in roles:
        for row in status["rows"]:
            row["series"] = ref.reference_series(row["study_case"])
    return render(
        request,
        "studies/reference/status.html",
        {
            "study": study,
            "roles": roles,
            "status": status,
            "is_coordinator": ref.COORDINATOR in roles,
            "is_panel": ref.PANEL in roles,
            "is_adjudicator": ref.ADJUDICATOR in roles,
            "panel_reads": ref.PANEL_READS,
        },
    )


def _values_page(request, study, study_case, form, title, intro, status=200):
    return render(
        request,
        "studies/reference/values_form.html",
        {"study": study, "study_case": study_case, "form": form, "title": title, "intro": intro},
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def reference_read(request, pk: int, case_pk: int):
    """A panel member's independent reads of one case (all reference questions)."""
    study, _ = _study(request, pk, ref.PANEL)
    study_case = get_object_or_404(
        StudyCase.objects.select_related("case"), pk=case_pk, study=study
    )
    row = ref.reference_status(study, viewer=request.user, study_case=study_case)["rows"][0]
    questions = [cell.question for cell in row["cells"]]
    locked = {c.question.key: c.read_refusal() for c in row["cells"] if c.read_refusal()}
    own = {c.question.key: c.own_read for c in row["cells"] if c.has_own_read}
    form = ReferenceValuesForm(questions, *_posted(request), locked=locked, initial=_initial(own))
    title = f"Reference reads: {study_case.case.subject_code}"
    intro = (
        f"Your independent read. Each question takes {ref.PANEL_READS} panel reads; you see "
        "the other read only after entering yours, and can change yours until the other is in."
    )
    if request.method == "POST" and form.is_valid():
        values = form.values(unchanged=own)
        if not form.errors:
            try:
                ref.enter_reference_reads(study_case, values, request.user, request=request)
            except ValidationError as exc:
                form.add_service_errors(exc)
            else:
                messages.success(request, f"Saved {len(values)} reference read(s).")
                return redirect("studies:reference", pk=study.pk)
    if form.errors:
        return _values_page(request, study, study_case, form, title, intro, status=400)
    return _values_page(request, study, study_case, form, title, intro)


@login_required
@require_http_methods(["GET", "POST"])
def reference_consensus(request, pk: int, case_pk: int):
    """The consensus panel's final values of one case (coordinator or panel member)."""
    study, _ = _study(request, pk, ref.COORDINATOR, ref.PANEL)
    study_case = get_object_or_404(
        StudyCase.objects.select_related("case"), pk=case_pk, study=study
    )
    row = ref.reference_status(study, viewer=request.user, study_case=study_case)["rows"][0]
    questions = [cell.question for cell in row["cells"]]
    current = {c.question.key: c.final.value for c in row["cells"] if c.final is not None}
    form = ReferenceValuesForm(
        questions, *_posted(request), with_note=True, initial=_initial(current)
    )
    title = f"Consensus reference: {study_case.case.subject_code}"
    if study.status == Study.Status.CLOSED:
        intro = (
            "Final values agreed by the consensus panel. The study is closed for analysis: "
            "missing values can still be completed, stored values can no longer change."
        )
    else:
        intro = (
            "Final values agreed by the consensus panel. Changing a value that is already "
            "stored needs a reason in the note; the change is kept in the audit trail."
        )
    if request.method == "POST" and form.is_valid():
        values = form.values(unchanged=current)
        if not form.errors:
            try:
                ref.enter_consensus_values(
                    study_case, values, request.user, form.cleaned_data["note"], request=request
                )
            except ValidationError as exc:
                form.add_service_errors(exc)
            else:
                messages.success(request, f"Saved {len(values)} consensus value(s).")
                return redirect("studies:reference", pk=study.pk)
    if form.errors:
        return _values_page(request, study, study_case, form, title, intro, status=400)
    return _values_page(request, study, study_case, form, title, intro)


class ImportForm(forms.Form):
    file = forms.FileField(label="CSV file")


@login_required
@require_http_methods(["GET", "POST"])
def reference_import(request, pk: int):
    """Upload a CSV file of final reference values (coordinators); all rows or none."""
    study, _ = _study(request, pk, ref.COORDINATOR)
    form = ImportForm(*_posted(request, files=True))
    problems: list[str] = []
    if request.method == "POST" and form.is_valid():
        try:
            result = ref.import_reference_csv(
                study, form.cleaned_data["file"], request.user, request=request
            )
        except ValidationError as exc:
            problems = exc.messages
        else:
            messages.success(
                request,
                f"Imported {result.created} reference value(s); "
                f"{result.unchanged} row(s) matched values already stored.",
            )
            return redirect("studies:reference", pk=study.pk)
    context = {
        "study": study,
        "form": form,
        "problems": problems,
        "max_mb": ref.MAX_IMPORT_BYTES // (1024 * 1024),
        "max_rows": ref.MAX_IMPORT_ROWS,
        "questions": ref.reference_questions(study),
    }
    failed = request.method == "POST"
    return render(request, "studies/reference/import.html", context, status=400 if failed else 200)


@require_GET
@login_required
def reference_template(request, pk: int):
    """A CSV to fill in for the import: one row per case and reference question."""
    study, _ = _study(request, pk, ref.COORDINATOR)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["case", "question", "value", "note"])
    questions = ref.reference_questions(study)
    for sc in study.study_cases.select_related("case").order_by("case__subject_code", "pk"):
        for q in questions:
            writer.writerow([sc.case.subject_code, q.key, "", ""])
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="reference-study-{study.pk}.csv"'
    return response


@require_GET
@login_required
def adjudication_queue(request, pk: int):
    """The disagreements between the two reference reads still to be decided."""
    study, _ = _study(request, pk, ref.ADJUDICATOR)
    cells = ref.adjudication_queue(study)
    for cell in cells:
        cell.viewer_read_it = any(name == request.user.username for name, _ in cell.reads)
    return render(request, "studies/reference/queue.html", {"study": study, "cells": cells})


class AdjudicationForm(forms.Form):
    note = forms.CharField(
        label="Note", required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=2000
    )


@login_required
@require_http_methods(["GET", "POST"])
def adjudicate_cell(request, pk: int, case_pk: int, key: str):
    """The adjudicator sees both reads of one cell and enters the final value."""
    study, _ = _study(request, pk, ref.ADJUDICATOR)
    study_case = get_object_or_404(
        StudyCase.objects.select_related("case"), pk=case_pk, study=study
    )
    row = ref.reference_status(study, viewer=request.user, study_case=study_case)["rows"][0]
    cell = next((c for c in row["cells"] if c.question.key == key), None)
    if cell is None:
        raise Http404("No such reference question.")
    form = ReferenceValuesForm([cell.question], *_posted(request))
    note_form = AdjudicationForm(*_posted(request))
    error = ""
    if request.method == "POST" and form.is_valid() and note_form.is_valid():
        values = form.values()
        if not form.errors and not values:
            form.add_error(_field(key), "Choose the final value.")
        if not form.errors:
            try:
                ref.adjudicate(
                    study_case,
                    cell.question,
                    values[key],
                    request.user,
                    note_form.cleaned_data["note"],
                    request=request,
                )
            except ValidationError as exc:
                form.add_error(_field(key), exc)
            except StudyError as exc:
                error = str(exc)
            else:
                messages.success(
                    request, f"{study_case.case.subject_code} / {key}: final value stored."
                )
                return redirect("studies:adjudicate", pk=study.pk)
    context = {
        "study": study,
        "study_case": study_case,
        "cell": cell,
        "form": form,
        "note_form": note_form,
        "error": error,
    }
    failed = request.method == "POST"
    return render(
        request, "studies/reference/adjudicate.html", context, status=400 if failed else 200
    )
