"""Study design services for coordinators: settings, arms, cases, readers, reference panel,
questions. Every change is audited (``changes`` as ``{field: [old, new]}``).

Arms, cases, readers and questions can change only while the study is a draft (the reading
plan is stored when the study opens; changing the form mid-study would mix reads answered to
different questions). A question also locks once answers exist
(:func:`studies.questions.ensure_editable`).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from guardian.shortcuts import assign_perm, get_perms, remove_perm

from mriplatform.accounts.roles import Role
from mriplatform.audit.services import record
from studies.models import Arm, Question, Study, StudyCase, StudyReader
from studies.services import StudyError

# Study fields a coordinator sets on the settings form, audited when they change.
SETTINGS_FIELDS = (
    "title",
    "washout_days",
    "paired_reads",
    "repeat_fraction",
    "repeat_washout_days",
    "allow_edit_until_session_end",
    "window_presets",
)

# Reference-panel parts a coordinator assigns per study: name -> (object permission, label).
PANEL_PARTS: dict[str, tuple[str, str]] = {
    "reference": ("studies.reference_study", "Reference panel"),
    "adjudicator": ("studies.adjudicate_study", "Adjudicator"),
}


def require_draft(study: Study, what: str) -> None:
    """Refuse ``what`` unless ``study`` is a draft (its reading plan is not stored yet)."""
    if study.status != Study.Status.DRAFT:
        raise StudyError(f"{what} only while the study is a draft")


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        return value
    return str(value)


def create_study(study: Study, user, template: str = "", request=None) -> Study:
    """Save a new draft ``study`` coordinated by ``user`` and apply a question template."""
    study.coordinator = user
    study.status = Study.Status.DRAFT
    with transaction.atomic():
        study.save()
        record(
            user,
            "study.create",
            study,
            request=request,
            changes={f: [None, _jsonable(getattr(study, f))] for f in SETTINGS_FIELDS},
            details={"institution": study.institution.code, "template": template or None},
        )
        if template:
            apply_question_template(study, template, user, request=request)
    return study


def update_settings(study: Study, old: dict[str, Any], user, request=None) -> dict[str, list]:
    """Save ``study`` whose settings were ``old`` before the form; audit what changed."""
    require_draft(study, "the design can change")
    changes = {
        f: [_jsonable(old[f]), _jsonable(getattr(study, f))]
        for f in SETTINGS_FIELDS
        if old[f] != getattr(study, f)
    }
    if changes:
        study.save(update_fields=list(changes))
        record(user, "study.update", study, request=request, changes=changes)
    return changes


def settings_snapshot(study: Study) -> dict[str, Any]:
    """The current values of :data:`SETTINGS_FIELDS` (for :func:`update_settings`)."""
    return {f: getattr(study, f) for f in SETTINGS_FIELDS}


@transaction.atomic
def add_arm(study: Study, protocol, label: str, user, reference: bool = False, request=None) -> Arm:
    """Compare ``protocol`` (an exact, immutable version) as arm ``label``."""
    require_draft(study, "arms can be added")
    arm = Arm.objects.create(study=study, protocol=protocol, label=label)
    record(
        user,
        "study.add_arm",
        study,
        request=request,
        changes={f"arm {label}": [None, f"{protocol.name} v{protocol.version}"]},
    )
    if reference:
        set_reference_arm(study, arm, user, request=request)
    return arm


@transaction.atomic
def remove_arm(arm: Arm, user, request=None) -> None:
    study = arm.study
    require_draft(study, "arms can be removed")
    if study.reference_arm_id == arm.pk:
        set_reference_arm(study, None, user, request=request)
    label, protocol = arm.label, arm.protocol
    arm.delete()
    record(
        user,
        "study.remove_arm",
        study,
        request=request,
        changes={f"arm {label}": [f"{protocol.name} v{protocol.version}", None]},
    )


def set_reference_arm(study: Study, arm: Arm | None, user, request=None) -> None:
    """Mark ``arm`` (or none) as the standard-of-care arm that analyses compare to."""
    require_draft(study, "the reference arm can change")
    if arm is not None and arm.study_id != study.pk:
        raise StudyError("that arm belongs to another study")
    old = study.reference_arm.label if study.reference_arm_id else None
    study.reference_arm = arm
    study.save(update_fields=["reference_arm"])
    record(
        user,
        "study.set_reference_arm",
        study,
        request=request,
        changes={"reference_arm": [old, arm.label if arm else None]},
    )


def next_arm_label(study: Study) -> str:
    """The first free label of A, B, ..., Z, then A2, B2, ..."""
    used = set(study.arms.values_list("label", flat=True))
    n = 0
    while True:
        letter, round_ = chr(65 + n % 26), n // 26
        label = letter if round_ == 0 else f"{letter}{round_ + 1}"
        if label not in used:
            return label
        n += 1


@transaction.atomic
def add_case(study: Study, case, raw_series, user, request=None) -> StudyCase:
    """Include ``case`` (reconstructed from ``raw_series``, or its only raw series)."""
    require_draft(study, "cases can be added")
    if raw_series is not None and raw_series.case_id != case.pk:
        raise StudyError("that raw series belongs to another case")
    study_case = StudyCase.objects.create(study=study, case=case, raw_series=raw_series)
    record(
        user,
        "study.add_case",
        study,
        request=request,
        changes={"cases": [None, case.subject_code]},
        details={"raw_series": raw_series.pk if raw_series else None},
    )
    return study_case


@transaction.atomic
def remove_case(study_case: StudyCase, user, request=None) -> None:
    study = study_case.study
    require_draft(study, "cases can be removed")
    code = study_case.case.subject_code
    study_case.delete()
    record(user, "study.remove_case", study, request=request, changes={"cases": [code, None]})


@transaction.atomic
def remove_reader(study: Study, reader, user, request=None) -> None:
    """Unassign ``reader``: the StudyReader row and the ``read_study`` object permission."""
    require_draft(study, "readers can be removed")
    StudyReader.objects.filter(study=study, reader=reader).delete()
    remove_perm("studies.read_study", reader, study)
    record(
        user,
        "study.remove_reader",
        study,
        request=request,
        changes={"readers": [reader.username, None]},
    )


def grant_panel(study: Study, member, part: str, user, request=None) -> None:
    """Put ``member`` (a reader-role user) on the reference panel or make them adjudicator;
    refused for the study's own readers (they must never see the reference)."""
    if study.status == Study.Status.CLOSED:
        raise StudyError("the reference panel cannot change once the study is closed")
    if not member.has_role(Role.READER):
        raise StudyError(f"{member.username} does not hold the reader role")
    from studies.reference import is_study_reader

    if is_study_reader(member, study):
        raise StudyError(
            f"{member.username} reads this study: a reader must never see the reference "
            "standard, so cannot be on its reference panel"
        )
    permission, label = PANEL_PARTS[part]
    assign_perm(permission, member, study)
    record(
        user,
        "study.grant_panel",
        study,
        request=request,
        changes={label: [None, member.username]},
    )


