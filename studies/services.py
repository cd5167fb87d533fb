"""Study domain services: opening (image-set check and reading plan), washout, answers.

Views stay thin and call these. Every function that depends on the time takes ``now``.
"""

from __future__ import annotations

import itertools
import logging
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from guardian.shortcuts import assign_perm

from mriplatform.audit.services import record
from mriplatform.jobs.models import ReconJob
from studies.models import (
    Answer,
    AnswerHistory,
    Arm,
    ReadingSession,
    ReadItem,
    Study,
    StudyCase,
    StudyReader,
    new_alias,
)
from studies.questions import missing_required, questions_for, validate_answer

logger = logging.getLogger(__name__)

# Stream tag for the per-reader plan generator (arm rotation and repeat subset); session
# orders use [seed, reader.pk, session_index] with session_index < 2**20, so no clash.
PLAN_STREAM = 2**31 - 1


class StudyError(Exception):
    """A study operation that the study's state does not allow."""


def add_reader(study: Study, user, actor=None) -> StudyReader:
    """Assign a reader (role ``reader``) and grant the object permission ``studies.read_study``.

    Blinding: a reader must hold no other role (coordinators and site admins see every
    case, job and protocol; statisticians see unblinded results), must not be a superuser,
    the study's coordinator, or on the study's reference panel (has seen the reference).
    """
    from guardian.shortcuts import get_perms

    from mriplatform.accounts.roles import Role

    if not user.has_role(Role.READER):
        raise StudyError(f"{user.username} does not hold the reader role")
    if study.status != Study.Status.DRAFT:
        raise StudyError("readers can only be added while the study is a draft")
    blinded = "a reader must stay blinded: use a separate reader-only account"
    if user.is_superuser:
        raise StudyError(f"{user.username} is a superuser and sees everything; {blinded}")
    if study.coordinator_id == user.pk:
        raise StudyError(f"{user.username} coordinates this study; {blinded}")
    other_roles = {
        Role.COORDINATOR: "coordinator",
        Role.SITE_ADMIN: "site administrator",
        Role.STATISTICIAN: "statistician",
    }
    for role, name in other_roles.items():
        if user.has_role(role):
            raise StudyError(
                f"{user.username} is also a {name} (sees cases, jobs, protocols or results "
                f"unblinded); {blinded}"
            )
    if {"reference_study", "adjudicate_study"} & set(get_perms(user, study)):
        raise StudyError(
            f"{user.username} is on this study's reference panel (has seen the reference "
            f"standard); {blinded}"
        )
    reader, _ = StudyReader.objects.get_or_create(study=study, reader=user)
    assign_perm("studies.read_study", user, study)
    record(actor, "study.add_reader", study, details={"reader": user.username})
    return reader


def image_set(study_case: StudyCase, arm: Arm):
    """The output Series of the succeeded ReconJob of (the case's raw series, the arm's
    protocol version), or None when there is none yet."""
    jobs = ReconJob.objects.filter(
        protocol=arm.protocol,
        status=ReconJob.Status.SUCCEEDED,
        output_series__isnull=False,
        input_series__case=study_case.case,
    )
    if study_case.raw_series_id is not None:
        jobs = jobs.filter(input_series=study_case.raw_series)
    found = list(jobs.select_related("output_series")[:2])
    if len(found) > 1:
        raise StudyError(
            f"case {study_case.case.subject_code} has several reconstructions with "
            f"arm {arm.label}; choose the raw series on the study case"
        )
    return found[0].output_series if found else None


def missing_image_sets(study: Study) -> list[tuple[str, str]]:
    """(subject code, arm label) of every (case, arm) without a finished reconstruction."""
    arms = list(study.arms.select_related("protocol"))
    missing = []
    for sc in study.study_cases.select_related("case", "raw_series"):
        for arm in arms:
            if image_set(sc, arm) is None:
                missing.append((sc.case.subject_code, arm.label))
    return missing


def _order(study_seed: int, reader_pk: int, session_index: int, n: int) -> np.ndarray:
    return np.random.default_rng([study_seed, reader_pk, session_index]).permutation(n)


