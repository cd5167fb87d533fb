"""The coordinator's pages: study list, creation, the design page (arms, cases, readers,
reference panel, questions), opening, progress, early release and closing for analysis.

Only coordinators reach these pages (403 for other roles); a study a coordinator does not
manage is 404 (:func:`studies.permissions.managed_studies` decides). Coordinators see
counts, never answers. The rules live in :mod:`studies.design` and :mod:`studies.services`;
refusals come back as messages.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from mriplatform.accounts.roles import Role, role_required
from mriplatform.audit.models import AuditEvent
from mriplatform.audit.services import history
from studies import design
from studies.forms import (
    ArmForm,
    PanelForm,
    QuestionForm,
    ReaderForm,
    ReasonForm,
    StudyCaseForm,
    StudyForm,
    TemplateForm,
)
from studies.models import (
    Arm,
    Question,
    ReadingSession,
    ReadItem,
    Study,
    StudyCase,
    StudyReader,
)
from studies.permissions import managed_studies
from studies.questions import is_locked
from studies.services import (
    StudyError,
    add_reader,
    close_study,
    missing_image_sets,
    open_study,
    release_session,
    study_progress,
)

coordinator_only = role_required(Role.COORDINATOR)


def _study(request: HttpRequest, pk: int) -> Study:
    """A study the user manages, or 404."""
    return get_object_or_404(
        managed_studies(request.user).select_related("institution", "reference_arm"), pk=pk
    )


def _refusal(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc)


def _form_errors(form) -> str:
    return " ".join(
        f"{form.fields[name].label or name}: {' '.join(errors)}"
        if name in form.fields
        else " ".join(errors)
        for name, errors in form.errors.items()
    )


def _back(study: Study) -> HttpResponse:
    return redirect("studies:detail", pk=study.pk)


def _read_counts(studies) -> dict[int, tuple[int, int]]:
    """(submitted, total) reads per study pk."""
    rows = (
        ReadItem.objects.filter(session__study__in=studies)
        .values("session__study")
        .annotate(total=Count("pk"), submitted=Count("pk", filter=Q(submitted_at__isnull=False)))
    )
    return {r["session__study"]: (r["submitted"], r["total"]) for r in rows}


@require_GET
@coordinator_only
def study_list(request: HttpRequest) -> HttpResponse:
    """The coordinator's studies with status and read progress (counts only)."""
    studies = list(
        managed_studies(request.user)
        .select_related("institution", "coordinator")
        .annotate(
            n_arms=Count("arms", distinct=True),
            n_cases=Count("study_cases", distinct=True),
            n_readers=Count("study_readers", distinct=True),
        )
    )
    counts = _read_counts([s.pk for s in studies])
    for s in studies:
        s.submitted_reads, s.total_reads = counts.get(s.pk, (0, 0))
    return render(request, "studies/design/list.html", {"studies": studies})


@coordinator_only
def study_create(request: HttpRequest) -> HttpResponse:
    """A new draft study at the coordinator's institution, optionally with a question template."""
    form = StudyForm(request.POST or None, with_template=True)
    institution = request.user.institution
    if request.method == "POST" and form.is_valid():
        if institution is None:
            messages.error(request, "Your account belongs to no institution: ask an admin.")
        else:
            study = form.save(commit=False)
            study.institution = institution
            design.create_study(
                study, request.user, template=form.cleaned_data["template"], request=request
            )
            messages.success(request, f"Study {study.title} created as a draft.")
            return _back(study)
    return render(
        request,
        "studies/design/form.html",
        {"form": form, "title": "New reader study", "institution": institution},
    )


@coordinator_only
def study_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """The reading design settings of a draft study (changes audited old -> new)."""
    study = _study(request, pk)
    if study.status != Study.Status.DRAFT:
        messages.error(request, "The design can change only while the study is a draft.")
        return _back(study)
    old = design.settings_snapshot(study)
    form = StudyForm(request.POST or None, instance=study)
    if request.method == "POST" and form.is_valid():
        changes = design.update_settings(form.save(commit=False), old, request.user, request)
        messages.success(
            request, f"Saved: {', '.join(changes)}." if changes else "Nothing changed."
        )
        return _back(study)
    return render(
        request,
        "studies/design/form.html",
        {"form": form, "title": f"Design of {study.title}", "study": study},
    )


def _closing_event(study: Study) -> AuditEvent | None:
    return history(study).filter(action="study.close_for_analysis").first()


def _progress_rows(study: Study) -> list[dict]:
    """:func:`study_progress` rows with their session (for the release form) attached."""
    rows = study_progress(study)
    sessions = list(
        ReadingSession.objects.filter(study=study).order_by("reader__username", "index")
    )
    now = timezone.now()
    for row, session in zip(rows, sessions, strict=True):
        row["session_pk"] = session.pk
        row["available"] = session.is_available(now)
        row["released_by"] = session.released_by_id is not None
    return rows


