"""Worker-side code: a round-trip task, the probe control command, per-task hygiene."""

from __future__ import annotations

from celery import shared_task
from celery.signals import task_prerun

# Imported for its side effect: registers the probe remote-control command in the worker.
from mriplatform.workers import control  # noqa: F401


@shared_task(name="workers.echo")
def echo(value):
    """Return ``value`` unchanged: a broker/worker/result-backend round trip."""
    return value


@task_prerun.connect(dispatch_uid="workers.fresh_content_types")
def _fresh_content_types(**kwargs) -> None:
    """Forget cached content types before each task.

    A worker lives for days, and Django caches ContentType ids per process: if the table
    is rebuilt meanwhile (``remove_stale_contenttypes``, a test database flush), the
    audit trail would reference ids that no longer exist. One query per model per task
    is a small price.
    """
    from django.contrib.contenttypes.models import ContentType

    ContentType.objects.clear_cache()