def reading_plan(study: Study, reader_pk: int) -> list[dict[str, Any]]:
    """The sessions of one reader as a list of ``{"index", "kind", "reads"}``; each read is
    ``(study_case_pk, arm_pk, second_arm_pk | None, kind, read_index)`` in reading order.

    Algorithm (deterministic given ``study.seed`` and the reader's pk):

    * Cases are sorted by StudyCase pk (c = 0..N-1), arms by Arm pk (a = 0..A-1).
    * ``g = numpy.random.default_rng([seed, reader_pk, PLAN_STREAM])``;
      ``offset = g.integers(A)``.
    * Independent sessions s = 0..A-1 (Latin square over arms): case c is read under arm
      ``(c + s + offset) % A``. Each session holds each case once, arms balanced to within
      one read, and over the A sessions every (case, arm) is read exactly once.
    * Repeats: ``k = round(repeat_fraction * N * A)`` pairs ``g.choice(N*A, k,
      replace=False)`` of the sorted (c, a) list (index ``c * A + a``); a pair first read in
      session s is repeated in repeat session ``A + s`` (empty repeat sessions are dropped
      and the rest renumbered consecutively), so a repeat always comes after its original
      and no repeat session holds a case twice.
    * Paired reads (when enabled): for each arm pair p = (i, j), i < j, in
      ``itertools.combinations`` order, one paired session holds every case once; the
      left/right order of each pair is ``g.integers(2)`` per (case, pair) drawn in case order.
    * Order within session with final index ``k``: the reads are listed in case order and
      permuted by ``numpy.random.default_rng([seed, reader_pk, k]).permutation(n)``.
    """
    cases = list(study.study_cases.order_by("pk").values_list("pk", flat=True))
    arms = list(study.arms.order_by("pk").values_list("pk", flat=True))
    n, a = len(cases), len(arms)
    if n == 0 or a == 0:
        raise StudyError("a study needs at least one case and one arm")
    g = np.random.default_rng([study.seed, reader_pk, PLAN_STREAM])
    offset = int(g.integers(a))
    sessions: list[tuple[str, list]] = []
    session_of = {}
    for s in range(a):
        reads = []
        for c in range(n):
            arm = (c + s + offset) % a
            session_of[(c, arm)] = s
            reads.append((cases[c], arms[arm], None, ReadItem.Kind.INDEPENDENT, 0))
        sessions.append((ReadingSession.Kind.INDEPENDENT, reads))
    k = int(round(study.repeat_fraction * n * a))
    if k:
        chosen = sorted(int(i) for i in g.choice(n * a, size=k, replace=False))
        repeat_sessions: list[list] = [[] for _ in range(a)]
        for i in chosen:
            c, arm = divmod(i, a)
            repeat_sessions[session_of[(c, arm)]].append(
                (cases[c], arms[arm], None, ReadItem.Kind.REPEAT, 1)
            )
        sessions += [(ReadingSession.Kind.REPEAT, r) for r in repeat_sessions if r]
    if study.paired_reads and a > 1:
        for i, j in itertools.combinations(range(a), 2):
            reads = []
            for c in range(n):
                left, right = (i, j) if int(g.integers(2)) == 0 else (j, i)
                reads.append((cases[c], arms[left], arms[right], ReadItem.Kind.PAIRED, 0))
            sessions.append((ReadingSession.Kind.PAIRED, reads))
    plan = []
    for index, (kind, reads) in enumerate(sessions):
        order = _order(study.seed, reader_pk, index, len(reads))
        plan.append({"index": index, "kind": kind, "reads": [reads[int(o)] for o in order]})
    return plan


@transaction.atomic
def open_study(study: Study, user, now: datetime | None = None) -> Study:
    """Check every (case, arm) has its reconstruction, then store each reader's plan.

    Raises :class:`StudyError` listing the missing reconstructions.
    """
    now = now or timezone.now()
    study = Study.objects.select_for_update().get(pk=study.pk)
    if study.status != Study.Status.DRAFT:
        raise StudyError(f"study is {study.get_status_display().lower()}, not a draft")
    readers = list(study.study_readers.select_related("reader"))
    if not readers:
        raise StudyError("a study needs at least one reader")
    missing = missing_image_sets(study)
    if missing:
        listed = ", ".join(f"{code} / arm {label}" for code, label in missing)
        raise StudyError(f"missing finished reconstructions for: {listed}")
    # Pin each (case, arm) to its reconstruction now: a later job on the same case must not
    # change what a reader sees mid-study (or make the image set ambiguous).
    pinned = {
        (sc.pk, arm.pk): image_set(sc, arm).pk
        for sc in study.study_cases.select_related("case", "raw_series")
        for arm in study.arms.select_related("protocol")
    }
    for sr in readers:
        previous_kind = None
        for session in reading_plan(study, sr.reader_id):
            washout = 0
            if session["index"] > 0:
                washout = (
                    study.repeat_washout_days
                    if session["kind"] == ReadingSession.Kind.REPEAT
                    and previous_kind != ReadingSession.Kind.REPEAT
                    else study.washout_days
                )
            obj = ReadingSession.objects.create(
                study=study,
                reader=sr.reader,
                index=session["index"],
                kind=session["kind"],
                washout_days=washout,
                available_from=now if session["index"] == 0 else None,
            )
            previous_kind = session["kind"]
            ReadItem.objects.bulk_create(
                ReadItem(
                    session=obj,
                    reader=sr.reader,
                    order_index=i,
                    study_case_id=case_pk,
                    arm_id=arm_pk,
                    second_arm_id=second_pk,
                    kind=kind,
                    read_index=read_index,
                    alias=new_alias(),
                    second_alias=new_alias() if second_pk else None,
                    image_series_id=pinned[(case_pk, arm_pk)],
                    second_image_series_id=pinned[(case_pk, second_pk)] if second_pk else None,
                )
                for i, (case_pk, arm_pk, second_pk, kind, read_index) in enumerate(session["reads"])
            )
    study.status = Study.Status.OPEN
    study.opened = now
    study.save(update_fields=["status", "opened"])
    record(user, "study.open", study, details={"readers": len(readers)})
    study_pk = study.pk
    transaction.on_commit(lambda: _prepare_display(study_pk))
    return study


