"""Who may do what with cases, protocols and jobs, page by page and endpoint by endpoint.

Anonymous users are sent to the login page (pages) or refused (API); readers and
statisticians get 403; coordinators read everything but change nothing; site
administrators act on their own site's cases only: another site's case is a 404.
"""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from mriplatform.accounts.roles import Role
from mriplatform.cases.models import Series
from mriplatform.cases.services import ingest_files
from mriplatform.jobs.models import ReconJob
from tests.cases import write_fastmri
from tests.factories import CaseFactory, InstitutionFactory, ProtocolFactory

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "reader", "statistician", "coordinator", "own_admin", "other_admin"]


@pytest.fixture
def world(make_user, media_root, settings):
    """Site A with a raw case and a failed job; site B's administrator; one user per role."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed
    site_a = InstitutionFactory(code="sitea")
    site_b = InstitutionFactory(code="siteb")
    case = CaseFactory(institution=site_a, subject_code="A-001")
    buffer = io.BytesIO()
    write_fastmri(buffer, shape=(2, 4, 16, 12))
    raw = ingest_files(case, [SimpleUploadedFile("k.h5", buffer.getvalue())], user=None)
    protocol = ProtocolFactory()
    job = ReconJob.objects.create(
        input_series=raw, protocol=protocol, status=ReconJob.Status.FAILED, error="boom"
    )
    users = {
        "reader": make_user(Role.READER, institution=site_a),
        "statistician": make_user(Role.STATISTICIAN, institution=site_a),
        "coordinator": make_user(Role.COORDINATOR, institution=site_b),
        "own_admin": make_user(Role.SITE_ADMIN, institution=site_a),
        "other_admin": make_user(Role.SITE_ADMIN, institution=site_b),
    }
    return {"case": case, "raw": raw, "protocol": protocol, "job": job, "users": users}


def client_for(world, role: str, api: bool = False):
    client = APIClient() if api else Client()
    if role != "anonymous":
        client.force_login(world["users"][role])
    return client


def read_pages(world) -> dict[str, str]:
    case, raw, job, protocol = world["case"], world["raw"], world["job"], world["protocol"]
    return {
        "case-list": reverse("cases:list"),
        "case-detail": reverse("cases:detail", args=[case.pk]),
        "series": reverse("cases:series", args=[raw.uuid]),
        "slice-png": reverse("cases:slice", args=[raw.uuid, 0]),
        "protocol-list": reverse("protocols:list"),
        "protocol-detail": reverse("protocols:detail", args=[protocol.pk]),
        "job-list": reverse("jobs:list"),
        "job-detail": reverse("jobs:detail", args=[job.pk]),
        "job-status": reverse("jobs:status-json") + f"?ids={job.pk}",
    }


def write_pages(world) -> dict[str, str]:
    return {
        "case-create": reverse("cases:create"),
        "series-upload": reverse("cases:upload", args=[world["case"].pk]),
        "job-submit": reverse("jobs:submit"),
        "protocol-create": reverse("protocols:create"),
    }


# What each role gets on the pages that show site A's case, its series and its job.
OWN_OBJECT_PAGES = {"case-detail", "series", "slice-png", "job-detail"}


@pytest.mark.parametrize("role", ROLES)
def test_read_pages(world, role):
    client = client_for(world, role)
    for name, url in read_pages(world).items():
        response = client.get(url)
        if role == "anonymous":
            assert response.status_code == 302, name
            assert response["Location"].startswith(reverse("accounts:login")), name
        elif role in ("reader", "statistician"):
            assert response.status_code == 403, name
        elif role == "other_admin" and name in OWN_OBJECT_PAGES:
            assert response.status_code == 404, name
        else:
            assert response.status_code == 200, name
    if role == "other_admin":
        status = client.get(read_pages(world)["job-status"]).json()
        assert status == {"jobs": []}  # another site's job is invisible here too
        listing = client.get(reverse("cases:list")).content.decode()
        assert "A-001" not in listing


@pytest.mark.parametrize("role", ROLES)
def test_write_pages(world, role):
    client = client_for(world, role)
    for name, url in write_pages(world).items():
        response = client.get(url)
        if role == "anonymous":
            assert response.status_code == 302, name
        elif role == "own_admin":
            assert response.status_code == 200, name
        elif role == "other_admin":
            # Another site's case cannot be uploaded to; the other pages are the admin's own.
            assert response.status_code == (404 if name == "series-upload" else 200), name
        else:
            assert response.status_code == 403, name


@pytest.mark.parametrize("role", ["coordinator", "other_admin", "reader"])
def test_others_cannot_upload_to_the_case(world, role, mr_series_files):
    client = client_for(world, role)
    files = [SimpleUploadedFile("a.dcm", mr_series_files[0].read_bytes())]
    response = client.post(reverse("cases:upload", args=[world["case"].pk]), {"files": files})
    assert response.status_code in (403, 404)
    api = client_for(world, role, api=True)
    files = [SimpleUploadedFile("a.dcm", mr_series_files[0].read_bytes())]
    response = api.post(
        f"/api/cases/{world['case'].pk}/series/", {"files": files}, format="multipart"
    )
    assert response.status_code == {"coordinator": 403, "other_admin": 404, "reader": 403}[role]
    assert Series.objects.count() == 1


@pytest.mark.parametrize("role", ["coordinator", "other_admin", "reader", "anonymous"])
def test_others_cannot_submit_or_retry_jobs(world, role):
    raw, protocol, job = world["raw"], ProtocolFactory(), world["job"]
    client = client_for(world, role)
    response = client.post(reverse("jobs:submit"), {"series": [raw.pk], "protocols": [protocol.pk]})
    if role == "other_admin":
        assert response.status_code == 200  # another site's series is never offered
        assert "None of your cases has a raw k-space series" in response.content.decode()
    else:
        assert response.status_code in (302, 403)
    response = client.post(reverse("jobs:retry", args=[job.pk]))
    assert response.status_code == {"other_admin": 404, "anonymous": 302}.get(role, 403)

    api = client_for(world, role, api=True)
    response = api.post(
        "/api/jobs/submit/", {"series": [raw.pk], "protocols": [protocol.pk]}, format="json"
    )
    unauthorised = 401 if role == "anonymous" else 403
    assert response.status_code == (400 if role == "other_admin" else unauthorised)
    response = api.post(f"/api/jobs/{job.pk}/retry/")
    assert response.status_code == (404 if role == "other_admin" else unauthorised)
    job.refresh_from_db()
    assert ReconJob.objects.count() == 1 and job.status == ReconJob.Status.FAILED


API_READS = ["/api/cases/", "/api/series/", "/api/protocols/", "/api/jobs/", "/api/methods/"]


@pytest.mark.parametrize("role", ROLES)
def test_api_reads(world, role):
    api = client_for(world, role, api=True)
    own = [
        f"/api/cases/{world['case'].pk}/",
        f"/api/series/{world['raw'].uuid}/",
        f"/api/jobs/{world['job'].pk}/",
    ]
    for url in API_READS + own:
        response = api.get(url)
        if role == "anonymous":
            assert response.status_code in (401, 403), url
        elif role in ("reader", "statistician"):
            assert response.status_code == 403, url
        elif role == "other_admin" and url in own:
            assert response.status_code == 404, url
        else:
            assert response.status_code == 200, url
    if role == "other_admin":
        for url in ("/api/cases/", "/api/series/", "/api/jobs/"):
            assert api.get(url).json()["count"] == 0, url


@pytest.mark.parametrize("role", ["anonymous", "reader", "statistician", "coordinator"])
def test_api_writes_refused(world, role, raw_case_file):
    api = client_for(world, role, api=True)
    response = api.post(
        "/api/cases/",
        {"subject_code": "X-1", "files": [SimpleUploadedFile("k.h5", raw_case_file.read_bytes())]},
        format="multipart",
    )
    assert response.status_code in (401, 403)
    response = api.post("/api/protocols/", {"name": "p", "method": "zero_filled"}, format="json")
    assert response.status_code in (401, 403)
    assert Series.objects.count() == 1
