"""Case pages: uploads (plain form and XHR) create a case and series with the right summary;
refused uploads answer 400 with the reason and store nothing; the QA slice PNG works for
every kind of series."""

from __future__ import annotations

import html
import io
import zipfile

import h5py
import numpy as np
import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.urls import reverse
from PIL import Image
from pydicom.data import get_testdata_file

from mriplatform.accounts.roles import Role
from mriplatform.audit.models import AuditEvent
from mriplatform.cases.models import Case, Instance, Series
from tests.factories import CaseFactory

pytestmark = pytest.mark.django_db

XHR = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}


def stored_files(root) -> list:
    return sorted(p for p in root.rglob("*") if p.is_file())


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def dicom_bytes(paths) -> list[tuple[str, bytes]]:
    return [(f"IM{i:04d}", p.read_bytes()) for i, p in enumerate(paths)]


def mr_bytes(**changes) -> bytes:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    for key, value in changes.items():
        setattr(ds, key, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def zipped(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(f"DICOM/{name}", data)
    return buffer.getvalue()


@pytest.fixture
def site_admin(make_user):
    return make_user(Role.SITE_ADMIN)


@pytest.fixture
def admin_client(client, site_admin):
    client.force_login(site_admin)
    return client


def case_form(code: str = "TRIAL-001", **extra) -> dict:
    return {"subject_code": code, "anatomy": "brain", "field_strength_t": "3", **extra}


# ------------------------------------------------------------------------------- success


def test_raw_upload_creates_case_with_summary(admin_client, media_root, raw_case_file):
    data = case_form(files=upload(raw_case_file.name, raw_case_file.read_bytes()))
    response = admin_client.post(reverse("cases:create"), data)
    case = Case.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("cases:detail", args=[case.pk])
    series = case.series.get()
    assert series.kind == Series.Kind.FASTMRI
    assert (series.n_slices, series.n_coils, series.matrix) == (4, 8, [96, 96])
    assert series.fully_sampled is True
    files = stored_files(media_root)
    assert [p.name for p in files] == ["kspace.h5"]
    assert "Doe" not in str(files[0])  # the uploaded file name is not kept
    with h5py.File(files[0]) as h5:
        assert h5["kspace"].shape == (4, 8, 96, 96)
    event = AuditEvent.objects.get(action="case.deidentify")
    assert event.details["kind"] == "fastmri_h5"
    detail = admin_client.get(response["Location"]).content.decode()
    assert "8 coils" in detail and "TRIAL-001" in detail


@pytest.mark.parametrize("as_zip", [False, True], ids=["files", "zip"])
def test_dicom_upload_via_xhr(admin_client, media_root, mr_series_files, as_zip):
    members = dicom_bytes(mr_series_files)
    files = (
        [upload("series.zip", zipped(members))] if as_zip else [upload(n, d) for n, d in members]
    )
    response = admin_client.post(reverse("cases:create"), case_form(files=files), **XHR)
    assert response.status_code == 200
    case = Case.objects.get()
    assert response.json() == {"redirect": reverse("cases:detail", args=[case.pk])}
    series = case.series.get()
    assert series.kind == Series.Kind.DICOM
    assert series.n_slices == 3 and series.matrix == [64, 64]
    assert series.instances.count() == 3
    stored = stored_files(media_root)
    assert len(stored) == 3
    originals = {str(pydicom.dcmread(p).SeriesInstanceUID) for p in mr_series_files}
    assert series.series_instance_uid not in originals
    for path in stored:
        ds = pydicom.dcmread(path)
        assert ds.SeriesInstanceUID == series.series_instance_uid
        assert str(ds.PatientName) == "TRIAL-001"


def test_series_added_to_existing_case(admin_client, site_admin, media_root, raw_case_file):
    case = CaseFactory(institution=site_admin.institution)
    response = admin_client.post(
        reverse("cases:upload", args=[case.pk]),
        {"files": upload("k.h5", raw_case_file.read_bytes()), "description": "PD"},
    )
    assert response.status_code == 302
    series = case.series.get()
    assert series.description == "PD" and series.n_coils == 8


def test_large_upload_streams_through_a_temporary_file(
    admin_client, media_root, raw_case_file, settings, monkeypatch
):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    assert raw_case_file.stat().st_size > settings.FILE_UPLOAD_MAX_MEMORY_SIZE
    from mriplatform.cases import services

    seen = []
    real = services.ingest.inspect_upload

    def spy(files):
        seen.extend(type(f) for f in files)
        return real(files)

    monkeypatch.setattr(services.ingest, "inspect_upload", spy)
    with raw_case_file.open("rb") as fh:
        response = admin_client.post(reverse("cases:create"), case_form(files=fh))
    assert response.status_code == 302
    assert seen == [TemporaryUploadedFile]
    assert Series.objects.get().n_slices == 4


# ------------------------------------------------------------------------------- refusals


def truncated_h5(raw_case_file) -> bytes:
    data = raw_case_file.read_bytes()
    return data[: len(data) // 2]


def wrong_layout_h5() -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        h5.create_dataset("image", data=np.ones((2, 8, 8), np.float32))
    return buffer.getvalue()


def mixed_series(mr_series_files) -> list[tuple[str, bytes]]:
    members = dicom_bytes(mr_series_files[:2])
    return [*members, ("other.dcm", mr_bytes())]


BAD_UPLOADS = {
    "corrupt-dicom": (lambda raw, dcm: [("cut.dcm", mr_bytes()[:300])], "corrupt or truncated"),
    "truncated-hdf5": (
        lambda raw, dcm: [("cut.h5", truncated_h5(raw))],
        "corrupt or truncated HDF5",
    ),
    "non-mr": (
        lambda raw, dcm: [("ct.dcm", open(get_testdata_file("CT_small.dcm"), "rb").read())],
        "modality is CT, not MR",
    ),
    "mixed-series": (lambda raw, dcm: mixed_series(dcm), "mixes 2 series"),
    "wrong-layout": (lambda raw, dcm: [("x.h5", wrong_layout_h5())], "no 'kspace' dataset"),
    "empty-file": (lambda raw, dcm: [("empty.dcm", b"")], "empty"),
}


def assert_nothing_stored(media_root, cases_before: int = 0) -> None:
    assert Case.objects.count() == cases_before
    assert not Series.objects.exists() and not Instance.objects.exists()
    assert stored_files(media_root) == []
    assert not AuditEvent.objects.filter(action="case.deidentify").exists()


@pytest.mark.parametrize("xhr", [True, False], ids=["xhr", "form"])
@pytest.mark.parametrize("bad", sorted(BAD_UPLOADS))
def test_bad_case_upload_refused_and_nothing_stored(
    admin_client, media_root, raw_case_file, mr_series_files, bad, xhr
):
    build, phrase = BAD_UPLOADS[bad]
    files = [upload(n, d) for n, d in build(raw_case_file, mr_series_files)]
    response = admin_client.post(
        reverse("cases:create"), case_form(files=files), **(XHR if xhr else {})
    )
    assert response.status_code == 400
    if xhr:
        assert phrase in " ".join(response.json()["errors"]["files"])
    else:
        assert phrase in html.unescape(response.content.decode())
    assert_nothing_stored(media_root)


@pytest.mark.parametrize("bad", sorted(BAD_UPLOADS))
def test_bad_series_upload_leaves_case_unchanged(
    admin_client, site_admin, media_root, raw_case_file, mr_series_files, bad
):
    case = CaseFactory(institution=site_admin.institution)
    build, phrase = BAD_UPLOADS[bad]
    files = [upload(n, d) for n, d in build(raw_case_file, mr_series_files)]
    response = admin_client.post(reverse("cases:upload", args=[case.pk]), {"files": files}, **XHR)
    assert response.status_code == 400
    assert phrase in " ".join(response.json()["errors"]["files"])
    assert_nothing_stored(media_root, cases_before=1)


@pytest.mark.parametrize("xhr", [True, False], ids=["xhr", "form"])
def test_empty_upload_refused(admin_client, media_root, xhr):
    response = admin_client.post(reverse("cases:create"), case_form(), **(XHR if xhr else {}))
    assert response.status_code == 400
    text = (
        " ".join(response.json()["errors"]["files"])
        if xhr
        else html.unescape(response.content.decode())
    )
    assert "no files were uploaded" in text
    assert_nothing_stored(media_root)


@pytest.mark.parametrize("xhr", [True, False], ids=["xhr", "form"])
def test_oversize_upload_refused(admin_client, media_root, raw_case_file, settings, xhr):
    settings.MAX_UPLOAD_BYTES = 100_000
    files = [upload("k.h5", raw_case_file.read_bytes())]
    response = admin_client.post(
        reverse("cases:create"), case_form(files=files), **(XHR if xhr else {})
    )
    # Refused on its Content-Length before the body is read (UploadSizeLimitMiddleware).
    assert response.status_code == 413
    text = (
        " ".join(response.json()["errors"]["files"])
        if xhr
        else html.unescape(response.content.decode())
    )
    assert "exceeds the upload limit of 100000 bytes" in text
    assert_nothing_stored(media_root)


def test_duplicate_subject_code_refused(admin_client, site_admin, media_root, mr_series_files):
    CaseFactory(institution=site_admin.institution, subject_code="TRIAL-001")
    files = [upload(n, d) for n, d in dicom_bytes(mr_series_files)]
    response = admin_client.post(reverse("cases:create"), case_form(files=files), **XHR)
    assert response.status_code == 400
    assert "already has a case" in " ".join(response.json()["errors"]["subject_code"])
    assert_nothing_stored(media_root, cases_before=1)


def test_failure_after_files_were_written_removes_them(
    admin_client, media_root, mr_series_files, monkeypatch
):
    """A failure while saving rows (after some files reached storage) leaves no files."""
    from mriplatform.cases import services

    def broken(*args, **kwargs):
        raise services.IngestError("storage quota exceeded")

    monkeypatch.setattr(services.Instance.objects, "bulk_create", broken)
    files = [upload(n, d) for n, d in dicom_bytes(mr_series_files)]
    response = admin_client.post(reverse("cases:create"), case_form(files=files), **XHR)
    assert response.status_code == 400
    assert "storage quota exceeded" in " ".join(response.json()["errors"]["files"])
    assert_nothing_stored(media_root)


# ------------------------------------------------------------------------------ QA viewer


def png_size(content: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(content))
    assert image.format == "PNG"
    return image.size


def test_slice_png_for_raw_dicom_and_reconstruction(
    admin_client, site_admin, media_root, raw_case_file, mr_series_files
):
    from mriplatform.jobs import services
    from tests.factories import ProtocolFactory

    admin_client.post(
        reverse("cases:create"), case_form(files=upload("k.h5", raw_case_file.read_bytes()))
    )
    admin_client.post(
        reverse("cases:create"),
        case_form("TRIAL-002", files=[upload(n, d) for n, d in dicom_bytes(mr_series_files)]),
    )
    raw = Series.objects.get(kind=Series.Kind.FASTMRI)
    dicom = Series.objects.get(kind=Series.Kind.DICOM)
    protocol = ProtocolFactory(acceleration=2.0)
    (job,), _ = services.submit_jobs([raw], [protocol], site_admin)
    assert services.run_job(job.pk) == "succeeded"
    job.refresh_from_db()
    recon = job.output_series

    for series, size, count in ((raw, (96, 96), 4), (dicom, (64, 64), 3), (recon, (96, 96), 4)):
        for index in (0, count - 1):
            response = admin_client.get(reverse("cases:slice", args=[series.uuid, index]))
            assert response.status_code == 200 and response["Content-Type"] == "image/png"
            assert png_size(response.content) == size
        assert (
            admin_client.get(reverse("cases:slice", args=[series.uuid, count])).status_code == 404
        )
        page = admin_client.get(reverse("cases:series", args=[series.uuid]))
        assert page.status_code == 200

    # The raw preview is the zero-filled RSS of the stored k-space: brightest where the head is.
    image = np.asarray(
        Image.open(io.BytesIO(admin_client.get(reverse("cases:slice", args=[raw.uuid, 1])).content))
    )
    assert image[40:56, 40:56].mean() > image[:6, :6].mean() + 50


def test_case_list_filters(admin_client, site_admin):
    CaseFactory(institution=site_admin.institution, subject_code="KNEE-1", anatomy="knee")
    CaseFactory(institution=site_admin.institution, subject_code="BRAIN-1", anatomy="brain")
    text = admin_client.get(reverse("cases:list"), {"anatomy": "brain"}).content.decode()
    assert "BRAIN-1" in text and "KNEE-1" not in text
    text = admin_client.get(reverse("cases:list"), {"q": "knee-"}).content.decode()
    assert "KNEE-1" in text and "BRAIN-1" not in text


def test_case_list_sorted_by_subject_code(admin_client, site_admin):
    """Cases are listed (and paginated) in subject-code order, not in database order."""
    codes = [f"S-{n:03d}" for n in (7, 1, 60, 3, 52, 12)]
    for code in codes:
        CaseFactory(institution=site_admin.institution, subject_code=code)
    response = admin_client.get(reverse("cases:list"))
    listed = [c.subject_code for c in response.context["page"].object_list]
    assert listed == sorted(codes)


def test_ismrmrd_upload_summary_and_preview(admin_client, media_root, tmp_path):
    from tests.cases import write_ismrmrd

    path = tmp_path / "meas.h5"
    write_ismrmrd(path, slices=2, coils=3, samples=16, width=12, lines=[0, 2, 4, 5, 6, 7, 8, 10])
    response = admin_client.post(
        reverse("cases:create"), case_form(files=upload("meas.h5", path.read_bytes())), **XHR
    )
    assert response.status_code == 200, response.content
    series = Series.objects.get()
    assert series.kind == Series.Kind.ISMRMRD
    assert (series.n_slices, series.n_coils, series.matrix) == (2, 3, [16, 12])
    assert series.fully_sampled is False
    png = admin_client.get(reverse("cases:slice", args=[series.uuid, 1]))
    assert png.status_code == 200 and png_size(png.content) == (12, 16)
