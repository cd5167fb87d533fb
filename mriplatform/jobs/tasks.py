"""Celery tasks for reconstruction jobs: thin wrappers around :mod:`mriplatform.jobs.services`."""

from __future__ import annotations

from celery import shared_task

from mriplatform.jobs import services


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
