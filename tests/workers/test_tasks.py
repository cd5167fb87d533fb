"""Celery round trips through a real worker process (Redis in CI), not eager mode."""

import pytest

from mriplatform.workers.models import WorkerStatus
from mriplatform.workers.services import refresh_workers, worker_rows
from mriplatform.workers.tasks import echo


def test_round_trip_through_a_real_worker(celery_worker_process):
    from mriplatform.celery import app

    assert not app.conf.task_always_eager
    result = echo.apply_async(args=[{"value": [1, 2, 3]}], queue="default")
    assert result.get(timeout=60) == {"value": [1, 2, 3]}
    assert result.successful()


def test_recon_queue_is_served(celery_worker_process):
    assert echo.apply_async(args=["recon"], queue="recon").get(timeout=60) == "recon"


@pytest.mark.django_db(transaction=True)
def test_probe_reports_the_worker_device(celery_worker_process):
    import time

    live = refresh_workers(timeout=3)
    assert celery_worker_process in live
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = WorkerStatus.objects.filter(hostname=celery_worker_process).first()
        if status and status.probed_at:
            break
        time.sleep(0.5)
    assert status.probed_at is not None
    assert set(status.queues) >= {"recon", "default"}
    assert status.device["device"] == "cpu"  # RECON_DEVICE=cpu in the test environment
    assert status.device["torch"]
    row = next(r for r in worker_rows(live) if r["hostname"] == celery_worker_process)
    assert row["up"] and not row["has_gpu"]
