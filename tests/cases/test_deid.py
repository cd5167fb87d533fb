"""De-identification: every Basic-profile attribute filled with a marker must not survive.

The fixture instance starts from pydicom's MR_small.dcm and gets every attribute of Table
E.1-1 (in the top level and inside a nested sequence), private attributes, an overlay and
identifying file meta, each holding a marker that is searched for in the output bytes.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from xml.etree import ElementTree as ET

import h5py
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from mriplatform.cases import deid
from mriplatform.cases.dicom_tags import (
    BASIC_PROFILE,
    CLEAN_DESCRIPTORS,
    PATIENT_CHARACTERISTICS,
)
from mriplatform.cases.ingest import ISMRMRD_NS as NS
from mriplatform.cases.ingest import IngestError
from tests.cases import (
    ACCESSION,
    BIRTHDATE,
    STUDY_DATE,
    UID_ROOT,
    write_fastmri,
    write_ismrmrd,
)

MARK = "PHIMARK"
UID_MARK = "1.2.826.0.1.3680043.99999."
DATE = "20010203"
SHIFT = -400
SHIFTED = (dt.date(2001, 2, 3) + dt.timedelta(days=SHIFT)).strftime("%Y%m%d")
NAME_MARK = f"{MARK}00100010"
ID_MARK = f"{MARK}00100020"


def ctx(secret: bytes = b"s" * 32, **options) -> deid.DeidContext:
    return deid.DeidContext("SITE-0042", secret, SHIFT, **options)


def marked_value(tag: int, vr: str):
    """A value of ``vr`` that carries a findable marker (text, UID, date) for ``tag``."""
    text = f"{MARK}{tag:08X}"
    if tag in CLEAN_DESCRIPTORS:
        return f"T2 FSE {NAME_MARK} {ID_MARK}"
    if tag == 0x00100040:
        return "F"  # Patient's Sex is kept by the option, so it holds no marker
    if vr in ("AE", "CS", "LO", "LT", "SH", "ST", "UC", "UT", "PN"):
        return text
    if vr == "UR":
        return f"http://{text.lower()}.example"
    if vr == "UI":
        return f"{UID_MARK}{tag}"
    if vr == "DA":
        return DATE
    if vr == "DT":
        return DATE + "101112.5+0100"
    if vr == "TM":
        return "101112"
    if vr == "AS":
        return "042Y"
    if vr == "DS":
        return "77.5"
    if vr == "IS":
        return "777"
    if vr in ("US", "SS", "UL", "SL"):
        return 7
    if vr in ("OB", "UN", "OW"):
        return text.encode() + b"\x00"
    raise AssertionError(f"no marker for VR {vr}")


def nested_item(tag: int) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    item.ReferencedSOPInstanceUID = f"{UID_MARK}{tag}.1"
    item.add(DataElement(0x00080080, "LO", f"{MARK}NESTED{tag:08X}"))
    item.add(DataElement(0x00100010, "PN", f"{MARK}NESTEDNAME"))
    item.add(DataElement(0x00080020, "DA", DATE))
    item.private_block(0x0029, "PHIMARK CREATOR", create=True).add_new(0x10, "LO", MARK)
    return item


def marked_dataset() -> Dataset:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    for tag, (_code, vr, _name) in BASIC_PROFILE.items():
        if tag >> 16 in (0x0000, 0x0002):
            continue  # command and file meta groups are not dataset attributes
        if vr == "SQ":
            ds.add(DataElement(tag, "SQ", Sequence([nested_item(tag)])))
        else:
            ds.add(DataElement(tag, vr, marked_value(tag, vr)))
    # Same original UID in a reference as in the instance itself: must map identically.
    ds.SOPInstanceUID = f"{UID_MARK}4242"
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = f"{UID_MARK}4242"
    ds.PatientName = NAME_MARK
    ds.PatientID = ID_MARK
    block = ds.private_block(0x0019, "PHIMARK VENDOR", create=True)
    block.add_new(0x10, "LO", f"{MARK}PRIVATENAME")
    block.add_new(0x11, "SQ", Sequence([nested_item(1)]))
    ds.add_new(0x60003000, "OW", (MARK * 4).encode())
    ds.add_new(0x60004000, "LT", f"{MARK}OVERLAY")
    ds.add_new(0x50000010, "LO", f"{MARK}CURVE")
    ds.add_new(0x00181250, "SH", "HEAD COIL")  # not in the table: kept
    ds.add_new(0x00181020, "LO", "VE11C")  # Software Versions: not in the table
    ds.file_meta.SourceApplicationEntityTitle = f"{MARK}AET"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def original() -> bytes:
    return to_bytes(marked_dataset())


@pytest.fixture(scope="module")
def result(original):
    return deid.deidentify_dicom_bytes(original, ctx())


def walk(ds: Dataset):
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value:
                yield from walk(item)


def test_fixture_really_holds_every_marker(original):
    ds = pydicom.dcmread(io.BytesIO(original))
    present = {int(e.tag) for e in ds}
    listed = {t for t in BASIC_PROFILE if t >> 16 not in (0x0000, 0x0002)}
    assert listed <= present
    assert len(listed) > 600
    assert original.count(MARK.encode()) > 400


def test_no_marker_survives_anywhere(result):
    data, _report = result
    lowered = data.lower()
    assert MARK.lower().encode() not in lowered
    assert UID_MARK.encode() not in data
    assert DATE.encode() not in data
    ds = pydicom.dcmread(io.BytesIO(data))
    assert not any(e.tag.is_private for e in walk(ds))
    assert not any(0x5000 <= e.tag.group <= 0x60FF for e in ds)


def test_dates_shifted_by_the_offset_and_times_kept(result):
    ds = pydicom.dcmread(io.BytesIO(result[0]))
    dates = [e for e in walk(ds) if e.VR == "DA" and e.value]
    datetimes = [e for e in walk(ds) if e.VR == "DT" and e.value]
    assert len(dates) > 40 and len(datetimes) > 40
    assert {str(e.value) for e in dates} == {SHIFTED}
    assert {str(e.value) for e in datetimes} == {SHIFTED + "101112.5+0100"}
    assert ds.StudyDate == SHIFTED and ds.StudyTime == "101112"
    assert ds.ReferencedImageSequence[0].StudyDate == SHIFTED  # nested dates too
    assert ds.PatientBirthDate == ""
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"


def test_uids_consistent_within_case_and_different_across_cases(original, result):
    ds = pydicom.dcmread(io.BytesIO(result[0]))
    context = ctx()
    assert ds.SOPInstanceUID == context.remap_uid(f"{UID_MARK}4242")
    assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.StudyInstanceUID == context.remap_uid(f"{UID_MARK}{0x0020000D}")
    for elem in walk(ds):
        if elem.VR == "UI" and elem.value and elem.tag != 0x00080016:
            for uid in elem.value if elem.VM > 1 else [elem.value]:
                uid = UID(uid)
                assert uid.is_valid and (uid.startswith("2.25.") or uid.name != str(uid))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"  # class UIDs are kept
    other, _ = deid.deidentify_dicom_bytes(original, ctx(secret=b"t" * 32))
    other_ds = pydicom.dcmread(io.BytesIO(other))
    assert other_ds.SOPInstanceUID != ds.SOPInstanceUID
    assert other_ds.StudyInstanceUID != ds.StudyInstanceUID
    again, _ = deid.deidentify_dicom_bytes(original, ctx())
    assert pydicom.dcmread(io.BytesIO(again)).SeriesInstanceUID == ds.SeriesInstanceUID


def test_remap_uid_is_a_uuid_derived_uid():
    context = ctx()
    uid = context.remap_uid("1.2.3.4")
    value = int(uid.removeprefix("2.25."))
    assert uid.startswith("2.25.") and len(uid) <= 64 and UID(uid).is_valid
    assert value < 2**128
    assert (value >> 76) & 0xF == 8  # UUID version 8
    assert context.remap_uid("1.2.3.4 ") == uid  # trailing padding does not matter
    assert context.remap_uid("1.2.3.5") != uid


def test_pixels_unchanged_and_identity_attributes_set(original, result):
    before = pydicom.dcmread(io.BytesIO(original))
    ds = pydicom.dcmread(io.BytesIO(result[0]))
    np.testing.assert_array_equal(ds.pixel_array, before.pixel_array)
    assert ds.PixelData == before.PixelData
    assert ds.file_meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID
    assert ds.PatientName == "SITE-0042" and ds.PatientID == "SITE-0042"
    assert ds.PatientIdentityRemoved == "YES"
    codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113105", "113107", "113108"]
    assert all(i.CodingSchemeDesignator == "DCM" for i in ds.DeidentificationMethodCodeSequence)
    assert ds.DeidentificationMethod[0].startswith("ReconTrial")


def test_options_keep_characteristics_and_cleaned_descriptors(result):
    ds = pydicom.dcmread(io.BytesIO(result[0]))
    assert ds.PatientSex == "F"  # kept, as the option says
    assert ds.PatientAge == "042Y" and float(ds.PatientWeight) == 77.5
    assert float(ds.PatientSize) == 77.5
    assert ds.SeriesDescription == "T2 FSE" and ds.ProtocolName == "T2 FSE"
    assert ds.ReceiveCoilName == "HEAD COIL" and ds.SoftwareVersions == "VE11C"
    assert "InstitutionName" not in ds and "OtherPatientIDs" not in ds
    assert ds.AccessionNumber == "" and ds.ReferringPhysicianName == ""
    assert len(ds.ContentSequence) == 0  # D on a sequence: emptied


def test_without_options_everything_listed_goes():
    context = ctx(retain_dates=False, clean_descriptors=False, retain_patient_characteristics=False)
    data, report = deid.deidentify_dicom_bytes(to_bytes(marked_dataset()), context)
    assert MARK.encode() not in data and b"2001" not in data and SHIFTED.encode() not in data
    ds = pydicom.dcmread(io.BytesIO(data))
    assert "PatientSex" in ds and ds.PatientSex == ""  # Z: type 2 in the Patient module
    assert "PatientAge" not in ds and "SeriesDescription" not in ds
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    assert [i.CodeValue for i in ds.DeidentificationMethodCodeSequence] == ["113100"]
    assert report.method_codes == ["113100"]


def test_report_names_tags_but_holds_no_value(result):
    _data, report = result
    record = report.to_dict()
    text = json.dumps(record)
    assert MARK not in text and UID_MARK not in text and DATE not in text
    assert {"PatientName", "StudyInstanceUID", "InstitutionName"} <= set(record["changed"])
    assert "ReferencedImageSequence>ReferencedSOPInstanceUID" in record["changed"]
    assert record["actions"]["X"] > 300 and record["actions"]["shift"] > 80
    assert record["actions"]["private"] >= 2
    merged = deid.merge_reports([report, report])
    assert merged["instances"] == 2 and merged["actions"]["X"] == 2 * record["actions"]["X"]
    assert merged["series_instance_uid"] == report.series_instance_uid


@pytest.mark.parametrize(
    ("attribute", "value", "phrase"),
    [
        ("BurnedInAnnotation", "YES", "burned-in annotation"),
        ("ImageType", ["DERIVED", "SECONDARY", "SCREEN SAVE"], "screen save"),
        ("SOPClassUID", "1.2.840.10008.5.1.4.1.1.7", "secondary capture"),
    ],
)
def test_pixel_identity_is_refused(attribute, value, phrase):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    setattr(ds, attribute, value)
    with pytest.raises(deid.DeidentificationError, match=phrase) as caught:
        deid.deidentify_dicom_bytes(to_bytes(ds), ctx())
    assert isinstance(caught.value, IngestError)  # the views catch IngestError


def test_pseudonym_added_when_patient_attributes_absent():
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    del ds.PatientName, ds.PatientID
    data, _report = deid.deidentify_dicom_bytes(to_bytes(ds), ctx())
    after = pydicom.dcmread(io.BytesIO(data))
    assert after.PatientName == "SITE-0042" and after.PatientID == "SITE-0042"


def test_not_dicom_is_refused():
    with pytest.raises(deid.DeidentificationError, match="not a readable DICOM"):
        deid.deidentify_dicom_bytes(b"hello" * 100, ctx())


def test_descriptor_cleaner_drops_identifiers_even_when_they_are_mr_terms():
    cleaner = ctx().free_text
    cleaned = cleaner.clean("Knee DOE JOHN 12345678 MRN-998877 15.03.1970 Sag PD", ["DOE"])
    assert cleaned == "Knee Sag PD"
    assert cleaner.clean("FLAIR", ["LA"]) == "FLAIR"  # not inside words
    # A patient called Dixon: the header's name wins over the vocabulary.
    assert cleaner.clean("AX PD DIXON", ["Dixon"]) == "AX PD"


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"subject_code": ""}, "subject_code"),
        ({"subject_code": "A^B"}, "subject_code"),
        ({"uid_secret": b"short"}, "uid_secret"),
        ({"date_shift_days": 10**6}, "date_shift_days"),
    ],
)
def test_context_validation(kwargs, phrase):
    base = {"subject_code": "S1", "uid_secret": b"x" * 32, "date_shift_days": 0}
    with pytest.raises(ValueError, match=phrase):
        deid.DeidContext(**(base | kwargs))


def test_table_matches_dicom_anonymizer_transcription():
    """Cross-check every row (tag and action) against dicom-anonymizer's 2026c table."""
    fields = pytest.importorskip("dicomanonymizer.dicom_anonymization_databases.dicomfields_2026c")
    categories = {
        "D_TAGS": "D",
        "Z_TAGS": "Z",
        "X_TAGS": "X",
        "U_TAGS": "U",
        "Z_D_TAGS": "Z/D",
        "X_Z_TAGS": "X/Z",
        "X_D_TAGS": "X/D",
        "X_Z_D_TAGS": "X/Z/D",
        "X_Z_U_STAR_TAGS": "X/Z/U*",
    }
    theirs = {}
    for name, code in categories.items():
        for entry in getattr(fields, name):
            if len(entry) == 2:
                theirs[(entry[0] << 16) | entry[1]] = code
    ours = {tag: row[0] for tag, row in BASIC_PROFILE.items()}
    assert ours == theirs
    assert PATIENT_CHARACTERISTICS <= set(BASIC_PROFILE)
    assert CLEAN_DESCRIPTORS <= set(BASIC_PROFILE)