def _prepare_display(study_id: int) -> None:
    """Ask a worker to blind and store the opened study's image sets now, so no reader waits
    for it on a first request; a broker outage only defers it to those first requests."""
    from studies.tasks import build_blinded_display

    try:
        build_blinded_display.delay(study_id)
    except Exception:  # kombu/redis/OS errors: whatever the broker transport raises
        logger.warning("could not queue the blinded display of study %s", study_id, exc_info=True)


def _next_session(session: ReadingSession) -> ReadingSession | None:
    return ReadingSession.objects.filter(
        study=session.study_id, reader=session.reader_id, index=session.index + 1
    ).first()


@transaction.atomic
def finish_session(session: ReadingSession, user, now: datetime | None = None) -> ReadingSession:
    """Mark a session complete (all reads submitted); the next opens after its washout."""
    now = now or timezone.now()
    session = ReadingSession.objects.select_for_update().get(pk=session.pk)
    if user.pk != session.reader_id:
        raise StudyError("only the session's reader can finish it")
    if session.completed_at is not None:
        return session
    if session.items.filter(submitted_at__isnull=True).exists():
        raise StudyError("every read of the session must be submitted first")
    incomplete = [
        k + 1
        for k, item in enumerate(session.items.select_related("session").order_by("order_index"))
        if missing_required(item)
    ]
    if incomplete:
        cases = ", ".join(str(k) for k in incomplete)
        raise StudyError(f"answer every required question first (case {cases} of the session)")
    session.completed_at = now
    session.save(update_fields=["completed_at"])
    following = _next_session(session)
    if following is not None and following.available_from is None:
        following.available_from = now + timedelta(days=following.washout_days)
        following.save(update_fields=["available_from"])
    return session


@transaction.atomic
def release_session(
    session: ReadingSession, user, reason: str, now: datetime | None = None
) -> ReadingSession:
    """Coordinator override: make ``session`` available now, before its washout ends."""
    now = now or timezone.now()
    if not reason or not reason.strip():
        raise ValidationError("releasing a session early needs a reason")
    session = ReadingSession.objects.select_for_update().get(pk=session.pk)
    old = session.available_from
    session.available_from = now
    session.released_by = user
    session.release_reason = reason.strip()
    session.save(update_fields=["available_from", "released_by", "release_reason"])
    record(
        user,
        "study.release_session",
        session,
        changes={"available_from": [old.isoformat() if old else None, now.isoformat()]},
        details={"reason": session.release_reason, "reader_id": session.reader_id},
    )
    return session


def read_images(item: ReadItem) -> list:
    """The image-set Series of the read, left then right: those pinned when the study opened
    (:attr:`ReadItem.image_series`), else (reads opened before pinning) the arm's current
    reconstruction; an entry is None when no image set exists."""
    sides = [(item.image_series_id, item.arm, "image_series")]
    if item.second_arm_id is not None:
        sides.append((item.second_image_series_id, item.second_arm, "second_image_series"))
    return [
        getattr(item, field) if pinned is not None else image_set(item.study_case, arm)
        for pinned, arm, field in sides
    ]


def read_has_images(item: ReadItem) -> bool:
    """Whether every image set of the read exists and holds at least one instance."""
    try:
        found = read_images(item)
    except StudyError:
        return False
    return all(series is not None and series.instances.exists() for series in found)


def _check_reader(item: ReadItem, user, now: datetime) -> None:
    if user.pk != item.reader_id:
        raise StudyError("this read belongs to another reader")
    if item.session.study.status != Study.Status.OPEN:
        raise StudyError("the study is not open for reading")
    if not item.session.is_available(now):
        raise StudyError("this session is not available yet (washout)")