@require_GET
@coordinator_only
def study_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The design page (draft), progress and release (open) or closing record (closed)."""
    study = _study(request, pk)
    context: dict = {
        "study": study,
        "arms": study.arms.select_related("protocol"),
        "study_cases": study.study_cases.select_related("case", "raw_series"),
        "readers": study.study_readers.select_related("reader"),
        "panel": design.panel_members(study),
        "questions": _questions_with_locks(study),
        "panel_form": PanelForm(),
    }
    if study.status == Study.Status.DRAFT:
        try:
            missing = missing_image_sets(study)
        except StudyError as exc:
            missing, context["image_set_error"] = [], str(exc)
        context.update(
            missing=missing,
            arm_form=ArmForm(study=study, initial={"label": design.next_arm_label(study)}),
            case_form=StudyCaseForm(study=study, user=request.user),
            reader_form=ReaderForm(study=study),
            template_form=TemplateForm(),
        )
    elif study.status == Study.Status.OPEN:
        rows = _progress_rows(study)
        context.update(
            progress=rows,
            submitted=sum(r["submitted"] for r in rows),
            total=sum(r["reads"] for r in rows),
            reason_form=ReasonForm(),
        )
    else:
        event = _closing_event(study)
        context.update(
            closing_reason=(event.details or {}).get("reason", "") if event else "",
            unsubmitted=(event.details or {}).get("unsubmitted_reads") if event else None,
            progress=study_progress(study),
        )
    return render(request, "studies/design/detail.html", context)


def _questions_with_locks(study: Study) -> list[Question]:
    questions = list(study.questions.all())
    for q in questions:
        q.locked = is_locked(q)
    return questions


def _apply(request: HttpRequest, study: Study, action, success: str) -> HttpResponse:
    """Run ``action()``; show ``success`` or the refusal as a message; back to the study."""
    try:
        action()
    except (StudyError, ValidationError, IntegrityError) as exc:
        messages.error(request, _refusal(exc))
    else:
        messages.success(request, success)
    return _back(study)


@require_POST
@coordinator_only
def arm_add(request: HttpRequest, pk: int) -> HttpResponse:
    """Add an arm: an exact protocol version under a label, optionally the reference arm."""
    study = _study(request, pk)
    form = ArmForm(request.POST, study=study)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
        return _back(study)
    data = form.cleaned_data
    return _apply(
        request,
        study,
        lambda: design.add_arm(
            study, data["protocol"], data["label"], request.user, data["reference"], request
        ),
        f"Arm {data['label']} added.",
    )


@require_POST
@coordinator_only
def arm_remove(request: HttpRequest, pk: int, arm_pk: int) -> HttpResponse:
    """Remove an arm of a draft study."""
    study = _study(request, pk)
    arm = get_object_or_404(Arm, pk=arm_pk, study=study)
    return _apply(
        request, study, lambda: design.remove_arm(arm, request.user, request), "Arm removed."
    )


@require_POST
@coordinator_only
def reference_arm(request: HttpRequest, pk: int) -> HttpResponse:
    """Make one arm (or none, with an empty ``arm``) the reference arm."""
    study = _study(request, pk)
    arm_pk = (request.POST.get("arm") or "").strip()
    arm = None
    if arm_pk:
        arm = (
            study.arms.filter(pk=int(arm_pk)).first()
            if arm_pk.isascii() and arm_pk.isdigit()
            else None
        )
        if arm is None:
            messages.error(request, "Choose one of the study's arms as the reference arm.")
            return _back(study)
    return _apply(
        request,
        study,
        lambda: design.set_reference_arm(study, arm, request.user, request),
        f"Reference arm: {arm.label if arm else 'none'}.",
    )


@require_POST
@coordinator_only
def case_add(request: HttpRequest, pk: int) -> HttpResponse:
    """Include a visible case (and its chosen raw series) in a draft study."""
    study = _study(request, pk)
    form = StudyCaseForm(request.POST, study=study, user=request.user)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
        return _back(study)
    case = form.cleaned_data["case"]
    return _apply(
        request,
        study,
        lambda: design.add_case(
            study, case, form.cleaned_data["raw_series"], request.user, request
        ),
        f"Case {case.subject_code} added.",
    )


@require_POST
@coordinator_only
def case_remove(request: HttpRequest, pk: int, case_pk: int) -> HttpResponse:
    """Remove a case from a draft study."""
    study = _study(request, pk)
    study_case = get_object_or_404(StudyCase, pk=case_pk, study=study)
    return _apply(
        request,
        study,
        lambda: design.remove_case(study_case, request.user, request),
        "Case removed.",
    )


@require_POST
@coordinator_only
def reader_add(request: HttpRequest, pk: int) -> HttpResponse:
    """Assign a reader-role user to a draft study (grants ``read_study``)."""
    study = _study(request, pk)
    form = ReaderForm(request.POST, study=study)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
        return _back(study)
    reader = form.cleaned_data["reader"]
    return _apply(
        request,
        study,
        lambda: add_reader(study, reader, actor=request.user),
        f"{reader.username} added as a reader.",
    )


@require_POST
@coordinator_only
def reader_remove(request: HttpRequest, pk: int, user_pk: int) -> HttpResponse:
    """Unassign a reader of a draft study (revokes ``read_study``)."""
    study = _study(request, pk)
    reader = get_object_or_404(
        StudyReader.objects.select_related("reader"), study=study, reader_id=user_pk
    ).reader
    return _apply(
        request,
        study,
        lambda: design.remove_reader(study, reader, request.user, request),
        f"{reader.username} removed.",
    )


@require_POST
@coordinator_only
def panel_add(request: HttpRequest, pk: int) -> HttpResponse:
    """Put a radiologist on the reference panel or make them adjudicator."""
    study = _study(request, pk)
    form = PanelForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
        return _back(study)
    member, part = form.cleaned_data["member"], form.cleaned_data["part"]
    return _apply(
        request,
        study,
        lambda: design.grant_panel(study, member, part, request.user, request),
        f"{member.username}: {design.PANEL_PARTS[part][1]}.",
    )


@require_POST
@coordinator_only
def panel_remove(request: HttpRequest, pk: int, user_pk: int, part: str) -> HttpResponse:
    """Take a radiologist off the reference panel or adjudication."""
    study = _study(request, pk)
    if part not in design.PANEL_PARTS:
        return _back(study)
    member = get_object_or_404(get_user_model(), pk=user_pk)
    return _apply(
        request,
        study,
        lambda: design.revoke_panel(study, member, part, request.user, request),
        f"{member.username} is no longer {design.PANEL_PARTS[part][1].lower()}.",
    )


@require_POST
@coordinator_only
def template_apply(request: HttpRequest, pk: int) -> HttpResponse:
    """Add a question template's questions (keys already present are kept)."""
    study = _study(request, pk)
    form = TemplateForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
        return _back(study)
    name = form.cleaned_data["template"]
    try:
        added = design.apply_question_template(study, name, request.user, request)
    except (StudyError, ValidationError) as exc:
        messages.error(request, _refusal(exc))
    else:
        messages.success(request, f"Template {name}: {added} question(s) added.")
    return _back(study)


