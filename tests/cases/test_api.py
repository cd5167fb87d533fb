"""Cases REST API: multipart uploads create cases and series with the right summary; bad
uploads are answered 400 with the reason in ``files`` and store nothing."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from pydicom.data import get_testdata_file
from rest_framework.test import APIClient

from mriplatform.accounts.roles import Role
from mriplatform.audit.models import AuditEvent
from mriplatform.cases.models import Case, Instance, Series
from tests.factories import CaseFactory

pytestmark = pytest.mark.django_db


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


@pytest.fixture
def site_admin(make_user):
    return make_user(Role.SITE_ADMIN)


@pytest.fixture
def api(site_admin):
    client = APIClient()
    client.force_authenticate(site_admin)
    return client


def stored_files(root) -> list:
    return sorted(p for p in root.rglob("*") if p.is_file())


def assert_nothing_stored(media_root, cases: int = 0) -> None:
    assert Case.objects.count() == cases
    assert not Series.objects.exists() and not Instance.objects.exists()
    assert stored_files(media_root) == []
    assert not AuditEvent.objects.filter(action="case.deidentify").exists()


def test_create_raw_case(api, media_root, raw_case_file):
    response = api.post(
        "/api/cases/",
        {
            "subject_code": "API-001",
            "anatomy": "brain",
            "files": [upload("Doe.h5", raw_case_file.read_bytes())],
            "description": "T1",
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["subject_code"] == "API-001" and len(body["series"]) == 1
    series = body["series"][0]
    assert series["kind"] == "fastmri_h5" and series["description"] == "T1"
    assert (series["n_slices"], series["n_coils"], series["matrix"]) == (4, 8, [96, 96])
    assert series["fully_sampled"] is True
    assert api.get(f"/api/series/{series['uuid']}/").json()["n_coils"] == 8
    assert len(stored_files(media_root)) == 1


def test_add_dicom_series_as_zip(api, site_admin, media_root, mr_series_files):
    case = CaseFactory(institution=site_admin.institution)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i, path in enumerate(mr_series_files):
            archive.writestr(f"S1/IM{i}", path.read_bytes())
    response = api.post(
        f"/api/cases/{case.pk}/series/",
        {"files": [upload("s.zip", buffer.getvalue())]},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert response.json()["kind"] == "dicom" and response.json()["n_slices"] == 3
    assert case.series.get().instances.count() == 3
    listed = api.get(f"/api/cases/{case.pk}/").json()
    assert [s["uuid"] for s in listed["series"]] == [response.json()["uuid"]]


def test_add_dicom_series_as_files(api, site_admin, media_root, mr_series_files):
    case = CaseFactory(institution=site_admin.institution)
    files = [upload(f"IM{i}", p.read_bytes()) for i, p in enumerate(mr_series_files)]
    response = api.post(f"/api/cases/{case.pk}/series/", {"files": files}, format="multipart")
    assert response.status_code == 201
    assert response.json()["matrix"] == [64, 64]


def ct_bytes() -> bytes:
    with open(get_testdata_file("CT_small.dcm"), "rb") as fh:
        return fh.read()


BAD = {
    "truncated-hdf5": (lambda raw: raw.read_bytes()[:40_000], "x.h5", "corrupt or truncated"),
    "non-mr": (lambda raw: ct_bytes(), "ct.dcm", "modality is CT, not MR"),
    "garbage": (lambda raw: b"patient notes" * 40, "a.txt", "neither a DICOM"),
}


@pytest.mark.parametrize("bad", sorted(BAD))
def test_bad_create_refused(api, media_root, raw_case_file, bad):
    build, name, phrase = BAD[bad]
    response = api.post(
        "/api/cases/",
        {"subject_code": "API-002", "files": [upload(name, build(raw_case_file))]},
        format="multipart",
    )
    assert response.status_code == 400
    assert phrase in " ".join(response.json()["files"])
    assert_nothing_stored(media_root)


@pytest.mark.parametrize("bad", sorted(BAD))
def test_bad_series_refused(api, site_admin, media_root, raw_case_file, bad):
    case = CaseFactory(institution=site_admin.institution)
    build, name, phrase = BAD[bad]
    response = api.post(
        f"/api/cases/{case.pk}/series/",
        {"files": [upload(name, build(raw_case_file))]},
        format="multipart",
    )
    assert response.status_code == 400
    assert phrase in " ".join(response.json()["files"])
    assert_nothing_stored(media_root, cases=1)


def test_missing_files_and_oversize(api, site_admin, media_root, raw_case_file, settings):
    response = api.post("/api/cases/", {"subject_code": "API-003"}, format="multipart")
    assert response.status_code == 400
    assert "send one or more files" in response.json()["files"][0]
    settings.MAX_UPLOAD_BYTES = 1000
    response = api.post(
        "/api/cases/",
        {"subject_code": "API-003", "files": [upload("k.h5", raw_case_file.read_bytes())]},
        format="multipart",
    )
    # Refused on its Content-Length before the body is read (UploadSizeLimitMiddleware).
    assert response.status_code == 413
    assert "exceeds the upload limit of 1000 bytes" in response.json()["detail"]
    assert_nothing_stored(media_root)


def test_duplicate_subject_code(api, site_admin, media_root, mr_series_files):
    CaseFactory(institution=site_admin.institution, subject_code="DUP")
    files = [upload("a.dcm", mr_series_files[0].read_bytes())]
    response = api.post("/api/cases/", {"subject_code": "DUP", "files": files}, format="multipart")
    assert response.status_code == 400
    assert "already has that subject code" in response.json()["subject_code"][0]
    assert_nothing_stored(media_root, cases=1)
