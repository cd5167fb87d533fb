"""Hostile uploads (issue 11, "Hardening"): every class of input that reached the disk,
crashed a worker or answered 500 is refused with a 4xx that names the problem, through the
upload form and the API, and nothing is stored."""

from __future__ import annotations

import html
import io
import math
import random

import h5py
import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.urls import reverse
from rest_framework.test import APIClient

from mriplatform.accounts.roles import Role
from mriplatform.audit.models import AuditEvent
from mriplatform.cases import deid, ingest
from mriplatform.cases.models import Case, Instance, Series
from mriplatform.cases.services import deid_context
from tests.cases import hostile
from tests.factories import CaseFactory

pytestmark = pytest.mark.django_db

XHR = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def stored_files(root) -> list:
    return sorted(p for p in root.rglob("*") if p.is_file())


def assert_nothing_stored(media_root, cases: int = 0) -> None:
    assert Case.objects.count() == cases
    assert not Series.objects.exists() and not Instance.objects.exists()
    assert stored_files(media_root) == []
    assert not AuditEvent.objects.filter(action="case.deidentify").exists()


@pytest.fixture
def site_admin(make_user):
    return make_user(Role.SITE_ADMIN)


@pytest.fixture
def admin_client(client, site_admin):
    client.force_login(site_admin)
    client.raise_request_exception = False  # a crash must show as a 500 here, not raise
    return client


@pytest.fixture
def api(site_admin):
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(site_admin)
    return client


def case_form(code: str = "TRIAL-001", **extra) -> dict:
    return {"subject_code": code, "anatomy": "knee", "field_strength_t": "3", **extra}


def post_form(client, name: str, data: bytes):
    return client.post(reverse("cases:create"), case_form(files=[upload(name, data)]), **XHR)


def post_api(api, name: str, data: bytes, **fields):
    payload = {**case_form(), **fields, "files": [upload(name, data)]}
    return api.post("/api/cases/", payload, format="multipart")


def refused(response, phrase: str, field: str = "files") -> None:
    assert response.status_code == 400, response.content[:500]
    body = response.json()
    errors = body["errors"][field] if "errors" in body else body[field]
    assert phrase in " ".join(map(str, errors)), errors


# ------------------------------------------------------------------------------- HDF5


def test_external_storage_hdf5_refused_and_server_file_never_copied(
    admin_client, api, media_root, tmp_path
):
    secret = tmp_path / "hostname"
    secret.write_bytes(b"SERVER-SECRET-HOSTNAME-0123456789")
    data = hostile.h5_external_storage(str(secret))
    for _ in range(2):  # accepted twice before the fix
        refused(post_form(admin_client, "k.h5", data), "external raw storage")
        refused(post_api(api, "k.h5", data), "external raw storage")
    assert_nothing_stored(media_root)
    refused(post_form(admin_client, "k.h5", hostile.h5_external_storage()), "external raw")


def test_virtual_dataset_onto_another_case_refused(admin_client, media_root):
    response = post_form(admin_client, "good.h5", hostile.fastmri_bytes())
    assert response.status_code == 200
    stored = Series.objects.get().file.path
    data = hostile.h5_virtual(stored)
    response = admin_client.post(
        reverse("cases:create"), case_form("TRIAL-002", files=[upload("v.h5", data)]), **XHR
    )
    refused(response, "virtual datasets")
    assert Case.objects.count() == 1 and Series.objects.count() == 1


@pytest.mark.parametrize(
    "build, phrase",
    [
        (lambda: hostile.h5_external_link("/etc/passwd"), "external links are refused"),
        (hostile.h5_soft_link, "soft links are refused"),
        (hostile.h5_million_slices, "in 1000000 chunks but the file holds 0"),
        (lambda: hostile.h5_huge_slice(random.Random(0)), "more than the limit"),
        (hostile.h5_ismrmrd_grid_bomb, "k-space grid of 1 slices"),
    ],
    ids=["external-link", "soft-link", "million-slices", "tib-per-slice", "ismrmrd-grid"],
)
def test_hdf5_declaring_what_it_does_not_hold_refused(admin_client, api, media_root, build, phrase):
    data = build()
    refused(post_form(admin_client, "k.h5", data), phrase)
    refused(post_api(api, "k.h5", data), phrase)
    assert_nothing_stored(media_root)


