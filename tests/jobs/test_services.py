"""Job services, run in this process: batch submission is idempotent; a job's execution
stores one DICOM instance per slice, the volume, metrics and provenance, and a failure
leaves a clear error and no files."""

from __future__ import annotations

import h5py
import numpy as np
import pydicom
import pytest
from django.core.files.storage import default_storage
from django.db.models import F

import recon_engine
from mriplatform.accounts.roles import Role
from mriplatform.audit.models import AuditEvent
from mriplatform.cases.models import Series
from mriplatform.jobs import services
from mriplatform.jobs.models import ReconJob
from tests.factories import CaseFactory, ProtocolFactory
from tests.jobs import job_files, raw_series

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(make_user):
    return make_user(Role.SITE_ADMIN)


@pytest.fixture
def raw(admin, media_root, raw_case_file):
    return raw_series(CaseFactory(institution=admin.institution), raw_case_file)


def test_batch_submission_is_every_pair_once(admin, media_root, raw_case_file, monkeypatch):
    sent = []
    monkeypatch.setattr(services, "enqueue", sent.append)
    case = CaseFactory(institution=admin.institution)
    series = [raw_series(case, raw_case_file), raw_series(case, raw_case_file)]
    protocols = [ProtocolFactory(), ProtocolFactory(acceleration=2.0)]
    created, existing = services.submit_jobs(series, protocols, admin)
    assert len(created) == 4 and existing == []
    assert {(j.input_series_id, j.protocol_id) for j in created} == {
        (s.pk, p.pk) for s in series for p in protocols
    }
    assert all(j.status == ReconJob.Status.QUEUED for j in created)
    assert sent == created
    created_again, existing = services.submit_jobs(series, protocols, admin)
    assert created_again == [] and len(existing) == 4
    assert ReconJob.objects.count() == 4 and len(sent) == 4
    assert AuditEvent.objects.filter(action="jobs.submit").count() == 1


