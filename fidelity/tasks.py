"""Celery task for fidelity runs (long: the ``recon`` queue); a thin wrapper."""

from __future__ import annotations

from celery import shared_task

from fidelity import services


@shared_task(
    name="fidelity.run",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=6 * 3600,
    time_limit=6 * 3600 + 300,
)
def run_fidelity(run_id: int) -> str:
    """Execute fidelity run ``run_id`` (idempotent: a finished run is left as it is)."""
    return services.execute_run(run_id).status
