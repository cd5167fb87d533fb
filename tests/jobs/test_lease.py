"""Job leases, in this process: a running job whose worker stopped beating is failed as
"worker lost" and can be retried; a beating one is left alone; an attempt that lost its
lease (a zombie) publishes nothing; killed attempts' scratch folders are cleaned."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone
from rest_framework.test import APIClient

from mriplatform.accounts.roles import Role
from mriplatform.audit.models import AuditEvent
from mriplatform.cases.models import Series
from mriplatform.jobs import lease, services
from mriplatform.jobs.models import ReconJob
from tests.factories import CaseFactory, ProtocolFactory
from tests.jobs import job_files, raw_series

S = ReconJob.Status


@pytest.fixture
def admin(make_user):
    return make_user(Role.SITE_ADMIN)


@pytest.fixture
def raw(admin, media_root, raw_case_file):
    return raw_series(CaseFactory(institution=admin.institution), raw_case_file)


@pytest.fixture
def job(admin, raw, monkeypatch):
    monkeypatch.setattr(services, "enqueue", lambda job: None)
    (job,), _ = services.submit_jobs([raw], [ProtocolFactory()], admin)
    return job


@pytest.fixture
def api(admin):
    client = APIClient()
    client.force_authenticate(admin)
    return client


def running(job: ReconJob, silent_s: float | None, attempts: int = 1) -> ReconJob:
    """Make ``job`` look like attempt ``attempts`` running with its last heartbeat
    ``silent_s`` seconds ago (None: no heartbeat ever, as jobs from before leases)."""
    now = timezone.now()
    beat = None if silent_s is None else now - timedelta(seconds=silent_s)
    ReconJob.objects.filter(pk=job.pk).update(
        status=S.RUNNING,
        attempts=attempts,
        started=now - timedelta(seconds=(silent_s or 0) + 300),
        heartbeat_at=beat,
        lease_owner=f"demo@host pid 4242 attempt {attempts}",
    )
    job.refresh_from_db()
    return job


@pytest.mark.django_db
def test_stale_heartbeat_fails_the_job_retryably_and_audits_it(job, admin, settings):
    settings.JOB_LEASE_SECONDS = 60
    running(job, silent_s=125)
    assert lease.reap_lost_jobs() == [job.pk]
    job.refresh_from_db()
    assert job.status == S.FAILED and job.finished is not None
    assert job.error.startswith("worker lost (no heartbeat for 125 s; lease 60 s")
    assert "demo@host pid 4242 attempt 1" in job.error
    event = AuditEvent.objects.get(action="jobs.worker_lost", object_id=str(job.pk))
    assert event.details["attempt"] == 1
    assert lease.reap_lost_jobs() == []  # reaped once, audited once
    assert services.retry_job(job, admin)
    job.refresh_from_db()
    assert job.status == S.QUEUED and job.error == ""


@pytest.mark.django_db
def test_fresh_heartbeat_and_other_states_are_left_alone(job, settings):
    settings.JOB_LEASE_SECONDS = 60
    running(job, silent_s=50)
    assert lease.reap_lost_jobs() == []
    job.refresh_from_db()
    assert job.status == S.RUNNING and job.error == ""
    # Queued, succeeded and failed jobs have no lease to lose, however old.
    for state in (S.QUEUED, S.SUCCEEDED, S.FAILED):
        ReconJob.objects.filter(pk=job.pk).update(
            status=state, heartbeat_at=timezone.now() - timedelta(days=1)
        )
        assert lease.reap_lost_jobs() == []
        job.refresh_from_db()
        assert job.status == state


@pytest.mark.django_db
def test_a_job_running_from_before_leases_is_reaped_after_one_lease(job, settings):
    settings.JOB_LEASE_SECONDS = 60
    running(job, silent_s=None)
    ReconJob.objects.filter(pk=job.pk).update(started=timezone.now() - timedelta(seconds=30))
    assert lease.reap_lost_jobs() == []
    ReconJob.objects.filter(pk=job.pk).update(started=timezone.now() - timedelta(seconds=61))
    assert lease.reap_lost_jobs() == [job.pk]


@pytest.mark.django_db
def test_a_newer_beat_or_attempt_wins_over_the_reaper(job, settings, monkeypatch):
    """The reaper's update is conditional on the heartbeat and attempt it read."""
    settings.JOB_LEASE_SECONDS = 60
    running(job, silent_s=90)
    real_filter = ReconJob.objects.filter

    def beat_in_between(*args, **kwargs):
        if "heartbeat_at" in kwargs and "attempts" in kwargs:  # the reaper's conditional update
            real_filter(pk=job.pk).update(heartbeat_at=timezone.now())
        return real_filter(*args, **kwargs)

    monkeypatch.setattr(ReconJob.objects, "filter", beat_in_between)
    assert lease.reap_lost_jobs() == []
    monkeypatch.undo()
    job.refresh_from_db()
    assert job.status == S.RUNNING