def revoke_panel(study: Study, member, part: str, user, request=None) -> None:
    if study.status == Study.Status.CLOSED:
        raise StudyError("the reference panel cannot change once the study is closed")
    permission, label = PANEL_PARTS[part]
    if permission.split(".", 1)[1] not in get_perms(member, study):
        raise StudyError(f"{member.username} is not {label.lower()} of this study")
    remove_perm(permission, member, study)
    record(
        user,
        "study.revoke_panel",
        study,
        request=request,
        changes={label: [member.username, None]},
    )


def panel_members(study: Study) -> dict[str, list]:
    """Users holding each panel part on ``study``, by part name."""
    from guardian.shortcuts import get_users_with_perms

    holders = get_users_with_perms(
        study, attach_perms=True, with_superusers=False, with_group_users=False
    )
    members: dict[str, list] = {part: [] for part in PANEL_PARTS}
    for member, perms in sorted(holders.items(), key=lambda item: item[0].username):
        for part, (permission, _) in PANEL_PARTS.items():
            if permission.split(".", 1)[1] in perms:
                members[part].append(member)
    return members


def question_changes(question: Question, old: dict[str, Any] | None) -> dict[str, list]:
    """``{field: [old, new]}`` of a question's definition (``old`` None when new)."""
    fields = [f.name for f in Question._meta.concrete_fields if f.name not in ("id", "study")]
    return {
        f: [_jsonable(old[f]) if old else None, _jsonable(getattr(question, f))]
        for f in fields
        if old is None or old[f] != getattr(question, f)
    }


def question_snapshot(question: Question) -> dict[str, Any]:
    fields = [f.name for f in Question._meta.concrete_fields if f.name not in ("id", "study")]
    return {f: getattr(question, f) for f in fields}


def save_question(question: Question, old: dict[str, Any] | None, user, request=None) -> None:
    """Create or change a question of a draft study (refused by the model once it is
    locked); audited."""
    require_draft(question.study, "questions can change")
    with transaction.atomic():
        question.save()
        changes = question_changes(question, old)
        if changes:
            record(
                user,
                "study.add_question" if old is None else "study.change_question",
                question.study,
                request=request,
                changes=changes,
                details={"question": question.key},
            )


def delete_question(question: Question, user, request=None) -> None:
    """Delete a question of a draft study (refused by the model once it is locked);
    audited."""
    study = question.study
    require_draft(study, "questions can be deleted")
    key = question.key
    with transaction.atomic():
        question.delete()
        record(
            user,
            "study.delete_question",
            study,
            request=request,
            changes={"questions": [key, None]},
        )


def apply_question_template(study: Study, name: str, user, request=None) -> int:
    """Add the questions of template ``name`` (those whose keys are new); returns how many."""
    from studies.question_templates import apply_template

    require_draft(study, "templates can be applied")
    added = [q.key for q in apply_template(study, name)]
    record(
        user,
        "study.apply_template",
        study,
        request=request,
        changes={"questions": [None, added]} if added else None,
        details={"template": name},
    )
    return len(added)