def start_read(item: ReadItem, user, now: datetime | None = None) -> ReadItem:
    """Record when the reader first opened the read (start of time on case)."""
    now = now or timezone.now()
    _check_reader(item, user, now)
    if item.started_at is None:
        ReadItem.objects.filter(pk=item.pk, started_at__isnull=True).update(started_at=now)
        item.refresh_from_db()
    return item


@transaction.atomic
def save_answer(
    item: ReadItem,
    question: str,
    value: Any,
    confidence: int | None,
    user,
    now: datetime | None = None,
) -> Answer:
    """Create or change one answer and append its history row, in one transaction.

    After submission, editing is refused unless the study allows edits until the session
    ends and the session is not finished. The value is checked and normalised by
    :func:`studies.questions.validate_answer` (``None`` clears it); a key the read does not
    ask raises ValidationError.
    """
    now = now or timezone.now()
    item = ReadItem.objects.select_for_update().select_related("session__study").get(pk=item.pk)
    _check_reader(item, user, now)
    if item.submitted_at is not None and not (
        item.session.study.allow_edit_until_session_end and item.session.completed_at is None
    ):
        raise StudyError("this read has been submitted; its answers can no longer change")
    question_obj = next((q for q in questions_for(item) if q.key == question), None)
    if question_obj is None:
        raise ValidationError(f"this read has no question “{question}”")
    value, confidence = validate_answer(question_obj, value, confidence, item=item)
    if value is None and question_obj.required and item.submitted_at is not None:
        raise ValidationError(
            f"“{question_obj.label}” is required: a submitted read cannot leave it unanswered"
        )
    if item.started_at is None:
        item.started_at = now
        item.save(update_fields=["started_at"])
    answer = Answer.objects.filter(read_item=item, question=question).first()
    old_value, old_conf = (answer.value, answer.confidence) if answer else (None, None)
    if answer is None:
        answer = Answer(read_item=item, question=question)
    answer.value, answer.confidence, answer.updated = value, confidence, now
    answer.save()
    AnswerHistory.objects.create(
        answer=answer,
        old_value=old_value,
        new_value=value,
        old_confidence=old_conf,
        new_confidence=confidence,
        user=user,
        timestamp=now,
    )
    return answer


@transaction.atomic
def submit_read(item: ReadItem, user, now: datetime | None = None) -> ReadItem:
    """Submit a read once; time on case = submission - start. A second call is a no-op.

    Refused (StudyError listing their labels) while required questions are unanswered."""
    now = now or timezone.now()
    item = ReadItem.objects.select_for_update().select_related("session__study").get(pk=item.pk)
    if user.pk != item.reader_id:
        raise StudyError("this read belongs to another reader")
    if item.submitted_at is not None:
        return item
    _check_reader(item, user, now)
    missing = missing_required(item)
    if missing:
        labels = "; ".join(q.label for q in missing)
        raise StudyError(f"answer every required question first: {labels}")
    started = item.started_at or now
    item.started_at = started
    item.submitted_at = now
    item.time_on_case_s = (now - started).total_seconds()
    item.save(update_fields=["started_at", "submitted_at", "time_on_case_s"])
    return item


@transaction.atomic
def close_study(study: Study, user, reason: str, now: datetime | None = None) -> Study:
    """Close an open study for analysis: reading stops and the arms are unblinded to the
    coordinator and statisticians. Audited with the reason and the reads left unsubmitted."""
    now = now or timezone.now()
    if not reason or not reason.strip():
        raise ValidationError("closing a study for analysis needs a reason")
    study = Study.objects.select_for_update().get(pk=study.pk)
    if study.status != Study.Status.OPEN:
        raise StudyError(f"study is {study.get_status_display().lower()}, not open")
    unsubmitted = ReadItem.objects.filter(session__study=study, submitted_at__isnull=True).count()
    study.status = Study.Status.CLOSED
    study.closed = now
    study.closed_by = user
    study.save(update_fields=["status", "closed", "closed_by"])
    record(
        user,
        "study.close_for_analysis",
        study,
        changes={"status": [Study.Status.OPEN, Study.Status.CLOSED]},
        details={"reason": reason.strip(), "unsubmitted_reads": unsubmitted},
    )
    return study


def study_progress(study: Study) -> list[dict[str, Any]]:
    """Counts per reader and session (never answers): reads total and submitted, status."""
    rows = (
        ReadingSession.objects.filter(study=study)
        .annotate(
            total=Count("items"),
            submitted=Count("items", filter=Q(items__submitted_at__isnull=False)),
        )
        .select_related("reader")
        .order_by("reader__username", "index")
    )
    return [
        {
            "reader": s.reader.username,
            "session": s.index + 1,
            "kind": s.kind,
            "reads": s.total,
            "submitted": s.submitted,
            "available_from": s.available_from,
            "completed": s.completed_at is not None,
        }
        for s in rows
    ]
