"""Answers with append-only history, submission rules and idempotent submit."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.db.models import QuerySet

from studies.models import (
    Answer,
    AnswerHistory,
    HistoryImmutableError,
    Question,
    ReadingSession,
)
from studies.services import StudyError, finish_session, save_answer, submit_read
from tests.studies.conftest import T0

pytestmark = pytest.mark.django_db


@pytest.fixture
def first_item(open_study_):
    study, _, _, (reader, other) = open_study_
    session = ReadingSession.objects.get(study=study, reader=reader, index=0)
    Question.objects.create(
        study=study,
        key="q",
        kind="likert",
        label="Quality",
        scale_min=1,
        scale_max=5,
        required=False,
    )
    Question.objects.create(
        study=study,
        key="meniscal_tear",
        kind="finding",
        label="Meniscal tear",
        choices=["absent", "present"],
        with_confidence=True,
        required=False,
    )
    return session.items.first(), reader, other


def test_save_answer_writes_value_and_history(first_item):
    item, reader, _ = first_item
    save_answer(item, "meniscal_tear", "present", 4, reader, now=T0 + timedelta(seconds=5))
    answer = save_answer(item, "meniscal_tear", "absent", 2, reader, now=T0 + timedelta(seconds=9))
    stored = Answer.objects.get(pk=answer.pk)
    assert (stored.value, stored.confidence) == ("absent", 2)
    rows = list(AnswerHistory.objects.filter(answer=answer))
    assert [(h.old_value, h.new_value) for h in rows] == [(None, "present"), ("present", "absent")]
    assert [(h.old_confidence, h.new_confidence) for h in rows] == [(None, 4), (4, 2)]
    assert all(h.user == reader for h in rows)
    assert rows[1].timestamp == T0 + timedelta(seconds=9)


def test_other_reader_cannot_answer(first_item):
    item, _, other = first_item
    with pytest.raises(StudyError, match="another reader"):
        save_answer(item, "q", 1, None, other, now=T0)
    with pytest.raises(StudyError, match="another reader"):
        submit_read(item, other, now=T0)


def test_history_model_and_queryset_refuse_changes(first_item):
    item, reader, _ = first_item
    save_answer(item, "q", 1, None, reader, now=T0)
    row = AnswerHistory.objects.get()
    row.new_value = 5
    with pytest.raises(HistoryImmutableError):
        row.save()
    with pytest.raises(HistoryImmutableError):
        row.delete()
    with pytest.raises(HistoryImmutableError):
        AnswerHistory.objects.filter(pk=row.pk).update(new_value=5)
    with pytest.raises(HistoryImmutableError):
        AnswerHistory.objects.all().delete()
    assert AnswerHistory.objects.get().new_value == 1


def test_database_trigger_refuses_update_and_delete(first_item):
    item, reader, _ = first_item
    save_answer(item, "q", 1, None, reader, now=T0)
    plain = QuerySet(model=AnswerHistory)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        plain.update(new_value=5)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        plain.filter(pk__gt=0)._raw_delete(plain.db)
    assert AnswerHistory.objects.get().new_value == 1


def test_double_submit_is_idempotent_and_records_time_on_case(first_item):
    item, reader, _ = first_item
    save_answer(item, "q", 1, None, reader, now=T0 + timedelta(seconds=10))
    first = submit_read(item, reader, now=T0 + timedelta(seconds=75))
    second = submit_read(item, reader, now=T0 + timedelta(seconds=500))
    assert first.pk == second.pk
    assert second.submitted_at == T0 + timedelta(seconds=75)
    assert second.time_on_case_s == pytest.approx(65.0)
    item.refresh_from_db()
    assert item.submitted_at == T0 + timedelta(seconds=75)


def test_edit_after_submit_refused_by_default(first_item):
    item, reader, _ = first_item
    save_answer(item, "q", 1, None, reader, now=T0)
    submit_read(item, reader, now=T0)
    with pytest.raises(StudyError, match="submitted"):
        save_answer(item, "q", 2, None, reader, now=T0)
    assert Answer.objects.get().value == 1
    assert AnswerHistory.objects.count() == 1


def test_edit_until_session_end_when_allowed(first_item):
    item, reader, _ = first_item
    study = item.session.study
    study.allow_edit_until_session_end = True
    study.save()
    save_answer(item, "q", 1, None, reader, now=T0)
    submit_read(item, reader, now=T0)
    save_answer(item, "q", 2, None, reader, now=T0 + timedelta(minutes=1))
    assert Answer.objects.get().value == 2
    for other in item.session.items.exclude(pk=item.pk):
        submit_read(other, reader, now=T0 + timedelta(minutes=2))
    finish_session(item.session, reader, now=T0 + timedelta(minutes=3))
    with pytest.raises(StudyError, match="submitted"):
        save_answer(item, "q", 3, None, reader, now=T0 + timedelta(minutes=4))
    assert Answer.objects.get().value == 2


def test_required_answer_cannot_be_cleared_after_submit_and_finish_rechecks(first_item):
    item, reader, _ = first_item
    study = item.session.study
    study.allow_edit_until_session_end = True
    study.save()
    Question.objects.filter(study=study, key="q").update(required=True)
    save_answer(item, "q", 3, None, reader, now=T0)
    submit_read(item, reader, now=T0)
    with pytest.raises(ValidationError, match="required"):
        save_answer(item, "q", None, None, reader, now=T0 + timedelta(minutes=1))
    assert Answer.objects.get(read_item=item, question="q").value == 3
    save_answer(item, "meniscal_tear", None, None, reader, now=T0)  # optional: may be cleared
    for other in item.session.items.exclude(pk=item.pk):
        save_answer(other, "q", 2, None, reader, now=T0)
        submit_read(other, reader, now=T0 + timedelta(minutes=2))
    # An answer lost another way (stored before this rule) still blocks finishing.
    Answer.objects.filter(read_item=item, question="q").update(value=None)
    with pytest.raises(StudyError, match="required"):
        finish_session(item.session, reader, now=T0 + timedelta(minutes=3))
    item.session.refresh_from_db()
    assert item.session.completed_at is None
    Answer.objects.filter(read_item=item, question="q").update(value=4)
    finish_session(item.session, reader, now=T0 + timedelta(minutes=3))
    item.session.refresh_from_db()
    assert item.session.completed_at is not None