@pytest.mark.django_db
def test_job_list_and_api_show_a_lost_job_as_failed_and_retry_is_accepted(
    job, admin, api, client, settings
):
    settings.JOB_LEASE_SECONDS = 60
    running(job, silent_s=3600)
    state = api.get(f"/api/jobs/{job.pk}/").json()
    assert state["status"] == "failed" and state["error"].startswith("worker lost")

    running(job, silent_s=3600)
    listed = {j["id"]: j for j in api.get("/api/jobs/").json()["results"]}
    assert listed[job.pk]["status"] == "failed"

    running(job, silent_s=3600)
    client.force_login(admin)
    page = client.get("/jobs/").content.decode()
    assert "worker lost" in page or "Failed" in page
    job.refresh_from_db()
    assert job.status == S.FAILED
    running(job, silent_s=3600)
    polled = client.get(f"/jobs/status.json?ids={job.pk}")
    assert polled.status_code == 200 and polled.json()["jobs"][0]["status"] == "failed"

    # A job still shown running with an expired lease can be retried at once.
    running(job, silent_s=3600)
    response = api.post(f"/api/jobs/{job.pk}/retry/")
    assert response.status_code == 202 and response.json()["status"] == "queued"
    # ... but one whose worker is alive can't (409), and keeps running.
    running(job, silent_s=1)
    assert api.post(f"/api/jobs/{job.pk}/retry/").status_code == 409
    job.refresh_from_db()
    assert job.status == S.RUNNING
    state = api.get(f"/api/jobs/{job.pk}/").json()
    assert state["lease_owner"] == "demo@host pid 4242 attempt 1"
    assert state["heartbeat_at"] == job.heartbeat_at.isoformat().replace("+00:00", "Z")


@pytest.mark.django_db
def test_an_attempt_reaped_mid_run_publishes_nothing_and_stops(job, settings, monkeypatch):
    """A zombie: its worker was declared lost while it still computed. Its next progress
    update stops it; nothing is published and the reaper's verdict stands."""
    settings.JOB_LEASE_SECONDS = 60
    real = services.engine.reconstruct_series
    calls = []

    def reaped_meanwhile(path, protocol, progress=None):
        ReconJob.objects.filter(pk=job.pk).update(
            heartbeat_at=timezone.now() - timedelta(seconds=120)
        )
        calls.append(lease.reap_lost_jobs())
        return real(path, protocol, progress=progress)

    written = []
    monkeypatch.setattr(services.engine, "reconstruct_series", reaped_meanwhile)
    monkeypatch.setattr(services.engine, "write_volume", lambda *args: written.append(args))
    assert services.run_job(job.pk, worker="zombie@host") == "superseded"
    assert calls == [[job.pk]] and written == []  # stopped at its first progress update
    job.refresh_from_db()
    assert job.status == S.FAILED and job.error.startswith("worker lost")
    assert job.output_series is None and job_files(job) == []
    assert not Series.objects.filter(kind=Series.Kind.RECONSTRUCTION).exists()


@pytest.mark.django_db
def test_a_zombie_cannot_publish_over_or_fail_a_newer_attempt(job, admin, settings, monkeypatch):
    """Reaped, retried, and a new attempt running: the old attempt finishing (or failing)
    late changes nothing of the new one."""
    settings.JOB_LEASE_SECONDS = 60
    real = services.engine.reconstruct_series

    def overtaken(path, protocol, progress=None):
        result = real(path, protocol)  # no progress updates: it can't notice before publishing
        ReconJob.objects.filter(pk=job.pk).update(
            heartbeat_at=timezone.now() - timedelta(seconds=120)
        )
        lease.reap_lost_jobs()
        assert services.retry_job(ReconJob.objects.get(pk=job.pk), admin)
        ReconJob.objects.filter(pk=job.pk).update(
            status=S.RUNNING, attempts=F("attempts") + 1, heartbeat_at=timezone.now()
        )
        return result

    monkeypatch.setattr(services.engine, "reconstruct_series", overtaken)
    assert services.run_job(job.pk) == "superseded"
    job.refresh_from_db()
    assert job.status == S.RUNNING and job.attempts == 2 and job.error == ""
    assert job.output_series is None and job_files(job) == []



