"""Discover live Celery workers and what each one computes on."""

from __future__ import annotations

from django.utils import timezone

from mriplatform.celery import app
from mriplatform.workers.control import PROBE_COMMAND
from mriplatform.workers.models import WorkerStatus


def refresh_workers(timeout: float = 1.5) -> dict[str, dict]:
    """Broadcast the probe command, record every answer, return ``{hostname: answer}``.

    One broadcast, answered from each worker's consumer (not its pool), so a worker busy
    reconstructing answers too; ``active_tasks`` says how busy it is.
    """
    replies = app.control.broadcast(PROBE_COMMAND, reply=True, timeout=timeout) or []
    now = timezone.now()
    live: dict[str, dict] = {}
    for reply in replies:
        for hostname, answer in reply.items():
            if not isinstance(answer, dict) or "device" not in answer:
                continue  # an old worker without the command answers with an error
            live[hostname] = answer
            defaults = {"queues": answer["queues"], "last_seen": now}
            if answer["device"]:  # empty while the worker is still learning its device
                defaults.update(device=answer["device"], software=answer["software"])
                defaults["probed_at"] = now
            WorkerStatus.objects.update_or_create(hostname=hostname, defaults=defaults)
    return live


def worker_rows(live: dict[str, dict]) -> list[dict]:
    """Rows for the status page: every known worker, marked up when it answered now.

    ``seconds_since_seen`` lets the page say how old a silent worker's information is.
    """
    now = timezone.now()
    rows = []
    for worker in WorkerStatus.objects.all():
        answer = live.get(worker.hostname)
        rows.append(
            {
                "hostname": worker.hostname,
                "up": answer is not None,
                "active_tasks": answer["active_tasks"] if answer else None,
                "queues": worker.queues,
                "has_gpu": worker.has_gpu,
                "device_name": worker.device.get("name", ""),
                "device": worker.device.get("device", ""),
                "memory_gib": round(worker.device.get("memory_bytes", 0) / 1024**3, 1),
                "torch": worker.device.get("torch", ""),
                "last_seen": worker.last_seen.isoformat() if worker.last_seen else None,
                "seconds_since_seen": (
                    round((now - worker.last_seen).total_seconds()) if worker.last_seen else None
                ),
            }
        )
    rows.sort(key=lambda r: (not r["up"], r["hostname"]))
    return rows