def test_million_slice_file_is_tiny():
    assert len(hostile.h5_million_slices()) < 4096


def test_nan_in_a_middle_slice_refused(admin_client, media_root):
    rng = random.Random(5)
    for _ in range(3):
        data = hostile.h5_nan_slice(rng, slices=7)
        with h5py.File(io.BytesIO(data), "r") as h5:
            kspace = h5["kspace"][()]
        bad = int(np.flatnonzero(~np.isfinite(kspace).reshape(7, -1).all(axis=1))[0])
        assert 0 < bad < 6  # neither the first nor the last slice
        refused(post_form(admin_client, "k.h5", data), f"slice {bad} contains NaN")
    assert_nothing_stored(media_root)


def test_stored_raw_file_is_a_fresh_copy_of_values(admin_client, media_root):
    data = hostile.fastmri_bytes(seed=4)
    assert post_form(admin_client, "k.h5", data).status_code == 200
    series = Series.objects.get()
    with h5py.File(io.BytesIO(data), "r") as original, h5py.File(series.file.path, "r") as out:
        np.testing.assert_array_equal(out["kspace"][()], original["kspace"][()])
        for name in out:
            plist = out[name].id.get_create_plist()
            assert plist.get_external_count() == 0
            assert plist.get_layout() in (h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED)
            assert dict(out[name].attrs) == {}


def test_deidentify_refuses_external_storage_directly(tmp_path):
    """The de-identifier audits its source too: it is not only the upload form's job."""
    path = tmp_path / "k.h5"
    path.write_bytes(hostile.h5_external_storage())
    case = CaseFactory.build(subject_code="S-1")
    with pytest.raises(deid.DeidentificationError, match="external raw storage"):
        deid.deidentify_fastmri_h5(path, tmp_path / "out.h5", deid_context(case))
    assert not (tmp_path / "out.h5").exists()


# ------------------------------------------------------------------------------ DICOM


@pytest.mark.parametrize(
    "build, phrase",
    [
        (hostile.dicom_unknown_vr, "Unknown Value Representation"),
        (hostile.dicom_wrong_length, "BytesLengthException"),
        (hostile.dicom_bad_integer_string, "is not a number (IS)"),
        (lambda rng: hostile.dicom_deep_sequence(300), "RecursionError"),
        (lambda rng: hostile.dicom_deep_sequence(40), "nested deeper than 16 levels"),
        (lambda rng: hostile.mr_bytes(Rows=0), "Rows/Columns are 0 x 64"),
        (lambda rng: hostile.mr_bytes(BitsAllocated=0), "BitsAllocated 0 is not 8, 16 or 32"),
        (lambda rng: hostile.mr_bytes(BitsAllocated=12), "BitsAllocated 12 is not"),
        (
            lambda rng: hostile.mr_bytes(PhotometricInterpretation="MONOCHROME9"),
            "is not MONOCHROME1/2",
        ),
        (hostile.dicom_garbage_jpeg, "pixel data cannot be decoded"),
    ],
    ids=[
        "unknown-vr",
        "wrong-length",
        "bad-is",
        "depth-300",
        "depth-40",
        "rows-0",
        "bits-0",
        "bits-12",
        "photometric",
        "garbage-jpeg",
    ],
)
def test_malformed_dicom_refused(admin_client, api, media_root, build, phrase):
    rng = random.Random(11)
    for _ in range(2):
        data = build(rng)
        refused(post_form(admin_client, "IM0001.dcm", data), phrase)
        refused(post_api(api, "IM0001.dcm", data), phrase)
    assert_nothing_stored(media_root)


def test_shallow_sequences_still_accepted(admin_client, media_root):
    assert post_form(admin_client, "IM1.dcm", hostile.dicom_deep_sequence(5)).status_code == 200


