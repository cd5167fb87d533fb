"""Helpers shared by the reconstruction job tests."""

from __future__ import annotations

import time
from pathlib import Path

from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from mriplatform.cases.models import Series
from mriplatform.cases.services import ingest_files
from mriplatform.jobs.models import ReconJob
from mriplatform.jobs.services import output_folder

FINISHED = (ReconJob.Status.SUCCEEDED, ReconJob.Status.FAILED)


def raw_series(case, path: Path, user=None) -> Series:
    """Ingest the raw file at ``path`` as a new series of ``case`` (as an upload would)."""
    return ingest_files(case, [SimpleUploadedFile(path.name, path.read_bytes())], user)


def stored_under(folder: str) -> list[str]:
    """Every file name under ``folder`` of the default storage, relative to it."""
    try:
        dirs, files = default_storage.listdir(folder)
    except FileNotFoundError:
        return []
    names = list(files)
    for sub in dirs:
        names += [f"{sub}/{name}" for name in stored_under(f"{folder}/{sub}")]
    return sorted(names)


def job_files(job: ReconJob) -> list[str]:
    return stored_under(output_folder(job))


def wait_for_job(job: ReconJob, statuses=FINISHED, timeout: float = 120.0, seen=None) -> ReconJob:
    """Poll the job row until its status is one of ``statuses``; record each status seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if seen is not None and (not seen or seen[-1] != job.status):
            seen.append(job.status)
        if job.status in statuses:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job.pk} still {job.status} after {timeout} s: {job.error}")
