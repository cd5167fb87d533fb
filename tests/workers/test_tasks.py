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
def test_probe_reports_the_worker_device_in_one_broadcast(celery_worker_process):
    import time

    deadline = time.monotonic() + 60  # the worker learns its device in a child process
    while True:
        live = refresh_workers(timeout=3)
        assert celery_worker_process in live
        status = WorkerStatus.objects.get(hostname=celery_worker_process)
        if status.probed_at is not None or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert status.probed_at is not None and status.last_seen == status.probed_at
    assert set(status.queues) >= {"recon", "default"}
    assert status.device["device"] == "cpu"  # RECON_DEVICE=cpu in the test environment
    assert status.device["torch"]
    row = next(r for r in worker_rows(live) if r["hostname"] == celery_worker_process)
    assert row["up"] and not row["has_gpu"] and row["active_tasks"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_silent_worker_is_shown_with_the_age_of_its_last_answer():
    from datetime import timedelta

    from django.utils import timezone

    WorkerStatus.objects.create(
        hostname="gone@elsewhere", last_seen=timezone.now() - timedelta(seconds=90)
    )
    row = next(r for r in worker_rows({}) if r["hostname"] == "gone@elsewhere")
    assert not row["up"] and row["active_tasks"] is None
    assert 89 <= row["seconds_since_seen"] <= 95
