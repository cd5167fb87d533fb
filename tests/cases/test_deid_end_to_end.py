"""De-identification end to end (issue acceptance): a DICOM series with every Basic-profile
attribute marked, and a raw HDF5 file with a marked ISMRMRD header, go in through the
upload page and through the API. No marked value may come out anywhere: stored files,
any row of any database table, API answers, pages or log records."""

from __future__ import annotations

import copy
import io
import logging

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from mriplatform.accounts.roles import Role
from mriplatform.audit.models import AuditEvent
from mriplatform.cases.models import Case, Series
from tests.cases import ACCESSION, BIRTHDATE, STUDY_DATE, UID_ROOT, write_fastmri
from tests.cases.test_deid import DATE, MARK, UID_MARK, marked_dataset, to_bytes

pytestmark = pytest.mark.django_db

DICOM_MARKERS = [MARK, UID_MARK, DATE]
RAW_MARKERS = [MARK, UID_ROOT, ACCESSION, BIRTHDATE, STUDY_DATE, BIRTHDATE.replace("-", "")]


def marked_series(n: int = 2) -> list[tuple[str, bytes]]:
    base = marked_dataset()
    files = []
    for number in range(1, n + 1):
        ds = copy.deepcopy(base)
        ds.SOPInstanceUID = f"{UID_MARK}4242.{number}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = number
        files.append((f"{MARK}_Doe_{number}.dcm", to_bytes(ds)))
    return files


def marked_raw() -> list[tuple[str, bytes]]:
    buffer = io.BytesIO()
    write_fastmri(buffer, shape=(3, 4, 16, 12))
    return [(f"{MARK}_Doe.h5", buffer.getvalue())]


def database_text() -> str:
    """Every row of every table, as text."""
    rows = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')
            rows.extend(f"{table}: {row!r}" for row in cursor.fetchall())
    return "\n".join(rows)


def leaks(text: str | bytes, markers: list[str]) -> list[str]:
    lowered = text.lower() if isinstance(text, bytes) else text.lower().encode()
    return [m for m in markers if m.lower().encode() in lowered]


def upload_through_page(client, files) -> Case:
    uploads = [SimpleUploadedFile(name, data) for name, data in files]
    response = client.post(
        reverse("cases:create"),
        {"subject_code": "E2E-001", "anatomy": "knee", "files": uploads},
        HTTP_X_REQUESTED_WITH="XMLHttpRequest",
    )
    assert response.status_code == 200, response.content
    return Case.objects.get(subject_code="E2E-001")


def upload_through_api(client, files) -> Case:
    api = APIClient()
    api.force_authenticate(client.session_user)
    uploads = [SimpleUploadedFile(name, data) for name, data in files]
    response = api.post(
        "/api/cases/", {"subject_code": "E2E-001", "files": uploads}, format="multipart"
    )
    assert response.status_code == 201, response.content
    return Case.objects.get(subject_code="E2E-001")


@pytest.mark.parametrize("channel", ["page", "api"])
@pytest.mark.parametrize(
    "kind, build, markers",
    [("dicom", marked_series, DICOM_MARKERS), ("raw", marked_raw, RAW_MARKERS)],
    ids=["dicom", "raw"],
)
def test_no_marked_value_survives(
    client, make_user, media_root, caplog, channel, kind, build, markers
):
    caplog.set_level(logging.DEBUG)
    files = build()
    assert all(leaks(data, markers[:1]) for _name, data in files)  # the input is marked
    admin = make_user(Role.SITE_ADMIN)
    client.force_login(admin)
    client.session_user = admin
    case = (upload_through_page if channel == "page" else upload_through_api)(client, files)
    series = case.series.get()
    assert series.kind == (Series.Kind.DICOM if kind == "dicom" else Series.Kind.FASTMRI)
    assert AuditEvent.objects.filter(action="case.deidentify", object_id=str(series.pk)).exists()

    stored = [p for p in media_root.rglob("*") if p.is_file()]
    assert len(stored) == (2 if kind == "dicom" else 1)
    for path in stored:
        assert leaks(path.read_bytes(), markers) == [], path
        assert leaks(str(path), markers) == []

    dump = database_text()
    assert "E2E-001" in dump and "case.deidentify" in dump  # the dump does see the rows
    assert leaks(dump, markers) == []

    api = APIClient()
    api.force_authenticate(admin)
    for url in (f"/api/cases/{case.pk}/", f"/api/series/{series.uuid}/", "/api/cases/"):
        response = api.get(url)
        assert response.status_code == 200
        assert leaks(response.content, markers) == [], url

    for url in (
        reverse("cases:list"),
        reverse("cases:detail", args=[case.pk]),
        reverse("cases:series", args=[series.uuid]),
    ):
        response = client.get(url)
        assert response.status_code == 200
        assert leaks(response.content, markers) == [], url

    logged = caplog.text + "\n".join(repr(r.args) for r in caplog.records)
    assert leaks(logged, markers) == []