def test_every_listed_tag_has_a_plausible_vr():
    from pydicom.datadict import dictionary_VR

    for tag, (_code, vr, _name) in BASIC_PROFILE.items():
        try:
            known = dictionary_VR(tag)
        except KeyError:
            continue
        assert vr in known, (hex(tag), vr, known)


# --------------------------------------------------------------------------------------
# Raw k-space HDF5
# --------------------------------------------------------------------------------------

H5_SHIFTED = (dt.date(2001, 2, 3) + dt.timedelta(days=SHIFT)).isoformat()


def _header(h5: h5py.File | h5py.Group, key: str) -> ET.Element:
    value = h5[key][()]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    return ET.fromstring(value if isinstance(value, bytes) else value.encode())


def _find(root: ET.Element, path: str) -> ET.Element | None:
    return root.find("/".join(f"{{{NS}}}{p}" for p in path.split("/")))


def _assert_no_identity(raw: bytes) -> None:
    for needle in (MARK, UID_ROOT, ACCESSION, BIRTHDATE, STUDY_DATE, "JANE", "DOCTOR"):
        assert needle.encode() not in raw, needle


def _assert_scrubbed_header(root: ET.Element, context: deid.DeidContext) -> None:
    assert _find(root, "subjectInformation/patientName").text == "SITE-0042"
    assert _find(root, "subjectInformation/patientID").text == "SITE-0042"
    assert _find(root, "subjectInformation/patientBirthdate") is None
    assert _find(root, "subjectInformation/patientGender").text == "F"
    assert _find(root, "subjectInformation/patientWeight_kg").text == "70.5"
    assert _find(root, "studyInformation/studyDate").text == H5_SHIFTED
    assert _find(root, "studyInformation/studyTime").text == "10:11:12"
    assert _find(root, "measurementInformation/seriesDate").text == H5_SHIFTED
    for gone in (
        "studyInformation/studyID",
        "studyInformation/accessionNumber",
        "studyInformation/referringPhysicianName",
        "measurementInformation/measurementID",
        "measurementInformation/measurementDependency",
        "acquisitionSystemInformation/institutionName",
        "acquisitionSystemInformation/stationName",
        "acquisitionSystemInformation/deviceID",
        "acquisitionSystemInformation/deviceSerialNumber",
        "userParameters/userParameterString",
    ):
        assert _find(root, gone) is None, gone
    assert _find(root, "studyInformation/studyDescription").text == "Knee"
    assert _find(root, "measurementInformation/protocolName").text == "CORPD_FBK"
    assert _find(root, "measurementInformation/seriesDescription").text == "Coronal PD"
    assert _find(root, "studyInformation/studyInstanceUID").text == context.remap_uid(
        UID_ROOT + "1"
    )
    assert _find(root, "measurementInformation/frameOfReferenceUID").text == (
        context.remap_uid(UID_ROOT + "2")
    )
    assert _find(
        root, "measurementInformation/referencedImageSequence/referencedSOPInstanceUID"
    ).text == context.remap_uid(UID_ROOT + "4")
    # technical sections are untouched
    assert _find(root, "acquisitionSystemInformation/systemVendor").text == "SIEMENS"
    assert _find(root, "acquisitionSystemInformation/systemFieldStrength_T").text == "2.89362"
    assert _find(root, "encoding/encodedSpace/matrixSize/x") is not None
    assert _find(root, "sequenceParameters/TR").text == "2750"
    assert _find(root, "userParameters/userParameterLong/value").text == "4"