def test_undecodable_stored_slice_answers_422_not_500(admin_client, media_root):
    assert post_form(admin_client, "IM1.dcm", hostile.mr_bytes()).status_code == 200
    series = Series.objects.get()
    url = reverse("cases:slice", args=[series.uuid, 0])
    assert admin_client.get(url).status_code == 200
    # A file stored before ingest decoded pixels (or damaged on disk) must not break the page.
    path = series.instances.get().file.path
    with open(path, "r+b") as fh:
        fh.truncate(400)
    response = admin_client.get(url)
    assert response.status_code == 422
    assert b"cannot be decoded" in response.content
    assert admin_client.get(reverse("cases:slice", args=[series.uuid, 5])).status_code == 404
    assert admin_client.get(reverse("cases:series", args=[series.uuid])).status_code == 200


# -------------------------------------------------------------------------------- zip


def test_zip_of_small_all_zero_members_refused_before_inflating(admin_client, media_root):
    data = hostile.zip_of_zeros(count=10, size=1024**2)
    assert len(data) < 20_000
    refused(post_form(admin_client, "s.zip", data), "refused as a possible zip bomb")
    assert_nothing_stored(media_root)


def test_zip_inflating_past_its_budget_stops_early():
    """Members that each pass the per-member check cannot together inflate more than
    the archive's ratio budget: 400 members of 60 kB of zeros from ~40 kB of zip."""
    data = hostile.zip_of_zeros(count=400, size=60_000)
    with pytest.raises(ingest.IngestError, match="exceeds the limit of .* for this archive"):
        ingest.extract_zip(data, "z.zip")


@pytest.mark.parametrize(
    "build, phrase",
    [
        (lambda: hostile.zip_corrupt_deflate(random.Random(2)), "is corrupt (Error -3"),
        (hostile.zip_negative_offset, "negative seek"),
    ],
    ids=["corrupt-deflate", "negative-seek"],
)
def test_corrupt_zip_refused(admin_client, api, media_root, build, phrase):
    data = build()
    refused(post_form(admin_client, "s.zip", data), phrase)
    refused(post_api(api, "s.zip", data), phrase)
    assert_nothing_stored(media_root)


def test_ordinary_zip_still_accepted(admin_client, media_root):
    data = hostile.zipped([("IM1.dcm", hostile.mr_bytes())])
    assert post_form(admin_client, "s.zip", data).status_code == 200


# ----------------------------------------------------------------------------- fields


@pytest.mark.parametrize("code", ["DOE^JANE", "A=B", "A\\B", "A\tB", "A\x01B"])
def test_subject_code_with_dicom_delimiters_refused(admin_client, api, media_root, code):
    data = hostile.mr_bytes()
    response = admin_client.post(
        reverse("cases:create"), case_form(code, files=[upload("IM1.dcm", data)]), **XHR
    )
    refused(response, "the subject code may not contain", field="subject_code")
    refused(post_api(api, "IM1.dcm", data, subject_code=code), "may not", field="subject_code")
    assert_nothing_stored(media_root)


@pytest.mark.parametrize("value", ["NaN", "nan", "inf", "-inf", "1e309", "-1.5", "0", "31"])
def test_impossible_field_strength_refused(admin_client, api, media_root, value):
    data = hostile.mr_bytes()
    response = admin_client.post(
        reverse("cases:create"),
        case_form(field_strength_t=value, files=[upload("IM1.dcm", data)]),
        **XHR,
    )
    assert response.status_code == 400
    assert "field_strength_t" in response.json()["errors"]
    response = post_api(api, "IM1.dcm", data, field_strength_t=value)
    assert response.status_code == 400 and "field_strength_t" in response.json()
    assert_nothing_stored(media_root)
    # The lists everyone reads still answer.
    assert admin_client.get(reverse("cases:list")).status_code == 200
    assert api.get("/api/cases/").status_code == 200


def test_database_refuses_impossible_field_strength(site_admin):
    from django.db import IntegrityError, transaction

    for value in (math.nan, math.inf, -1.0):
        with pytest.raises(IntegrityError), transaction.atomic():
            CaseFactory(institution=site_admin.institution, field_strength_t=value)


@pytest.mark.parametrize("field, length", [("description", 201), ("vendor", 65), ("notes", 4001)])
def test_over_long_text_refused_by_api(api, media_root, field, length):
    response = post_api(api, "IM1.dcm", hostile.mr_bytes(), **{field: "x" * length})
    assert response.status_code == 400 and field in response.json()
    assert_nothing_stored(media_root)