@coordinator_only
def question_edit(request: HttpRequest, pk: int, question_pk: int | None = None) -> HttpResponse:
    """Add (no ``question_pk``) or change one question of a draft study; locked questions
    are refused."""
    study = _study(request, pk)
    if study.status != Study.Status.DRAFT:
        messages.error(request, "Questions can change only while the study is a draft.")
        return _back(study)
    question = (
        get_object_or_404(Question, pk=question_pk, study=study)
        if question_pk
        else Question(study=study, order=study.questions.count() + 1)
    )
    old = design.question_snapshot(question) if question.pk else None
    form = QuestionForm(request.POST or None, instance=question, study=study)
    if request.method == "POST" and form.is_valid():
        try:
            design.save_question(form.save(commit=False), old, request.user, request)
        except (StudyError, ValidationError) as exc:
            messages.error(request, _refusal(exc))
        else:
            messages.success(request, f"Question {question.key} saved.")
            return _back(study)
    return render(
        request,
        "studies/design/question_form.html",
        {"form": form, "study": study, "question": question if question.pk else None},
    )


@require_POST
@coordinator_only
def question_delete(request: HttpRequest, pk: int, question_pk: int) -> HttpResponse:
    """Delete a question of a draft study (refused once it has answers)."""
    study = _study(request, pk)
    question = get_object_or_404(Question, pk=question_pk, study=study)
    return _apply(
        request,
        study,
        lambda: design.delete_question(question, request.user, request),
        f"Question {question.key} deleted.",
    )


@require_POST
@coordinator_only
def study_open(request: HttpRequest, pk: int) -> HttpResponse:
    """Open a draft study: store every reader's sessions (refused while images are missing)."""
    study = _study(request, pk)
    return _apply(
        request,
        study,
        lambda: open_study(study, request.user),
        "Study opened: readers can start their first session.",
    )


@require_POST
@coordinator_only
def session_release(request: HttpRequest, pk: int, session_pk: int) -> HttpResponse:
    """Release a waiting session before its washout ends, with an audited reason."""
    study = _study(request, pk)
    session = get_object_or_404(ReadingSession, pk=session_pk, study=study)
    form = ReasonForm(request.POST)
    if study.status != Study.Status.OPEN:
        messages.error(request, "Sessions can be released only while the study is open.")
    elif session.completed_at is not None:
        messages.error(request, "That session is already complete.")
    elif not form.is_valid():
        messages.error(request, "Releasing a session early needs a reason.")
    else:
        return _apply(
            request,
            study,
            lambda: release_session(session, request.user, form.cleaned_data["reason"]),
            f"Session {session.index + 1} of {session.reader.username} released now.",
        )
    return _back(study)


@require_POST
@coordinator_only
def study_close(request: HttpRequest, pk: int) -> HttpResponse:
    """Close an open study for analysis (audited unblinding), with a reason."""
    study = _study(request, pk)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Closing a study for analysis needs a reason.")
        return _back(study)
    return _apply(
        request,
        study,
        lambda: close_study(study, request.user, form.cleaned_data["reason"]),
        "Study closed for analysis: arms are unblinded.",
    )
