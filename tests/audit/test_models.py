"""The audit trail is append-only: neither the ORM nor SQL may change or delete a row."""

import pytest
from django.db import DatabaseError, connection, transaction

from mriplatform.audit.models import AuditEvent, AuditImmutableError
from mriplatform.audit.services import history, record


@pytest.fixture
def event(make_user, rf):
    user = make_user()
    request = rf.get("/", REMOTE_ADDR="10.1.2.3", HTTP_USER_AGENT="pytest-agent")
    return record(
        user,
        "case.upload",
        obj=user,
        request=request,
        changes={"status": ["draft", "ready"]},
        details={"files": 3},
    )


def test_record_keeps_who_what_when_where(event):
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.actor_username == event.actor.username
    assert stored.action == "case.upload"
    assert stored.object_id == str(event.actor.pk)
    assert stored.ip_address == "10.1.2.3"
    assert stored.user_agent == "pytest-agent"
    assert stored.changes == {"status": ["draft", "ready"]}
    assert stored.timestamp is not None
    assert list(history(event.actor)) == [stored]


def test_model_save_and_delete_refused(event):
    event.action = "rewritten"
    with pytest.raises(AuditImmutableError):
        event.save()
    with pytest.raises(AuditImmutableError):
        event.delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "case.upload"


def test_queryset_update_and_delete_refused(event):
    with pytest.raises(AuditImmutableError):
        AuditEvent.objects.filter(pk=event.pk).update(action="rewritten")
    with pytest.raises(AuditImmutableError):
        AuditEvent.objects.all().delete()
    with pytest.raises(AuditImmutableError):
        AuditEvent.objects.bulk_update([event], ["action"])
    assert AuditEvent.objects.filter(pk=event.pk, action="case.upload").exists()


def test_database_refuses_update_bypassing_the_model(event):
    # A plain QuerySet (not the audit manager's) goes straight to SQL UPDATE: the
    # database trigger must stop it.
    from django.db.models import QuerySet

    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic():
            QuerySet(AuditEvent).filter(pk=event.pk).update(action="rewritten")
    assert AuditEvent.objects.get(pk=event.pk).action == "case.upload"


def test_database_refuses_delete_bypassing_the_model(event):
    from django.db.models import QuerySet

    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic():
            QuerySet(AuditEvent).filter(pk=event.pk)._raw_delete(connection.alias)
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM audit_auditevent")
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_users_with_history_cannot_be_deleted(event):
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        event.actor.delete()
