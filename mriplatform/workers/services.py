"""Discover live Celery workers and ask each one to probe itself."""

from __future__ import annotations

from celery.utils import worker_direct
from django.utils import timezone

from mriplatform.celery import app
from mriplatform.workers.models import WorkerStatus
from mriplatform.workers.tasks import probe_worker


def refresh_workers(timeout: float = 1.5) -> list[str]:
    """Ping all workers (broadcast), record their queues, and send each a probe task.

    The probe runs on that very worker (its direct queue) and stores the device it
    computes on. Returns the hostnames that answered.
    """
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    now = timezone.now()
    for hostname, queues in replies.items():
        names = sorted(
            q["name"]
            for q in queues
            if not q["name"].endswith(".dq2") and "pidbox" not in q["name"]
        )
        WorkerStatus.objects.update_or_create(
            hostname=hostname, defaults={"queues": names, "last_seen": now}
        )
        probe_worker.apply_async(queue=worker_direct(hostname), expires=60)
    return sorted(replies)


def worker_rows(live: list[str]) -> list[dict]:
    """Rows for the status page: every known worker, marked up when it answered now."""
    rows = []
    for worker in WorkerStatus.objects.all():
        rows.append(
            {
                "hostname": worker.hostname,
                "up": worker.hostname in live,
                "queues": worker.queues,
                "has_gpu": worker.has_gpu,
                "device_name": worker.device.get("name", ""),
                "device": worker.device.get("device", ""),
                "memory_gib": round(worker.device.get("memory_bytes", 0) / 1024**3, 1),
                "torch": worker.device.get("torch", ""),
                "last_seen": worker.last_seen.isoformat() if worker.last_seen else None,
                "probed_at": worker.probed_at.isoformat() if worker.probed_at else None,
            }
        )
    rows.sort(key=lambda r: (not r["up"], r["hostname"]))
    return rows
