"""Reconstruction jobs: submission, execution on a worker, and their visible state.

Execution (:func:`run_job`) is what the Celery task calls. It is idempotent and leaves
nothing half-written: outputs go to a folder owned by the job, which is cleared at the
start of every attempt, and the database learns about them in one transaction at the
end. A worker lost mid-job (killed, out of memory) makes Celery redeliver the task
(``acks_late`` + ``reject_on_worker_lost``), and the next attempt starts clean.
"""

from __future__ import annotations

import logging
import shutil
import time
import traceback
from pathlib import Path

from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from mriplatform.audit.services import record
from mriplatform.cases.models import Instance, Series
from mriplatform.jobs import engine, lease
from mriplatform.jobs.models import ReconJob

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.5
MAX_ATTEMPTS = 3  # per (re)submission; a worker lost more often fails the job


def job_state(job: ReconJob) -> dict:
    """What the job list and the API show of a job's progress."""
    return {
        "id": job.pk,
        "status": job.status,
        "status_display": job.get_status_display(),
        "progress_done": job.progress_done,
        "progress_total": job.progress_total,
        "progress_percent": job.progress_percent,
        "attempts": job.attempts,
        "error": job.error,
        "output_series": job.output_series_id,
        "metrics": job.metrics,
    }


def enqueue(job: ReconJob) -> None:
    """Send the job to the ``recon`` queue once the surrounding transaction commits."""
    from mriplatform.jobs.tasks import reconstruct

    def send() -> None:
        try:
            result = reconstruct.apply_async(args=[job.pk], queue="recon")
        except Exception as exc:  # kombu/redis/OS errors: whatever the broker transport raises
            # The job row is committed; without this it would stay "queued" forever with
            # no task behind it. Failing it visibly lets the user retry once the broker is up.
            logger.exception("could not send job %s to the broker", job.pk)
            ReconJob.objects.filter(pk=job.pk, status=ReconJob.Status.QUEUED).update(
                status=ReconJob.Status.FAILED,
                error=f"could not reach the task broker ({exc}); retry when it is back",
                finished=timezone.now(),
            )
            return
        ReconJob.objects.filter(pk=job.pk).update(celery_task_id=result.id)

    transaction.on_commit(send)


def submit_jobs(series, protocols, user, request=None) -> tuple[list[ReconJob], list[ReconJob]]:
    """Create and queue one job per (raw series, protocol); existing pairs are left alone.

    Returns (created, existing).
    """
    created, existing = [], []
    with transaction.atomic():
        for s in series:
            if not s.is_raw:
                raise ValueError(f"{s} is not raw k-space")
            for protocol in protocols:
                job, new = ReconJob.objects.get_or_create(
                    input_series=s,
                    protocol=protocol,
                    defaults={"created_by": user, "status": ReconJob.Status.QUEUED},
                )
                if new:
                    created.append(job)
                    enqueue(job)
                else:
                    existing.append(job)
        if created:
            record(user, "jobs.submit", request=request, details={"jobs": [j.pk for j in created]})
    return created, existing


def retry_job(job: ReconJob, user, request=None) -> bool:
    """Queue a failed job again. Only one of several simultaneous retries wins (the update
    is conditional on the job still being failed); returns whether this one did. A job
    still shown running whose worker was lost (lease expired) is failed first, so it can
    be retried at once."""
    lease.reap_lost_jobs([job.pk])
    with transaction.atomic():
        changed = ReconJob.objects.filter(pk=job.pk, status=ReconJob.Status.FAILED).update(
            status=ReconJob.Status.QUEUED,
            error="",
            progress_done=0,
            finished=None,
            attempt_limit=F("attempts") + MAX_ATTEMPTS,
        )
        if changed:
            record(user, "jobs.retry", obj=job, request=request)
            enqueue(job)
    return bool(changed)


def output_folder(job: ReconJob) -> str:
    return f"cases/{job.input_series.case_id}/recon/job-{job.pk}"


def attempt_folder(job: ReconJob, attempt: int) -> str:
    """Each attempt writes only here, so two attempts never touch each other's files."""
    return f"{output_folder(job)}/attempt-{attempt}"


def _clear_except(folder: str, keep: str) -> None:
    """Delete everything under ``folder`` but the ``keep`` sub-folder."""
    try:
        dirs, files = default_storage.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in files:
        default_storage.delete(f"{folder}/{name}")
    for name in dirs:
        if f"{folder}/{name}" != keep:
            _clear_folder(f"{folder}/{name}")


def _clear_folder(folder: str) -> None:
    """Delete what an interrupted attempt left in ``folder`` (storage API: local or S3)."""
    try:
        dirs, files = default_storage.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in files:
        default_storage.delete(f"{folder}/{name}")
    for name in dirs:
        _clear_folder(f"{folder}/{name}")


class _Progress:
    """Writes per-slice progress (and a heartbeat) to the job row, at most every
    PROGRESS_INTERVAL_S; stops an attempt that no longer holds the job (reaped as lost,
    retried or superseded) by raising :class:`_Superseded`."""

    def __init__(self, job_id: int, attempt: int):
        self.job_id = job_id
        self.attempt = attempt
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < PROGRESS_INTERVAL_S:
            return
        self.last = now
        held = ReconJob.objects.filter(
            pk=self.job_id, attempts=self.attempt, status=ReconJob.Status.RUNNING
        ).update(progress_done=done, progress_total=total, heartbeat_at=timezone.now())
        if not held:
            raise _Superseded()


