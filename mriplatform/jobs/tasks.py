"""Celery tasks for reconstruction jobs: thin wrappers around :mod:`mriplatform.jobs.services`."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings

from mriplatform.jobs import lease, services

logger = logging.getLogger(__name__)
_reaper: lease.Reaper | None = None


@shared_task(
    bind=True,
    name="jobs.reconstruct",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(ConnectionError,),
    retry_backoff=True,
    max_retries=3,
    soft_time_limit=3 * 3600,
    time_limit=3 * 3600 + 300,
)
def reconstruct(self, job_id: int) -> str:
    """Run job ``job_id`` (idempotent: a finished job is left as it is)."""
    return services.run_job(job_id, worker=self.request.hostname or "")


@worker_ready.connect
def start_lease_keeping(**kwargs) -> None:
    """When a worker starts: remove stale attempt scratch folders (input copies of killed
    attempts) and start the thread that fails jobs whose worker was lost."""
    global _reaper
    if _reaper is None:
        _reaper = lease.Reaper()
        _reaper.start()
    try:
        removed = lease.clean_stale_scratch()
    except Exception:  # noqa: BLE001 - a worker must start even if cleaning fails
        logger.exception("could not clean the job scratch folder %s", settings.JOB_SCRATCH_DIR)
        return
    logger.info("job scratch: %d stale attempt folder(s) removed", len(removed))


@worker_shutdown.connect
def stop_lease_keeping(**kwargs) -> None:
    if _reaper is not None:
        _reaper.stopped.set()