def test_fastmri_h5_scrubbed_and_kspace_bit_exact(tmp_path):
    src, dst = tmp_path / "in.h5", tmp_path / "out.h5"
    mask = np.zeros(12, np.float32)
    mask[::2] = 1
    kspace = write_fastmri(src, mask=mask)
    assert MARK.encode() in src.read_bytes()
    context = ctx()
    report = deid.deidentify_raw_h5(src, dst, context, kind="fastmri_h5")
    _assert_no_identity(dst.read_bytes())
    with h5py.File(dst, "r") as h5, h5py.File(src, "r") as before:
        assert set(h5) == {"kspace", "mask", "reconstruction_rss", "ismrmrd_header"}
        assert h5["kspace"][()].tobytes() == kspace.tobytes()
        assert h5["kspace"].dtype == np.complex64 and h5["kspace"].compression == "gzip"
        np.testing.assert_array_equal(h5["mask"][()], mask)
        assert h5["reconstruction_rss"][()].tobytes() == before["reconstruction_rss"][()].tobytes()
        assert dict(h5["kspace"].attrs) == {}
        assert h5.attrs["patient_id"] == "SITE-0042"
        assert h5.attrs["acquisition"] == "CORPD_FBK"
        assert h5.attrs["max"] == before.attrs["max"]
        assert "scanned_by" not in h5.attrs
        _assert_scrubbed_header(_header(h5, "ismrmrd_header"), context)
    record = report.to_dict()
    assert MARK not in json.dumps(record)
    assert {"notes", "@scanned_by"} <= set(record["removed"])
    assert "subjectInformation/patientName" in record["changed"]


