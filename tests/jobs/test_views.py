"""Job pages without a worker: the batch submission form, the list with live status JSON,
the detail page (error, metrics, provenance) and the retry button."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from mriplatform.accounts.roles import Role
from mriplatform.jobs import services
from mriplatform.jobs.models import ReconJob
from tests.factories import CaseFactory, ProtocolFactory, ReconJobFactory, SeriesFactory
from tests.jobs import raw_series

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(make_user):
    return make_user(Role.SITE_ADMIN)


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin)
    return client


@pytest.fixture
def sent(monkeypatch):
    queued = []
    monkeypatch.setattr(services, "enqueue", queued.append)
    return queued


@pytest.fixture
def raws(admin, media_root, raw_case_file):
    case = CaseFactory(institution=admin.institution, subject_code="JOB-001")
    return [raw_series(case, raw_case_file), raw_series(case, raw_case_file)]


def test_submit_page_batches_and_is_idempotent(admin_client, raws, sent):
    protocols = [ProtocolFactory(), ProtocolFactory()]
    form = admin_client.get(reverse("jobs:submit"), {"case": raws[0].case_id})
    assert form.status_code == 200
    assert set(form.context["form"].initial["series"]) == set(raws)
    data = {"series": [s.pk for s in raws], "protocols": [p.pk for p in protocols]}
    response = admin_client.post(reverse("jobs:submit"), data, follow=True)
    assert response.redirect_chain[-1][0] == reverse("jobs:list")
    assert "4 job(s) submitted." in response.content.decode()
    assert ReconJob.objects.count() == 4 and len(sent) == 4
    response = admin_client.post(reverse("jobs:submit"), data, follow=True)
    assert "0 job(s) submitted, 4 already existed." in response.content.decode()
    assert ReconJob.objects.count() == 4 and len(sent) == 4


def test_list_and_status_json(admin_client, raws):
    protocol = ProtocolFactory()
    running = ReconJob.objects.create(
        input_series=raws[0],
        protocol=protocol,
        status=ReconJob.Status.RUNNING,
        progress_done=3,
        progress_total=4,
        heartbeat_at=timezone.now(),  # a live lease: the job pages reap silent workers
    )
    queued = ReconJob.objects.create(input_series=raws[1], protocol=protocol)
    page = admin_client.get(reverse("jobs:list"), {"status": "running"})
    assert list(page.context["jobs"]) == [running]
    states = admin_client.get(reverse("jobs:status-json"), {"ids": f"{running.pk},{queued.pk}"})
    by_id = {j["id"]: j for j in states.json()["jobs"]}
    assert by_id[running.pk]["progress_percent"] == 75 and by_id[queued.pk]["status"] == "pending"
    assert states["Cache-Control"].startswith("max-age=0")


def test_detail_shows_error_and_retry_requeues(admin_client, raws, sent):
    job = ReconJob.objects.create(
        input_series=raws[0],
        protocol=ProtocolFactory(),
        status=ReconJob.Status.FAILED,
        error="ReconError: ACS too small for the kernel",
    )
    page = admin_client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert "ACS too small for the kernel" in page
    response = admin_client.post(reverse("jobs:retry", args=[job.pk]), follow=True)
    assert "Job queued again." in response.content.decode()
    job.refresh_from_db()
    assert job.status == ReconJob.Status.QUEUED and job.error == "" and len(sent) == 1
    response = admin_client.post(reverse("jobs:retry", args=[job.pk]), follow=True)
    assert "Only failed jobs can be retried." in response.content.decode() and len(sent) == 1
    assert admin_client.get(reverse("jobs:retry", args=[job.pk])).status_code == 405


def test_detail_shows_metrics_and_provenance(admin, admin_client, raws):
    (job,), _ = services.submit_jobs([raws[0]], [ProtocolFactory()], admin)
    services.run_job(job.pk)
    job.refresh_from_db()
    page = admin_client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert f"{job.metrics['psnr']:.2f} dB" in page
    assert job.provenance["git_commit"] in page and "engine_version" in page


def test_result_page_shows_rounded_metrics_provenance_rows_and_a_preview(client, make_user):
    admin = make_user(Role.SITE_ADMIN)
    case = CaseFactory(institution=admin.institution)
    job = ReconJobFactory(
        input_series=SeriesFactory(case=case),
        metrics={"nmse": 0.0123456789, "psnr": 28.123456789, "ssim": 0.7654321, "reference": "x"},
        provenance={"method": "cs_wavelet", "params": {"lambda": 0.005}},
    )
    job.output_series.n_slices = 12
    job.output_series.save()
    client.force_login(admin)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "28.12 dB" in page and "0.7654" in page and "0.0123" in page
    assert "28.123456789" not in page
    assert "<code>params.lambda</code></th><td>0.005</td>" in page
    assert "{&#x27;" not in page and "{'" not in page  # no Python dict repr
    assert f"/cases/series/{job.output_series.uuid}/slice/6.png" in page


def test_reconstruct_on_a_dicom_only_case_says_it_has_no_raw_series(client, make_user):
    admin = make_user(Role.SITE_ADMIN)
    dicom_case = CaseFactory(institution=admin.institution, subject_code="DICOM-ONLY")
    SeriesFactory(case=dicom_case, kind="dicom")
    other = CaseFactory(institution=admin.institution, subject_code="RAW-CASE")
    SeriesFactory(case=other, kind="fastmri_h5")
    client.force_login(admin)

    detail = client.get(f"/cases/{dicom_case.pk}/").content.decode()
    assert "No raw k-space to reconstruct" in detail and "?case=" not in detail

    page = client.get("/jobs/submit/", {"case": dicom_case.pk}).content.decode()
    assert "DICOM-ONLY has no raw k-space series" in page
    assert "RAW-CASE" not in page  # other cases' series are not offered as if they were its own

    page = client.get("/jobs/submit/", {"case": other.pk}).content.decode()
    assert "RAW-CASE" in page and "checked" in page
    assert client.get("/jobs/submit/", {"case": "x"}).status_code == 400
    assert client.get("/jobs/submit/", {"case": "²"}).status_code == 400
    assert client.get("/jobs/status.json", {"ids": "²,3"}).status_code == 200
    assert client.get("/jobs/submit/", {"case": 999999}).status_code == 404
