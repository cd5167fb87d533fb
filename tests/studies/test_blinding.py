"""Blinded DICOM: nothing that names the method, protocol, patient, date or source UIDs."""

import io

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from recon_engine.io.dicom import write_dicom_series
from studies.blinding import BLINDED, BlindingError, alias_uid, blinded_dicom

SHARED_STUDY = "2.25.1234567890"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A 3-slice reconstruction-like series with descriptive text and private tags."""
    rng = np.random.default_rng(7)
    volume = rng.uniform(0, 900, size=(3, 24, 20))
    out = tmp_path_factory.mktemp("recon_IM_secret")
    paths = write_dicom_series(
        out,
        volume,
        description="CG-SENSE R4 [cg_sense]",
        derivation="ReconTrial cg_sense lambda=0.01 iterations=30",
        patient_id="HOSPITAL-123",
        patient_name="Doe^Jane",
        origin=(-91.5, 40.25, 12.0),
        slice_spacing=3.0,
    )
    blobs = []
    for path in paths:
        ds = pydicom.dcmread(path)
        block = ds.private_block(0x0041, "RECONTRIAL", create=True)
        block.add_new(0x01, "LO", "method=cg_sense protocol=Knee CS R4")
        ds.ProtocolName = "Knee PD CS R4"
        ds.StudyDescription = "ReconTrial knee study"
        ds.SoftwareVersions = "recon_engine 0.3 cg_sense"
        ds.ManufacturerModelName = "Skyra"
        ds.InstitutionName = "General Hospital"
        ds.StationName = "MRI-2"
        ds.OperatorsName = "Tech^Tom"
        ds.AcquisitionNumber = 4
        ds.ImageComments = f"from {path.name}"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        blobs.append((path, ds, buffer.getvalue()))
    return blobs


FORBIDDEN = [
    "cg_sense",
    "CG-SENSE",
    "Knee",
    "ReconTrial",
    "recon_engine",
    "HOSPITAL-123",
    "Doe",
    "Skyra",
    "General Hospital",
    "MRI-2",
    "Tech",
    "IM_0",
    "recon_IM_secret",
    "DERIVED",
]


def test_source_really_carries_the_revealing_text(source):
    # guards the test below against passing vacuously
    text = b"".join(raw for _, _, raw in source).decode("latin-1")
    for word in FORBIDDEN:
        if word != "recon_IM_secret":  # the folder name: never inside the file
            assert word in text, word


def test_blinded_output_reveals_nothing(source):
    for index, (_, original, raw) in enumerate(source):
        out = blinded_dicom(raw, "alias-one", index, SHARED_STUDY)
        text = out.decode("latin-1")
        for word in FORBIDDEN:
            assert word not in text, word
        for uid in (
            original.StudyInstanceUID,
            original.SeriesInstanceUID,
            original.SOPInstanceUID,
            original.FrameOfReferenceUID,
            original.file_meta.MediaStorageSOPInstanceUID,
        ):
            assert uid not in text
        for date in {original.StudyDate, original.ContentDate, original.StudyTime}:
            assert date not in text
        ds = pydicom.dcmread(io.BytesIO(out))
        assert not any(elem.tag.is_private for elem in ds.iterall())
        for keyword in (
            "SeriesDescription",
            "ProtocolName",
            "StudyDescription",
            "DerivationDescription",
            "ImageComments",
            "SoftwareVersions",
            "Manufacturer",
            "ManufacturerModelName",
            "InstitutionName",
            "StationName",
            "OperatorsName",
            "AcquisitionNumber",
        ):
            assert keyword not in ds, keyword
        assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY"]
        assert ds.PatientName == BLINDED and ds.PatientID == BLINDED
        assert ds.StudyInstanceUID == SHARED_STUDY
        assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
        assert ds.SOPInstanceUID == alias_uid("alias-one", f"sop:{index}")
        assert ds.InstanceNumber == index + 1
        assert ds.SeriesNumber == 1


def test_pixels_and_geometry_for_display_are_kept(source):
    for index, (_, original, raw) in enumerate(source):
        ds = pydicom.dcmread(io.BytesIO(blinded_dicom(raw, "alias-one", index, SHARED_STUDY)))
        np.testing.assert_array_equal(ds.pixel_array, original.pixel_array)
        assert (ds.Rows, ds.Columns) == (24, 20)
        assert float(ds.RescaleSlope) == float(original.RescaleSlope)
        assert list(ds.PixelSpacing) == list(original.PixelSpacing)
        assert float(ds.SliceThickness) == float(original.SliceThickness)
        # position normalised: origin 0, 3 mm steps along the normal
        np.testing.assert_allclose(ds.ImagePositionPatient, [0, 0, 3.0 * index], atol=1e-6)
        values = original.pixel_array * float(original.RescaleSlope)
        low, high = np.percentile(values, [1, 99])
        assert float(ds.WindowCenter) == pytest.approx((low + high) / 2, rel=1e-5)
        assert float(ds.WindowWidth) == pytest.approx(high - low, rel=1e-5)


def test_uids_are_stable_per_alias_and_unlinkable_across_aliases(source):
    _, _, raw = source[0]
    a1 = pydicom.dcmread(io.BytesIO(blinded_dicom(raw, "alias-one", 0, SHARED_STUDY)))
    a1_again = pydicom.dcmread(io.BytesIO(blinded_dicom(raw, "alias-one", 0, SHARED_STUDY)))
    a2 = pydicom.dcmread(io.BytesIO(blinded_dicom(raw, "alias-two", 0, SHARED_STUDY)))
    for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert a1[keyword].value == a1_again[keyword].value
        assert a1[keyword].value != a2[keyword].value
        assert len(a1[keyword].value) <= 64
    # two slices of one alias share the series but not the SOP instance
    b = pydicom.dcmread(io.BytesIO(blinded_dicom(source[1][2], "alias-one", 1, SHARED_STUDY)))
    assert b.SeriesInstanceUID == a1.SeriesInstanceUID
    assert b.SOPInstanceUID != a1.SOPInstanceUID


def test_rejects_non_images():
    with pytest.raises(BlindingError):
        blinded_dicom(b"not dicom at all", "a", 0, generate_uid())
    ds = pydicom.Dataset()
    ds.PatientName = "x"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds)
    with pytest.raises(BlindingError, match="pixel data"):
        blinded_dicom(buffer.getvalue(), "a", 0, generate_uid())
