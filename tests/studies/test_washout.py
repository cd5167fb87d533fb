"""Washout between sessions and the audited coordinator override."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError

from mriplatform.audit.services import history
from studies.models import Question, ReadingSession
from studies.services import (
    StudyError,
    finish_session,
    release_session,
    save_answer,
    start_read,
    submit_read,
)
from tests.studies.conftest import T0

pytestmark = pytest.mark.django_db


def _complete(session, reader, now):
    Question.objects.get_or_create(
        study=session.study,
        key="overall_quality",
        defaults={"kind": "likert", "label": "Overall quality", "scale_min": 1, "scale_max": 5},
    )
    for item in session.items.all():
        save_answer(item, "overall_quality", 3, None, reader, now=now)
        submit_read(item, reader, now=now)
    return finish_session(session, reader, now=now)


def test_second_session_waits_for_washout_after_completion(open_study_):
    study, _, _, (reader, _) = open_study_
    s1, s2 = ReadingSession.objects.filter(study=study, reader=reader).order_by("index")[:2]
    assert s1.is_available(T0)
    assert not s2.is_available(T0 + timedelta(days=365))  # not before s1 is done
    done = T0 + timedelta(days=2, hours=3)
    _complete(s1, reader, done)
    s2.refresh_from_db()
    assert s2.available_from == done + timedelta(days=study.washout_days)
    before = done + timedelta(days=study.washout_days) - timedelta(seconds=1)
    assert not s2.is_available(before)
    with pytest.raises(StudyError, match="washout"):
        start_read(s2.items.first(), reader, now=before)
    after = done + timedelta(days=study.washout_days)
    assert s2.is_available(after)
    start_read(s2.items.first(), reader, now=after)


def test_session_cannot_finish_with_unsubmitted_reads(open_study_):
    study, _, _, (reader, _) = open_study_
    s1 = ReadingSession.objects.get(study=study, reader=reader, index=0)
    with pytest.raises(StudyError, match="submitted"):
        finish_session(s1, reader, now=T0)


def test_override_needs_a_reason_and_is_audited(open_study_):
    study, _, _, (reader, _) = open_study_
    s1, s2 = ReadingSession.objects.filter(study=study, reader=reader).order_by("index")[:2]
    done = T0 + timedelta(days=1)
    _complete(s1, reader, done)
    for reason in ("", "   "):
        with pytest.raises(ValidationError, match="reason"):
            release_session(s2, study.coordinator, reason, now=done)
    assert not history(s2).exists()
    when = done + timedelta(days=3)
    release_session(s2, study.coordinator, "reader leaves the site next week", now=when)
    s2.refresh_from_db()
    assert s2.is_available(when)
    (event,) = history(s2)
    assert event.action == "study.release_session"
    assert event.actor == study.coordinator
    assert event.details["reason"] == "reader leaves the site next week"
    assert event.changes["available_from"][1] == when.isoformat()
