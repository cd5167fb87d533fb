"""Upload classification and validation: each unusable input is refused with a message
that names the problem; good inputs give the right summary."""

from __future__ import annotations

import copy
import io
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from mriplatform.cases import ingest
from mriplatform.cases.ingest import IngestError, extract_zip, inspect_upload
from tests.cases import ismrmrd_header, write_fastmri, write_ismrmrd


class Upload(io.BytesIO):
    """What Django's InMemoryUploadedFile offers: a named, seekable byte stream."""

    def __init__(self, name: str, data: bytes):
        super().__init__(data)
        self.name = name
        self.size = len(data)


class DiskUpload:
    """What Django's TemporaryUploadedFile offers: the upload is already on disk."""

    def __init__(self, path):
        self.name = path.name
        self._path = str(path)
        self.file = open(path, "rb")

    def temporary_file_path(self) -> str:
        return self._path

    def read(self, size: int = -1) -> bytes:
        return self.file.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.file.seek(offset, whence)


def mr() -> Dataset:
    return pydicom.dcmread(get_testdata_file("MR_small.dcm"))


def encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def series(n: int = 3) -> list[Dataset]:
    """``n`` instances of one series with distinct SOP Instance UIDs, in reverse order."""
    base = mr()
    out = []
    for number in range(n, 0, -1):
        ds = copy.deepcopy(base)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = number
        out.append(ds)
    return out


def uploads(datasets: list[Dataset]) -> list[Upload]:
    return [Upload(f"IM{i:04d}.dcm", encode(ds)) for i, ds in enumerate(datasets)]


def zipped(members: dict[str, bytes], name: str = "series.zip") -> Upload:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return Upload(name, buffer.getvalue())


def refused(files, phrase: str) -> IngestError:
    with pytest.raises(IngestError, match=phrase) as caught:
        inspect_upload(files)
    return caught.value


# ----------------------------------------------------------------------------- DICOM


def test_dicom_series_accepted_and_ordered():
    plan = inspect_upload(uploads(series(3)))
    assert plan.kind == "dicom"
    assert [item.instance_number for item in plan.dicom_items] == [1, 2, 3]
    summary = plan.summary
    assert summary["n_slices"] == 3 and summary["matrix"] == [64, 64]
    assert summary["vendor"] == "TOSHIBA_MEC" and summary["sop_class"] == "MR Image"
    assert summary["te_ms"] == 240.0
    assert "PatientName" not in str(summary) and "CompressedSamples" not in str(summary)
    assert plan.warnings == []
    data = plan.dicom_items[0].read_bytes()
    assert pydicom.dcmread(io.BytesIO(data)).InstanceNumber == 1


def test_dicom_zip_accepted():
    members = {f"DICOM/S1/IM{i}": encode(ds) for i, ds in enumerate(series(4))}
    members["DICOM/DICOMDIR"] = b"index"  # skipped
    members["__MACOSX/DICOM/._IM0"] = b"fork"  # skipped
    plan = inspect_upload([zipped(members)])
    assert plan.kind == "dicom" and plan.summary["n_slices"] == 4


def test_not_dicom_nor_hdf5():
    refused([Upload("notes.txt", b"patient notes" * 50)], "notes.txt: neither a DICOM")
    refused([Upload("empty.dcm", b"")], "empty.dcm: the file is empty")
    refused([], "no files were uploaded")