def test_over_long_description_refused_when_adding_a_series(api, site_admin, media_root):
    case = CaseFactory(institution=site_admin.institution)
    response = api.post(
        f"/api/cases/{case.pk}/series/",
        {"files": [upload("IM1.dcm", hostile.mr_bytes())], "description": "d" * 500},
        format="multipart",
    )
    assert response.status_code == 400 and "description" in response.json()
    assert_nothing_stored(media_root, cases=1)


def test_stored_bad_subject_code_gives_4xx_when_adding_a_series(admin_client, site_admin):
    case = CaseFactory(institution=site_admin.institution, subject_code="OLD^CODE")
    response = admin_client.post(
        reverse("cases:upload", args=[case.pk]),
        {"files": [upload("IM1.dcm", hostile.mr_bytes())]},
        **XHR,
    )
    refused(response, "cannot be de-identified")


# ---------------------------------------------------------------------- request size


class RecordingHandler(FileUploadHandler):
    """Records that the upload machinery started reading a body."""

    calls: list[str] = []

    def new_file(self, *args, **kwargs):
        RecordingHandler.calls.append("new_file")
        return super().new_file(*args, **kwargs)

    def receive_data_chunk(self, raw_data, start):
        return raw_data

    def file_complete(self, file_size):
        return None


def test_oversized_body_refused_on_content_length_before_reading(admin_client, api, settings):
    settings.FILE_UPLOAD_HANDLERS = ["tests.cases.test_hostile_uploads.RecordingHandler"]
    RecordingHandler.calls = []
    limit = settings.MAX_UPLOAD_BYTES
    assert limit == 4 * 1024**3
    for client, url in ((admin_client, reverse("cases:create")), (api, "/api/cases/")):
        # Declares 4 GiB + 1 byte but sends a few: nothing may read (or wait for) the body.
        response = client.generic(
            "POST",
            url,
            b"x" * 100,
            content_type="multipart/form-data; boundary=BoUnDaRy",
            CONTENT_LENGTH=str(limit + 1),
        )
        assert response.status_code == 413
        assert str(limit + 1) in response.content.decode()
    assert RecordingHandler.calls == []
    assert Case.objects.count() == 0


def test_small_limit_refuses_real_upload_with_413(admin_client, media_root, settings):
    settings.MAX_UPLOAD_BYTES = 5_000
    response = post_form(admin_client, "IM1.dcm", hostile.mr_bytes())
    assert response.status_code == 413
    assert "exceeds the upload limit" in " ".join(response.json()["errors"]["files"])
    response = admin_client.post(reverse("cases:create"), case_form(files=[upload("a", b"x")]))
    assert response.status_code == 400  # a small body goes through to the form
    assert "neither a DICOM" in html.unescape(response.content.decode())
    assert_nothing_stored(media_root)


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=XyZ", "text/plain"])
def test_post_without_usable_body_answers_400_not_the_page(
    admin_client, site_admin, media_root, content_type
):
    case = CaseFactory(institution=site_admin.institution)
    for url in (reverse("cases:create"), reverse("cases:upload", args=[case.pk])):
        response = admin_client.generic("POST", url, b"\x00garbage", content_type=content_type)
        assert response.status_code == 400
        page = html.unescape(response.content.decode())
        assert "This field is required" in page or "no files were uploaded" in page
    assert_nothing_stored(media_root, cases=1)


def test_nan_in_an_ismrmrd_readout_refused(admin_client, media_root):
    rng = random.Random(8)
    for _ in range(3):
        response = post_form(admin_client, "raw.h5", hostile.h5_ismrmrd_nan(rng))
        refused(response, "contains NaN or infinite values")
    assert_nothing_stored(media_root)