def test_unreachable_broker_fails_the_job_visibly_and_retry_works(
    admin, raw, monkeypatch, django_capture_on_commit_callbacks
):
    from kombu.exceptions import OperationalError

    from mriplatform.jobs.tasks import reconstruct

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(reconstruct, "apply_async", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        (job,), _ = services.submit_jobs([raw], [ProtocolFactory()], admin)
    job.refresh_from_db()
    assert job.status == ReconJob.Status.FAILED
    assert "could not reach the task broker" in job.error and "Connection refused" in job.error

    sent = []
    monkeypatch.setattr(services, "enqueue", sent.append)
    assert services.retry_job(job, admin)
    job.refresh_from_db()
    assert job.status == ReconJob.Status.QUEUED and sent == [job]


def test_only_raw_series_can_be_submitted(admin, media_root, mr_series_files):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from mriplatform.cases.services import ingest_files

    case = CaseFactory(institution=admin.institution)
    dicom = ingest_files(
        case, [SimpleUploadedFile(p.name, p.read_bytes()) for p in mr_series_files], admin
    )
    with pytest.raises(ValueError, match="is not raw k-space"):
        services.submit_jobs([dicom], [ProtocolFactory()], admin)
    assert not ReconJob.objects.exists()


def test_run_job_stores_series_volume_metrics_and_provenance(admin, raw):
    protocol = ProtocolFactory(mask_pattern="equispaced", acceleration=4.0, mask_seed=7)
    (job,), _ = services.submit_jobs([raw], [protocol], admin)
    assert services.run_job(job.pk, worker="w1@host") == "succeeded"
    job.refresh_from_db()
    assert job.status == ReconJob.Status.SUCCEEDED and job.attempts == 1 and job.error == ""
    assert job.progress_done == job.progress_total == 4 and job.progress_percent == 100
    assert job.started <= job.finished

    out = job.output_series
    assert out.kind == Series.Kind.RECONSTRUCTION and out.case == raw.case
    assert out.n_slices == 4 and out.matrix == [96, 96]
    instances = list(out.instances.order_by("instance_number"))
    assert [i.instance_number for i in instances] == [1, 2, 3, 4]
    uids = set()
    for instance in instances:
        ds = pydicom.dcmread(instance.file.path)
        assert ds.SeriesInstanceUID == out.series_instance_uid
        assert ds.SOPInstanceUID == instance.sop_instance_uid
        assert ds.PatientID == raw.case.subject_code and ds.pixel_array.shape == (96, 96)
        uids.add(ds.SOPInstanceUID)
    assert len(uids) == 4 and out.series_instance_uid not in uids
    assert default_storage.exists(out.file.name)
    with default_storage.open(out.file.name) as fh, h5py.File(fh) as h5:
        volume = h5["reconstruction"][()]
    assert volume.shape == (4, 96, 96) and np.isfinite(volume).all()
    assert job_files(job) == [
        "attempt-1/dicom/0001.dcm",
        "attempt-1/dicom/0002.dcm",
        "attempt-1/dicom/0003.dcm",
    ] + [
        "attempt-1/dicom/0004.dcm",
        "attempt-1/reconstruction.h5",
    ]

    # Zero-filled R=4 of a simulated brain: clearly degraded, clearly not noise.
    assert 0.005 < job.metrics["nmse"] < 0.2
    assert 15 < job.metrics["psnr"] < 30 and 0.3 < job.metrics["ssim"] < 0.9

    prov = job.provenance
    assert prov["engine_version"] == recon_engine.__version__
    assert len(prov["git_commit"]) == 40
    assert prov["method"] == "zero_filled" and prov["params"] == protocol.params
    assert prov["mask_seed"] == 7 and prov["sampling"]["seed"] == 7
    assert prov["sampling"]["effective_acceleration"] > 2
    assert prov["worker"] == "w1@host" and prov["host"]
    assert prov["device"]["device"] == "cpu"
    assert prov["timings_s"] and all(v >= 0 for v in prov["timings_s"].values())
    assert prov["input_series"] == str(raw.uuid)

    # Idempotent: running a finished job again changes nothing.
    assert services.run_job(job.pk) == "already succeeded"
    assert Series.objects.filter(kind=Series.Kind.RECONSTRUCTION).count() == 1


def test_same_seed_same_result_other_seed_other_mask(admin, raw):
    jobs = []
    for seed in (1, 1, 2):
        protocol = ProtocolFactory(mask_pattern="random", acceleration=4.0, mask_seed=seed)
        (job,), _ = services.submit_jobs([raw], [protocol], admin)
        services.run_job(job.pk)
        job.refresh_from_db()
        jobs.append(job)
    assert jobs[0].metrics["nmse"] == jobs[1].metrics["nmse"]
    assert jobs[0].metrics["nmse"] != jobs[2].metrics["nmse"]


@pytest.mark.parametrize(
    "make_protocol, raw_fixture, phrase",
    [
        (
            lambda: ProtocolFactory(mask_pattern="equispaced", acceleration=2.0),
            "undersampled_raw_file",
            "already undersampled (R=",
        ),
        (
            lambda: ProtocolFactory(
                method="grappa", mask_pattern="uniform", acceleration=2.0, center_fraction=0.08
            ),
            "raw_case_file",
            "ACS too small for the kernel",
        ),
    ],
    ids=["retrospective-on-undersampled", "grappa-without-enough-acs"],
)
def test_failed_job_has_clear_error_and_no_files(
    admin, media_root, request, make_protocol, raw_fixture, phrase
):
    raw = raw_series(
        CaseFactory(institution=admin.institution), request.getfixturevalue(raw_fixture)
    )
    (job,), _ = services.submit_jobs([raw], [make_protocol()], admin)
    assert services.run_job(job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == ReconJob.Status.FAILED and job.finished is not None
    assert phrase in job.error and job.error.startswith(("ReconError", "ParameterError"))
    assert job.output_series is None and job.metrics == {} and job.provenance == {}
    assert job_files(job) == []
    assert not Series.objects.filter(kind=Series.Kind.RECONSTRUCTION).exists()
    assert AuditEvent.objects.filter(action="jobs.failed", object_id=str(job.pk)).exists()


def test_failure_while_writing_removes_written_files(admin, raw, monkeypatch):
    from mriplatform.jobs import engine

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(engine, "dicom_slices", broken)
    (job,), _ = services.submit_jobs([raw], [ProtocolFactory()], admin)
    assert services.run_job(job.pk) == "failed"
    job.refresh_from_db()
    assert job.error == "OSError: disk full"
    assert job_files(job) == []  # reconstruction.h5 was written, then removed


def test_retry_requeues_and_a_new_attempt_starts_clean(
    admin, raw, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(services, "enqueue", sent.append)
    (job,), _ = services.submit_jobs([raw], [ProtocolFactory()], admin)
    # Leftovers of an interrupted attempt in the job's folder are cleared first.
    default_storage.save(f"{services.output_folder(job)}/dicom/0099.dcm", _bytes(b"stale"))
    ReconJob.objects.filter(pk=job.pk).update(status=ReconJob.Status.FAILED, error="lost")
    job.refresh_from_db()
    services.retry_job(job, admin)
    job.refresh_from_db()
    assert job.status == ReconJob.Status.QUEUED and job.error == "" and sent[-1] == job
    with django_capture_on_commit_callbacks(execute=True):
        assert services.run_job(job.pk) == "succeeded"
    job.refresh_from_db()
    assert "dicom/0099.dcm" not in job_files(job) and len(job_files(job)) == 5
    assert AuditEvent.objects.filter(action="jobs.retry").count() == 1


def _bytes(data: bytes):
    from django.core.files.base import ContentFile

    return ContentFile(data)


def test_job_state_is_what_pages_and_api_show(admin, raw):
    (job,), _ = services.submit_jobs([raw], [ProtocolFactory()], admin)
    ReconJob.objects.filter(pk=job.pk).update(
        status=ReconJob.Status.RUNNING, progress_done=1, progress_total=4
    )
    job.refresh_from_db()
    state = services.job_state(job)
    assert state["status"] == "running" and state["status_display"] == "Running"
    assert state["progress_percent"] == 25 and state["output_series"] is None


def test_job_on_an_ismrmrd_upload_uses_its_own_sampling(admin, media_root, tmp_path):
    """ISMRMRD uploads are stored in the fastMRI layout; 'as acquired' uses their mask."""
    from tests.cases import write_ismrmrd

    path = tmp_path / "meas.h5"
    expected, mask = write_ismrmrd(path, slices=2, coils=3, samples=16, width=12)
    raw = raw_series(CaseFactory(institution=admin.institution), path)
    protocol = ProtocolFactory(mask_pattern="as_acquired", acceleration=1.0)
    (job,), _ = services.submit_jobs([raw], [protocol], admin)
    assert services.run_job(job.pk) == "succeeded", job.error
    job.refresh_from_db()
    with default_storage.open(job.output_series.file.name) as fh, h5py.File(fh) as h5:
        volume = h5["reconstruction"][()]
    # Fully sampled: the zero-filled RSS of the written k-space, computed here with numpy.
    image = np.fft.fftshift(
        np.fft.ifft2(np.fft.ifftshift(expected, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )
    reference = np.sqrt((np.abs(image) ** 2).sum(axis=1))
    np.testing.assert_allclose(volume, reference, rtol=1e-4, atol=1e-5)
    assert job.provenance["sampling"]["pattern"] == "as_acquired"
    assert job.provenance["sampling"]["acquired_acceleration"] == pytest.approx(1.0)


def test_a_superseded_attempt_publishes_nothing(admin, raw, monkeypatch):
    """Two attempts of one job (redelivery while the first still runs): only the latest
    may publish; the older one's files are removed and no second series appears."""
    (job,), _ = services.submit_jobs([raw], [ProtocolFactory()], admin)
    real = services.engine.reconstruct_series

    def overtaken(*args, **kwargs):
        result = real(*args, **kwargs)
        ReconJob.objects.filter(pk=job.pk).update(attempts=F("attempts") + 1)  # a newer attempt
        return result

    monkeypatch.setattr(services.engine, "reconstruct_series", overtaken)
    assert services.run_job(job.pk) == "superseded"
    job.refresh_from_db()
    assert job.output_series is None and job.status == ReconJob.Status.RUNNING
    assert not Series.objects.filter(kind=Series.Kind.RECONSTRUCTION).exists()
    assert job_files(job) == []


def test_a_job_whose_worker_keeps_dying_fails_after_the_attempt_limit(admin, raw):
    (job,), _ = services.submit_jobs([raw], [ProtocolFactory()], admin)
    ReconJob.objects.filter(pk=job.pk).update(
        status=ReconJob.Status.RUNNING, attempts=services.MAX_ATTEMPTS
    )
    assert services.run_job(job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == ReconJob.Status.FAILED and "gave up after 3 attempts" in job.error
    assert services.retry_job(job, admin) and not services.retry_job(job, admin)
    job.refresh_from_db()
    assert job.attempt_limit == job.attempts + services.MAX_ATTEMPTS