def run_job(job_id: int, worker: str = "") -> str:
    """Run one attempt of a job (what the Celery task calls).

    Attempts are numbered; each writes into its own folder and may only publish its
    result while it is still the job's latest attempt (checked under a row lock), so a
    redelivered or concurrently running duplicate can neither overwrite nor orphan
    another attempt's output. A job whose worker keeps dying is failed after
    ``MAX_ATTEMPTS`` attempts instead of being redelivered forever.
    """
    with transaction.atomic():
        job = (
            ReconJob.objects.select_for_update()
            .select_related("input_series__case", "protocol")
            .get(pk=job_id)
        )
        if job.status == ReconJob.Status.SUCCEEDED:
            return "already succeeded"
        if job.attempts >= job.attempt_limit:
            job.status = ReconJob.Status.FAILED
            job.error = (
                f"gave up after {job.attempts} attempts: the worker was lost each time "
                "(out of memory or killed?)"
            )
            job.finished = timezone.now()
            job.save()
            record(None, "jobs.failed", obj=job, details={"error": job.error})
            return "failed"
        job.status = ReconJob.Status.RUNNING
        job.attempts += 1
        job.started = timezone.now()
        job.worker = worker
        job.error = ""
        job.progress_done = 0
        job.heartbeat_at = job.started
        job.lease_owner = lease.owner_label(worker, job.attempts)
        job.save()
    attempt = job.attempts

    folder = attempt_folder(job, attempt)
    _clear_folder(folder)
    written: list[str] = []
    try:
        with (
            lease.attempt_scratch(job.pk, attempt) as tmp,
            lease.Heartbeat(job.pk, attempt, folder=tmp),
        ):
            local = Path(tmp) / "input.h5"
            with job.input_series.file.open("rb") as src, local.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            result = engine.reconstruct_series(
                local, job.protocol, progress=_Progress(job.pk, attempt)
            )
            volume_path = Path(tmp) / "reconstruction.h5"
            engine.write_volume(volume_path, result)
            with volume_path.open("rb") as fh:
                volume_name = default_storage.save(f"{folder}/reconstruction.h5", File(fh))
            written.append(volume_name)
            series_uid, dicoms = engine.dicom_slices(
                result, job.input_series.case, description=job.protocol.name
            )
            instances = []
            for number, (sop_uid, data) in enumerate(dicoms, start=1):
                name = default_storage.save(f"{folder}/dicom/{number:04d}.dcm", ContentFile(data))
                written.append(name)
                instances.append((sop_uid, number, name))
        provenance = engine.provenance(result, job, worker)
        provenance["attempt"] = attempt
        with transaction.atomic():
            current = ReconJob.objects.select_for_update().get(pk=job.pk)
            if current.attempts != attempt or current.status != ReconJob.Status.RUNNING:
                raise _Superseded()
            series = Series.objects.create(
                case=job.input_series.case,
                kind=Series.Kind.RECONSTRUCTION,
                description=str(job.protocol),
                file=volume_name,
                series_instance_uid=series_uid,
                n_slices=result.image.shape[0],
                matrix=list(result.image.shape[1:]),
                metadata={"maps": sorted(result.maps), "method": job.protocol.method},
            )
            Instance.objects.bulk_create(
                Instance(series=series, file=name, sop_instance_uid=uid, instance_number=n)
                for uid, n, name in instances
            )
            ReconJob.objects.filter(pk=job.pk).update(
                status=ReconJob.Status.SUCCEEDED,
                output_series=series,
                progress_done=result.image.shape[0],
                progress_total=result.image.shape[0],
                metrics=result.metrics,
                provenance=provenance,
                finished=timezone.now(),
            )
            record(None, "jobs.succeeded", obj=job, details={"series": series.pk})
            # Earlier, interrupted attempts' files go once this result is committed.
            transaction.on_commit(lambda: _clear_except(output_folder(job), folder))
        return "succeeded"
    except _Superseded:
        for name in written:
            default_storage.delete(name)
        logger.warning("job %s attempt %s was superseded; its output is discarded", job.pk, attempt)
        return "superseded"
    except Exception as exc:  # noqa: BLE001 - every failure must be visible on the job
        for name in written:
            default_storage.delete(name)
        message = f"{type(exc).__name__}: {exc}"
        logger.warning("job %s failed: %s\n%s", job.pk, message, traceback.format_exc())
        # Only the latest attempt, still holding the job, may mark it failed.
        if ReconJob.objects.filter(
            pk=job.pk, attempts=attempt, status=ReconJob.Status.RUNNING
        ).update(status=ReconJob.Status.FAILED, error=message[:4000], finished=timezone.now()):
            record(None, "jobs.failed", obj=job, details={"error": message[:500]})
        return "failed"


class _Superseded(Exception):
    """A newer attempt of the same job started while this one ran."""