def test_migration_clears_impossible_field_strengths_already_stored(site_admin):
    """Cases the API accepted before the fix (NaN, infinity, negative) broke every list that
    showed them; migration 0002 makes them unknown so its constraint can be added."""
    from importlib import import_module

    from django.apps import apps
    from django.db import connection

    migration = import_module("mriplatform.cases.migrations.0002_case_field_validation")
    constraint = next(c for c in Case._meta.constraints if c.name == "field_strength_in_range")
    with connection.schema_editor() as editor:  # the database as it was before 0002
        editor.remove_constraint(Case, constraint)
    values = [1.5, None, 0.35, math.nan, math.inf, -math.inf, -1.0, 0.0, 99.0]
    cases = [
        CaseFactory(institution=site_admin.institution, field_strength_t=value) for value in values
    ]
    migration.clear_impossible_field_strengths(apps, None)
    if connection.vendor == "postgresql":  # run the deferred FK checks before ALTER TABLE
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with connection.schema_editor() as editor:
        editor.add_constraint(Case, constraint)
    kept = [Case.objects.get(pk=case.pk).field_strength_t for case in cases]
    assert kept == [1.5, None, 0.35, None, None, None, None, None, None]


def test_fastmri_companions_of_the_wrong_type_refused(admin_client, media_root):
    """A string or NaN mask, object references or a wrong-sized reference image would be
    copied into the stored file and break every job that reads it."""
    rng = random.Random(3)
    phrases = ("mask must be numeric", "mask contains NaN", "(slices, H, W) with 3 slices")
    for _ in range(8):
        response = post_form(admin_client, "k.h5", hostile.h5_bad_companion(rng))
        assert response.status_code == 400
        errors = " ".join(response.json()["errors"]["files"])
        assert any(phrase in errors for phrase in phrases), errors
    assert_nothing_stored(media_root)


def test_zip_entry_count_checked_on_the_end_record_first(monkeypatch):
    """The count comes from the end-of-central-directory record, before zipfile parses a
    single directory entry (a 4 GiB central directory would be millions of objects)."""
    data = hostile.zipped([(f"IM{i}.dcm", b"x") for i in range(30)])
    opened = []
    monkeypatch.setattr(ingest.zipfile, "ZipFile", lambda *a, **k: opened.append(a))
    with pytest.raises(ingest.IngestError, match="30 entries in the archive, more than"):
        ingest.extract_zip(data, "z.zip", max_members=10)
    assert opened == []


def test_series_of_many_files_reaches_the_ingest(admin_client, media_root, settings):
    """More than Django's default 100 files: the upload is judged by the ingest (which
    names the problem), not refused by the request parser with a bare 400."""
    assert settings.DATA_UPLOAD_MAX_NUMBER_FILES == ingest.MAX_ZIP_MEMBERS
    files = [upload(f"IM{i:04d}.dcm", b"not dicom") for i in range(150)]
    response = admin_client.post(reverse("cases:create"), case_form(files=files), **XHR)
    refused(response, "neither a DICOM file")
    assert_nothing_stored(media_root)


def test_copy_values_writes_fresh_datasets(tmp_path):
    """Values equal bit for bit; layout, filters and attributes are the copier's own."""
    from tests.cases import random_kspace

    kspace = random_kspace((5, 2, 16, 12))
    with h5py.File(tmp_path / "src.h5", "w") as src:
        src.create_dataset("gz", data=kspace, chunks=(5, 1, 4, 12), compression="gzip")
        src["gz"].attrs["operator"] = "PHIMARK"
        src.create_dataset("plain", data=kspace.real)
    source = io.BytesIO(hostile.ismrmrd_bytes())
    with (
        h5py.File(tmp_path / "src.h5", "r") as src,
        h5py.File(source, "r") as raw,
        h5py.File(tmp_path / "out.h5", "w") as out,
    ):
        gz = deid.copy_values(src["gz"], out, "gz")
        plain = deid.copy_values(src["plain"], out, "plain")
        table = deid.copy_values(raw["dataset/data"], out, "data")
        np.testing.assert_array_equal(gz[()], kspace)
        assert gz.compression == "gzip" and gz.chunks == (5, 2, 16, 12)
        assert dict(gz.attrs) == {}
        assert plain.chunks is None and plain.compression is None
        np.testing.assert_array_equal(plain[()], kspace.real)
        original = raw["dataset/data"][()]
        for row, copied in zip(original, table[()], strict=True):
            np.testing.assert_array_equal(row["data"], copied["data"])
            assert row["head"].tobytes() == copied["head"].tobytes()
