"""Leases of running reconstruction jobs: heartbeat, reaper of lost workers, scratch cleanup.

A running attempt renews ``ReconJob.heartbeat_at`` every ``JOB_HEARTBEAT_SECONDS`` from
a daemon thread (and with every progress update). A worker that dies with its process
group (SIGKILL, power loss, out of memory) stops beating; :func:`reap_lost_jobs`, run
periodically by every worker and whenever the job pages or the API list jobs, marks a
running job whose heartbeat is older than ``JOB_LEASE_SECONDS`` as failed ("worker
lost"), which the user can retry. This does not depend on the broker redelivering the
task: the filesystem broker loses a message whose worker died, Redis holds it back for
its visibility timeout.

Attempts copy their input under ``JOB_SCRATCH_DIR/job-<id>-attempt-<n>-<random>``; the
heartbeat touches that folder, and :func:`clean_stale_scratch` (run when a worker starts)
removes the folders nobody touched for a whole lease.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connections
from django.db.models import Q
from django.utils import timezone

from mriplatform.audit.services import record
from mriplatform.jobs.models import ReconJob

logger = logging.getLogger(__name__)

SCRATCH_NAME = re.compile(r"^job-(\d+)-attempt-(\d+)-\w+$")


def owner_label(worker: str, attempt: int) -> str:
    """Who holds a lease: worker name, host, process id and attempt number."""
    host = socket.gethostname()
    return f"{worker or 'unnamed worker'} on {host} pid {os.getpid()} attempt {attempt}"


@contextmanager
def attempt_scratch(job_id: int, attempt: int) -> Iterator[Path]:
    """A new local folder for one attempt's temporary files (input copy, volume before
    upload), ``JOB_SCRATCH_DIR/job-<id>-attempt-<n>-<random>``, removed afterwards. The
    random part keeps installations that share a temporary folder apart."""
    root = Path(settings.JOB_SCRATCH_DIR)
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"job-{job_id}-attempt-{attempt}-", dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Heartbeat:
    """Context manager: renew the lease of attempt ``attempt`` of job ``job_id`` every
    ``interval`` seconds (default ``JOB_HEARTBEAT_SECONDS``) from a daemon thread, and touch
    the attempt's scratch ``folder``. Only the job's current running attempt is renewed, so
    a zombie attempt can't keep a newer attempt's lease, nor a reaped job's, alive."""

    def __init__(
        self, job_id: int, attempt: int, folder: Path | None = None, interval: float | None = None
    ):
        self.job_id = job_id
        self.attempt = attempt
        self.folder = folder
        self.interval = float(interval or settings.JOB_HEARTBEAT_SECONDS)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-job-{job_id}", daemon=True
        )

    def beat(self) -> bool:
        """Renew the lease now; False when this attempt no longer holds the job."""
        if self.folder is not None and self.folder.is_dir():
            os.utime(self.folder)
        return bool(
            ReconJob.objects.filter(
                pk=self.job_id, attempts=self.attempt, status=ReconJob.Status.RUNNING
            ).update(heartbeat_at=timezone.now())
        )

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.beat()
                except DatabaseError as exc:  # a locked SQLite file, a dropped connection
                    logger.warning("heartbeat of job %s failed: %s", self.job_id, exc)
        finally:
            connections.close_all()  # this thread's own connections

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 30)


def reap_lost_jobs(job_ids: list[int] | None = None, now: datetime | None = None) -> list[int]:
    """Fail every running job (of ``job_ids``, or all) whose heartbeat is older than
    ``JOB_LEASE_SECONDS``: error "worker lost (no heartbeat for N s ...)", retryable,
    audited as ``jobs.worker_lost``. Returns the ids of the jobs it failed.

    Each update is conditional on the heartbeat and attempt it read, so a beat or a new
    attempt arriving meanwhile wins, and two reapers never fail the same attempt twice.
    """
    now = now or timezone.now()
    lease = float(settings.JOB_LEASE_SECONDS)
    cutoff = now - timedelta(seconds=lease)
    running = ReconJob.objects.filter(status=ReconJob.Status.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, started__lt=cutoff)
        | Q(heartbeat_at__isnull=True, started__isnull=True)
    )
    if job_ids is not None:
        running = running.filter(pk__in=job_ids)
    reaped = []
    for job in running.only("pk", "attempts", "heartbeat_at", "started", "lease_owner", "worker"):
        last = job.heartbeat_at or job.started
        silent = f"{(now - last).total_seconds():.0f} s" if last else "ever"
        holder = job.lease_owner or job.worker or "unknown worker"
        error = (
            f"worker lost (no heartbeat for {silent}; lease {lease:g} s, held by {holder}): "
            "the worker stopped or was killed. Retry the job."
        )
        changed = ReconJob.objects.filter(
            pk=job.pk,
            status=ReconJob.Status.RUNNING,
            attempts=job.attempts,
            heartbeat_at=job.heartbeat_at,
        ).update(status=ReconJob.Status.FAILED, error=error, finished=now)
        if changed:
            reaped.append(job.pk)
            logger.warning("job %s: %s", job.pk, error)
            record(
                None,
                "jobs.worker_lost",
                obj=ReconJob.objects.get(pk=job.pk),
                details={"attempt": job.attempts, "lease_owner": holder, "error": error},
            )
    return reaped


def clean_stale_scratch(now: float | None = None) -> list[Path]:
    """Remove attempt scratch folders that no heartbeat touched for ``JOB_LEASE_SECONDS``
    and whose attempt does not hold a live lease; returns the folders removed. Only
    ``job-<id>-attempt-<n>-<random>`` folders directly under ``JOB_SCRATCH_DIR`` are
    considered."""
    root = Path(settings.JOB_SCRATCH_DIR)
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    lease = float(settings.JOB_LEASE_SECONDS)
    cutoff = timezone.now() - timedelta(seconds=lease)
    live = set(
        ReconJob.objects.filter(
            status=ReconJob.Status.RUNNING, heartbeat_at__gte=cutoff
        ).values_list("pk", "attempts")
    )
    removed = []
    for entry in root.iterdir():
        match = SCRATCH_NAME.match(entry.name)
        if not match or entry.is_symlink() or not entry.is_dir():
            continue
        if (int(match[1]), int(match[2])) in live or now - entry.stat().st_mtime < lease:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    if removed:
        logger.info("removed %d stale job scratch folder(s) under %s", len(removed), root)
    return removed


class Reaper(threading.Thread):
    """Daemon thread of a worker: :func:`reap_lost_jobs` every ``interval`` seconds
    (default ``JOB_HEARTBEAT_SECONDS``), so lost jobs are failed even when nobody looks."""

    def __init__(self, interval: float | None = None):
        super().__init__(name="job-lease-reaper", daemon=True)
        self.interval = float(interval or settings.JOB_HEARTBEAT_SECONDS)
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while True:
                try:
                    reap_lost_jobs()
                except Exception:  # noqa: BLE001 - the reaper must outlive any one failure
                    logger.exception("job reaper failed; trying again in %s s", self.interval)
                if self.stopped.wait(self.interval):
                    return
        finally:
            connections.close_all()
