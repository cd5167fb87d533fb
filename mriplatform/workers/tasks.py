"""Tasks run on every worker to report what it is and what it can compute on."""

from __future__ import annotations

import platform as std_platform
import socket

from celery import shared_task
from celery.signals import task_prerun
from django.utils import timezone

from mriplatform.workers.models import WorkerStatus


@shared_task(bind=True, name="workers.probe_worker", acks_late=False)
def probe_worker(self) -> dict:
    """Report this worker's compute device (torch CUDA/CPU) and software; store it."""
    import recon_engine
    from recon_engine.device import describe_device

    hostname = self.request.hostname or socket.gethostname()
    device = describe_device()
    software = {
        "python": std_platform.python_version(),
        "engine": recon_engine.__version__,
        "host": socket.gethostname(),
    }
    WorkerStatus.objects.update_or_create(
        hostname=hostname,
        defaults={"device": device, "software": software, "probed_at": timezone.now()},
    )
    return {"hostname": hostname, "device": device, "software": software}


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