@pytest.mark.django_db
def test_a_reaped_attempt_failing_late_leaves_the_retried_job_queued(
    job, admin, settings, monkeypatch
):
    settings.JOB_LEASE_SECONDS = 60

    def reaped_retried_then_broken(path, protocol, progress=None):
        ReconJob.objects.filter(pk=job.pk).update(
            heartbeat_at=timezone.now() - timedelta(seconds=120)
        )
        lease.reap_lost_jobs()
        assert services.retry_job(ReconJob.objects.get(pk=job.pk), admin)
        raise RuntimeError("late failure of the lost attempt")

    monkeypatch.setattr(services.engine, "reconstruct_series", reaped_retried_then_broken)
    assert services.run_job(job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == S.QUEUED and job.error == "" and job.attempts == 1


@pytest.mark.django_db
def test_a_run_leaves_no_scratch_files(job, settings, tmp_path):
    settings.JOB_SCRATCH_DIR = tmp_path / "scratch"
    assert services.run_job(job.pk) == "succeeded"
    assert list((tmp_path / "scratch").iterdir()) == []


@pytest.mark.django_db(transaction=True)
def test_heartbeat_thread_renews_only_its_own_running_attempt(job, tmp_path):
    folder = tmp_path / "job-1-attempt-2-x"
    folder.mkdir()
    os.utime(folder, (0, 0))
    running(job, silent_s=100, attempts=2)
    before = job.heartbeat_at
    with lease.Heartbeat(job.pk, 2, folder=folder, interval=0.05):
        time.sleep(0.5)
    job.refresh_from_db()
    assert (timezone.now() - job.heartbeat_at).total_seconds() < 1 < (
        job.heartbeat_at - before
    ).total_seconds()
    assert time.time() - folder.stat().st_mtime < 5
    running(job, silent_s=100, attempts=3)  # a newer attempt: the old heartbeat is ignored
    before = job.heartbeat_at
    with lease.Heartbeat(job.pk, 2, interval=0.05):
        time.sleep(0.3)
    job.refresh_from_db()
    assert job.heartbeat_at == before


@pytest.mark.django_db
def test_stale_scratch_folders_are_removed_live_ones_kept(job, settings, tmp_path):
    settings.JOB_SCRATCH_DIR = tmp_path
    settings.JOB_LEASE_SECONDS = 60
    old = time.time() - 600

    def folder(name: str, mtime: float) -> os.PathLike:
        path = tmp_path / name
        path.mkdir()
        (path / "input.h5").write_bytes(b"\0" * 1024)
        os.utime(path, (mtime, mtime))
        return path

    killed = folder("job-999-attempt-1-ab12", old)
    beating = folder("job-998-attempt-1-cd34", time.time())
    running(job, silent_s=5, attempts=2)
    leased = folder(f"job-{job.pk}-attempt-2-ef56", old)  # lease alive in the database
    foreign = folder("somebody-elses-folder", old)
    assert lease.clean_stale_scratch() == [killed]
    assert not killed.exists()
    assert beating.exists() and leased.exists() and foreign.exists()
    running(job, silent_s=120, attempts=2)
    assert lease.clean_stale_scratch() == [leased]


@pytest.mark.django_db(transaction=True)
def test_a_workers_reaper_thread_fails_lost_jobs_when_nobody_looks(job, settings):
    settings.JOB_LEASE_SECONDS = 60
    running(job, silent_s=61)
    reaper = lease.Reaper(interval=0.05)
    reaper.start()
    try:
        deadline = time.monotonic() + 10
        while job.status == S.RUNNING and time.monotonic() < deadline:
            time.sleep(0.05)
            job.refresh_from_db()
        assert job.status == S.FAILED and job.error.startswith("worker lost")
        running(job, silent_s=1)  # a live job on the next rounds is left alone
        time.sleep(0.3)
        job.refresh_from_db()
        assert job.status == S.RUNNING
    finally:
        reaper.stopped.set()
        reaper.join(timeout=10)
    assert not reaper.is_alive()