def test_fastmri_h5_from_file_objects(tmp_path):
    buffer = io.BytesIO()
    kspace = write_fastmri(buffer, shape=(2, 8, 10))  # single-coil rank 3
    out = io.BytesIO()
    deid.deidentify_fastmri_h5(buffer, out, ctx())
    _assert_no_identity(out.getvalue())
    out.seek(0)
    with h5py.File(out, "r") as h5:
        assert h5["kspace"][()].tobytes() == kspace.tobytes()


def test_hdf5_header_with_entity_bomb_refused(tmp_path):
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">&b;</ismrmrdHeader>'
    )
    src = tmp_path / "bomb.h5"
    write_fastmri(src, header=bomb)
    with pytest.raises(deid.DeidentificationError, match="malformed or unsafe"):
        deid.deidentify_fastmri_h5(src, tmp_path / "out.h5", ctx())


def test_ismrmrd_converted_to_fastmri_layout(tmp_path):
    src, dst = tmp_path / "raw.h5", tmp_path / "out.h5"
    lines = [0, 2, 4, 5, 6, 7, 8, 10]
    expected, mask = write_ismrmrd(src, lines=lines)
    assert MARK.encode() in src.read_bytes()
    context = ctx()
    report = deid.deidentify_raw_h5(src, dst, context, kind="ismrmrd_h5")
    _assert_no_identity(dst.read_bytes())
    with h5py.File(dst, "r") as h5:
        assert set(h5) == {"kspace", "mask", "ismrmrd_header"}
        np.testing.assert_allclose(h5["kspace"][()], expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(h5["mask"][()], mask)
        assert h5.attrs["patient_id"] == "SITE-0042"
        _assert_scrubbed_header(_header(h5, "ismrmrd_header"), context)
    assert report.kind == "ismrmrd_h5"


def test_ismrmrd_kept_as_ismrmrd_acquisitions_bit_exact(tmp_path):
    import ismrmrd

    src, dst = tmp_path / "raw.h5", tmp_path / "out.h5"
    write_ismrmrd(src)
    context = ctx()
    deid.deidentify_ismrmrd_h5(src, dst, context, to_fastmri=False)
    _assert_no_identity(dst.read_bytes())
    with h5py.File(src, "r") as before, h5py.File(dst, "r") as after:
        old, new = before["dataset/data"], after["dataset/data"]
        assert old.dtype == new.dtype and old.shape == new.shape
        assert old["head"].tobytes() == new["head"].tobytes()
        assert all(a.tobytes() == b.tobytes() for a, b in zip(old["data"], new["data"]))
        _assert_scrubbed_header(_header(after, "dataset/xml"), context)
    # The ismrmrd package still reads the result.
    dataset = ismrmrd.Dataset(str(dst), "dataset", create_if_needed=False)
    assert dataset.number_of_acquisitions() == 1 + 2 * 12 + 1
    assert "SITE-0042" in dataset.read_xml_header().decode()
    dataset.close()


def test_raw_kind_must_be_known(tmp_path):
    with pytest.raises(ValueError, match="unknown raw kind"):
        deid.deidentify_raw_h5(tmp_path / "a.h5", tmp_path / "b.h5", ctx(), kind="nifti")


def test_names_outside_the_table_are_emptied():
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.add_new(0x00140104, "PN", f"{MARK}^REVIEWER")  # Secondary Reviewer: not in the table
    assert 0x00140104 not in BASIC_PROFILE
    data, report = deid.deidentify_dicom_bytes(to_bytes(ds), ctx())
    assert MARK.encode() not in data
    assert "SecondaryReviewerName" in report.changed


@pytest.mark.parametrize(
    "name",
    [
        "MR_small.dcm",
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_padded.dcm",
        "examples_overlay.dcm",
    ],
)
def test_pydicom_mr_files_every_transfer_syntax(name):
    path = get_testdata_file(name)
    before = pydicom.dcmread(path)
    data, _report = deid.deidentify_dicom_bytes(Path(path).read_bytes(), ctx())
    after = pydicom.dcmread(io.BytesIO(data))
    assert after.file_meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID
    assert after.PixelData == before.PixelData  # encapsulated or native, byte for byte
    assert after.PatientName == "SITE-0042" and after.PatientIdentityRemoved == "YES"
    assert after.SOPInstanceUID == ctx().remap_uid(before.SOPInstanceUID)
    assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
    assert not any(e.tag.is_private for e in walk(after))
    assert not any(0x6000 <= e.tag.group <= 0x60FF for e in after)  # overlays gone
    original_name = str(before.PatientName)
    if original_name:
        assert original_name.encode() not in data


def test_structured_report_content_is_emptied():
    path = get_testdata_file("test-SR.dcm")
    data, _report = deid.deidentify_dicom_bytes(Path(path).read_bytes(), ctx())
    after = pydicom.dcmread(io.BytesIO(data))
    assert len(after.ContentSequence) == 0  # D on a sequence: no text of the report survives
    assert str(pydicom.dcmread(path).PatientName).encode() not in data


@pytest.mark.parametrize(
    ("age", "kept"),
    [("089Y", "089Y"), ("090Y", "090Y"), ("097Y", "090Y"), ("006M", "006M"), ("", "")],
)
def test_ages_over_89_are_capped(age, kept):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.PatientAge = age
    data, _report = deid.deidentify_dicom_bytes(to_bytes(ds), ctx())
    assert pydicom.dcmread(io.BytesIO(data)).PatientAge == kept


def test_ismrmrd_partial_fourier_placed_like_fastmri(tmp_path):
    """Lines 0..8 of a 12-column encoding with centre line 4 go to columns 2..10, so the
    k-space centre sits at column 12 // 2 = 6 as in fastMRI files."""
    src, dst = tmp_path / "pf.h5", tmp_path / "out.h5"
    expected, mask = write_ismrmrd(src, width=12, center=4, maximum=8)
    assert np.flatnonzero(mask).tolist() == list(range(2, 11))
    deid.deidentify_raw_h5(src, dst, ctx(), kind="ismrmrd_h5")
    with h5py.File(dst, "r") as h5:
        assert h5["kspace"].shape == expected.shape
        np.testing.assert_allclose(h5["kspace"][()], expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(h5["mask"][()], mask)


def test_ismrmrd_conversion_matches_recon_engine_reader(tmp_path):
    """Cross-check the gridding against the engine's own ISMRMRD reader, and check that the
    engine's fastMRI reader takes the converted file."""
    ismrmrd_raw = pytest.importorskip("recon_engine.io.ismrmrd_raw")
    fastmri_io = pytest.importorskip("recon_engine.io.fastmri")
    src, dst = tmp_path / "raw.h5", tmp_path / "out.h5"
    write_ismrmrd(src, width=12, center=4, maximum=8, lines=[0, 1, 3, 4, 5, 7, 8])
    deid.deidentify_raw_h5(src, dst, ctx(), kind="ismrmrd_h5")
    reference = ismrmrd_raw.read_ismrmrd(src)
    converted = fastmri_io.read_fastmri(dst)
    np.testing.assert_array_equal(converted.kspace.numpy(), reference.kspace.numpy())
    np.testing.assert_array_equal(
        converted.mask.numpy().reshape(-1), reference.mask.numpy().reshape(-1)
    )
    assert converted.attrs["patient_id"] == "SITE-0042"