def test_truncated_dicom():
    data = encode(mr())
    refused([Upload("cut.dcm", data[: len(data) // 2])], "cut.dcm: .*truncated")
    refused([Upload("cut.dcm", data[:300])], "cut.dcm: corrupt or truncated DICOM")
    refused([Upload("cut.dcm", data[:1000])], "cut.dcm: no pixel data .the file may be truncated")


def test_non_mr_dicom():
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    refused([Upload("ct.dcm", encode(ct))], "ct.dcm: modality is CT, not MR")
    spectro = mr()
    spectro.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4.2"
    refused(uploads([spectro]), "MR Spectroscopy Storage is not MR Image")


def test_mixed_series():
    datasets = series(3)
    datasets[0].SeriesInstanceUID = generate_uid()
    refused(uploads(datasets), "mixes 2 series")


def test_dicom_mixed_with_hdf5():
    buffer = io.BytesIO()
    write_fastmri(buffer)
    refused(uploads(series(1)) + [Upload("raw.h5", buffer.getvalue())], "mixes DICOM and HDF5")


def test_missing_pixel_data():
    ds = mr()
    del ds.PixelData
    refused(uploads([ds]), "no pixel data")


def test_inconsistent_matrix():
    datasets = series(2)
    small = datasets[1]
    cropped = small.pixel_array[:32, :32].tobytes()
    small.Rows, small.Columns = 32, 32
    small.PixelData = cropped
    refused(uploads(datasets), "inconsistent matrix sizes within the series: 32x32, 64x64")


def test_duplicate_sop_instance_uid():
    datasets = series(2)
    datasets[1].SOPInstanceUID = datasets[0].SOPInstanceUID
    refused(uploads(datasets), "duplicate SOPInstanceUID")


def test_burned_in_annotation_refused_at_upload():
    ds = mr()
    ds.BurnedInAnnotation = "YES"
    refused(uploads([ds]), "burned-in annotation")


def test_several_problems_reported_together():
    datasets = series(7)
    for ds in datasets:
        ds.Modality = "CT"
    error = refused(uploads(datasets), "modality is CT")
    assert len(error.problems) == 7 and "and 2 more problem(s)" in str(error)


# ----------------------------------------------------------------------------- zips


def test_zip_with_parent_path_refused():
    refused([zipped({"../../etc/evil.dcm": encode(mr())})], "leaves the archive folder")
    refused([zipped({"/abs/evil.dcm": encode(mr())})], "is absolute")


def test_zip_bomb_refused():
    bomb = zipped({"IM1": b"\x00" * (8 * 1024**2)})
    refused([bomb], "possible zip bomb")


def test_zip_limits():
    members = {f"IM{i}": encode(ds) for i, ds in enumerate(series(3))}
    archive = zipped(members).getvalue()
    with pytest.raises(IngestError, match="3 files in the archive, more than the limit of 2"):
        extract_zip(archive, "a.zip", max_members=2)
    with pytest.raises(IngestError, match="exceeds the limit"):
        extract_zip(archive, "a.zip", max_bytes=20_000)
    assert len(extract_zip(archive, "a.zip")) == 3


def test_zip_nested_or_not_dicom_refused():
    inner = zipped({"IM1": encode(mr())}).getvalue()
    refused([zipped({"inner.zip": inner})], "nested archives")
    refused([zipped({"readme.txt": b"hello"})], "readme.txt: not a DICOM file")
    refused([Upload("broken.zip", b"PK\x03\x04" + b"\x00" * 40)], "not a readable zip")


# ----------------------------------------------------------------------------- HDF5


def h5_upload(tmp_path, name="raw.h5", **kwargs) -> Upload:
    path = tmp_path / name
    write_fastmri(path, **kwargs)
    return Upload(name, path.read_bytes())


def test_fastmri_accepted_with_summary(tmp_path):
    mask = np.zeros(12, np.float32)
    mask[[0, 3, 5, 6, 7, 9]] = 1
    plan = inspect_upload([h5_upload(tmp_path, mask=mask)])
    assert plan.kind == "fastmri_h5" and plan.raw_file is not None
    summary = plan.summary
    assert summary["n_slices"] == 3 and summary["n_coils"] == 4
    assert summary["matrix"] == [16, 12]
    assert summary["fully_sampled"] is False and summary["acceleration"] == 2.0
    assert summary["field_strength_t"] == pytest.approx(2.89362)
    assert summary["vendor"] == "SIEMENS" and summary["model"] == "Skyra"
    assert summary["acquisition"] == "CORPD_FBK" and summary["has_reference"] is True
    assert "PHIMARK" not in str(summary)
    assert plan.warnings == ["not kept by de-identification: notes"]


def test_fastmri_from_disk_upload_and_fully_sampled(tmp_path):
    path = tmp_path / "full.h5"
    write_fastmri(path, shape=(2, 8, 10))
    upload = DiskUpload(path)
    plan = inspect_upload([upload])
    upload.file.close()
    assert plan.summary["n_coils"] == 1 and plan.summary["fully_sampled"] is True
    assert not any("no ISMRMRD header" in w for w in plan.warnings)

    bare = tmp_path / "bare.h5"
    with h5py.File(bare, "w") as h5:
        h5.create_dataset("kspace", data=np.ones((1, 4, 4), np.complex64))
    bare_upload = DiskUpload(bare)
    assert "no ISMRMRD header" in inspect_upload([bare_upload]).warnings[0]
    bare_upload.file.close()


def test_truncated_hdf5(tmp_path):
    data = h5_upload(tmp_path).getvalue()
    refused([Upload("cut.h5", data[: len(data) // 2])], "cut.h5: corrupt or truncated HDF5")


def _h5(build) -> Upload:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        build(h5)
    return Upload("raw.h5", buffer.getvalue())


def test_fastmri_layout_errors():
    complex_ks = np.ones((2, 3, 8, 6), np.complex64)
    refused(
        [_h5(lambda h5: h5.create_dataset("image", data=np.ones(3)))],
        "neither fastMRI .no 'kspace' dataset. nor ISMRMRD",
    )
    refused(
        [_h5(lambda h5: h5.create_dataset("kspace", data=np.ones((2, 3, 8, 6))))],
        "k-space must be complex, found float64",
    )
    refused(
        [_h5(lambda h5: h5.create_dataset("kspace", data=np.ones((8, 6), np.complex64)))],
        "rank 3 .* or 4 .*found rank 2",
    )

    def bad_mask(h5):
        h5.create_dataset("kspace", data=complex_ks)
        h5.create_dataset("mask", data=np.ones(5, np.float32))

    refused([_h5(bad_mask)], "mask has 5 entries but k-space has 6 phase-encode columns")

    def nan(h5):
        h5.create_dataset("kspace", data=complex_ks * np.nan)

    refused([_h5(nan)], "NaN")


def test_ismrmrd_accepted_with_summary(tmp_path):
    path = tmp_path / "raw.h5"
    write_ismrmrd(path, slices=2, coils=3, samples=16, width=12, lines=[0, 2, 4, 6, 8, 10])
    plan = inspect_upload([Upload("raw.h5", path.read_bytes())])
    assert plan.kind == "ismrmrd_h5"
    summary = plan.summary
    assert summary["n_slices"] == 2 and summary["n_coils"] == 3
    assert summary["matrix"] == [16, 12] and summary["fully_sampled"] is False
    assert summary["acceleration"] == 2.0 and summary["vendor"] == "SIEMENS"


def test_ismrmrd_layout_errors(tmp_path):
    def no_data(h5):
        h5.create_group("dataset").create_dataset("xml", data=np.bytes_(b"<x/>"))

    refused([_h5(no_data)], "ISMRMRD file without 'dataset/data'")
    refused(
        [_h5(lambda h5: h5.create_group("dataset"))], "without 'dataset/xml' and 'dataset/data'"
    )

    path = tmp_path / "raw.h5"
    write_ismrmrd(path)
    with h5py.File(path, "a") as h5:
        del h5["dataset/xml"]
        h5["dataset"].create_dataset("xml", data=np.bytes_(b"<notismrmrd/>"))
    refused([Upload("raw.h5", path.read_bytes())], "not an ISMRMRD header")


def test_only_one_hdf5_per_upload(tmp_path):
    refused(
        [h5_upload(tmp_path, "a.h5"), h5_upload(tmp_path, "b.h5")], "2 HDF5 files uploaded together"
    )


def test_hdf5_in_zip_refused(tmp_path):
    data = h5_upload(tmp_path).getvalue()
    refused([zipped({"raw.h5": data})], "send raw HDF5 files on their own")


def test_parse_header_rejects_external_entities():
    xxe = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">&e;</ismrmrdHeader>'
    )
    with pytest.raises(IngestError, match="malformed or unsafe"):
        ingest.parse_ismrmrd_header(xxe)


def _patch_heads(path, change) -> None:
    with h5py.File(path, "a") as h5:
        table = h5["dataset/data"]
        rows = table[()]
        change(rows["head"])
        table[...] = rows


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        (lambda head: head["flags"].__setitem__(2, 1 << 21), "reversed .EPI. readouts"),
        (lambda head: head["idx"]["contrast"].__setitem__(2, 1), "several values of idx.contrast"),
        (lambda head: head["idx"]["repetition"].__setitem__(4, 1), "idx.repetition"),
        (lambda head: head["idx"]["kspace_encode_step_2"].__setitem__(3, 2), "3D ISMRMRD"),
        (lambda head: head["flags"].__setitem__(slice(None), 1 << 18), "no imaging readouts"),
    ],
)
def test_ismrmrd_unsupported_acquisitions(tmp_path, change, phrase):
    path = tmp_path / "raw.h5"
    write_ismrmrd(path)
    _patch_heads(path, change)
    refused([Upload("raw.h5", path.read_bytes())], phrase)


def test_ismrmrd_non_cartesian_refused(tmp_path):
    path = tmp_path / "raw.h5"
    write_ismrmrd(path)
    with h5py.File(path, "a") as h5:
        xml = h5["dataset/xml"][0]
        xml = xml.decode() if isinstance(xml, bytes) else xml
        h5["dataset/xml"][0] = xml.replace(">cartesian<", ">radial<")
    refused([Upload("raw.h5", path.read_bytes())], "radial ISMRMRD data is not supported")


def test_pydicom_truncated_mr_and_malformed_values():
    truncated = Path(get_testdata_file("MR_truncated.dcm")).read_bytes()
    refused([Upload("MR_truncated.dcm", truncated)], "pixel data truncated .8130 of 8192 bytes")
    bad = Path(get_testdata_file("badVR.dcm")).read_bytes()
    refused([Upload("badVR.dcm", bad)], "malformed DICOM attribute value")


def test_other_transfer_syntaxes_accepted():
    for name in ("MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm"):
        data = Path(get_testdata_file(name)).read_bytes()
        plan = inspect_upload([Upload(name, data)])
        assert plan.summary["matrix"] == [64, 64], name


def test_fastmri_zero_padded_columns_are_not_undersampling(tmp_path):
    """fastMRI pads k-space to the encoded matrix; the header's encoding limits say which
    columns were acquired (left = 12 // 2 - 5 = 1, right = 1 + 9 + 1 = 11)."""
    path = tmp_path / "padded.h5"
    write_fastmri(path, shape=(2, 3, 16, 12), header=ismrmrd_header((16, 12), 2, 3, 5, 9))
    with h5py.File(path, "a") as h5:
        kspace = h5["kspace"][()]
        kspace[..., [0, 11]] = 0
        h5["kspace"][...] = kspace
    summary = inspect_upload([Upload("padded.h5", path.read_bytes())]).summary
    assert summary["acquired_columns"] == [1, 11]
    assert summary["fully_sampled"] is True and summary["acceleration"] == 1.0
    with h5py.File(path, "a") as h5:
        kspace[..., 2:11:2] = 0
        h5["kspace"][...] = kspace
    summary = inspect_upload([Upload("padded.h5", path.read_bytes())]).summary
    assert summary["fully_sampled"] is False and summary["acceleration"] == 2.0


def test_ismrmrd_partial_fourier_summary(tmp_path):
    path = tmp_path / "pf.h5"
    write_ismrmrd(path, width=12, center=4, maximum=8)
    summary = inspect_upload([Upload("pf.h5", path.read_bytes())]).summary
    assert summary["matrix"] == [16, 12] and summary["acquired_columns"] == [2, 11]
    assert summary["fully_sampled"] is True


def test_plan_feeds_deidentification_as_the_services_do(tmp_path):
    """The sequence mriplatform.cases.services runs: inspect, then de-identify each item."""
    from mriplatform.cases import deid

    context = deid.DeidContext("SITE-7", b"k" * 32, -100)
    plan = inspect_upload(uploads(series(3)))
    reports = []
    for item in plan.dicom_items:
        data, report = deid.deidentify_dicom_bytes(item.read_bytes(), context)
        assert pydicom.dcmread(io.BytesIO(data)).PatientID == "SITE-7"
        reports.append(report)
    merged = deid.merge_reports(reports)
    assert merged["instances"] == 3 and merged["profile"].startswith("DICOM PS3.15")
    assert len({r.sop_instance_uid for r in reports}) == 3
    assert len({r.series_instance_uid for r in reports}) == 1

    raw = h5_upload(tmp_path)
    plan = inspect_upload([raw])
    out = tmp_path / "stored.h5"
    report = deid.deidentify_raw_h5(plan.raw_file, out, context, kind=plan.kind)
    assert report.to_dict()["profile"] and b"PHIMARK" not in out.read_bytes()
