"""The one function every app uses to write to the audit trail."""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models

from mriplatform.audit.models import AuditEvent


def client_ip(request) -> str | None:
    """The client address as Django's request sees it (django-axes resolves proxies)."""
    if request is None:
        return None
    ip = getattr(request, "axes_ip_address", None) or request.META.get("REMOTE_ADDR")
    return ip or None


def record(
    actor,
    action: str,
    obj: models.Model | None = None,
    request=None,
    changes: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event.

    actor: the user acting, or None for the system (e.g. a worker) or anonymous callers.
    action: a dotted verb such as ``auth.login`` or ``case.deidentify``.
    obj: the object acted on; its type, primary key and ``str()`` are kept.
    changes: ``{"field": [old, new]}`` for edits.
    """
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    event = AuditEvent(
        actor=actor,
        actor_username=getattr(actor, "username", "") if actor else "",
        action=action,
        changes=changes or {},
        details=details or {},
        ip_address=client_ip(request),
        user_agent=(request.META.get("HTTP_USER_AGENT", "")[:300] if request else ""),
    )
    if obj is not None:
        event.content_type = ContentType.objects.get_for_model(obj)
        event.object_id = str(obj.pk)
        event.object_repr = str(obj)[:300]
    event.save()
    return event


def history(obj: models.Model):
    """Audit events about ``obj``, newest first."""
    return AuditEvent.objects.filter(
        content_type=ContentType.objects.get_for_model(obj), object_id=str(obj.pk)
    )
