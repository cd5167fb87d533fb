"""Blinded DICOM for readers: a new instance holding only what display needs.

Built by whitelist, not by deleting known tags: every attribute not copied below (private
tags, descriptions, dates, device and operator names, the original UIDs, the file meta of
the source, anything a scanner or reconstruction might add later) is simply absent. UIDs
are derived from HMAC-SHA256 keyed by the read's alias, so they are stable for one alias
(the viewer can cache and scroll) but cannot be linked to the source or to another alias.
Every derived UID has the same length (:data:`UID_LENGTH`), so an instance blinded with
placeholder UIDs becomes a reader's instance by overwriting those bytes in place
(:mod:`studies.reading` stores each series once that way).
Pixel values are kept exactly (stored values, rescale slope and intercept unchanged).
"""

from __future__ import annotations

import hashlib
import hmac
import io

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
BLINDED = "BLINDED"
DUMMY_DATE = "20000101"
DUMMY_TIME = "000000"
SERIES_NUMBER = 1

# Display attributes copied unchanged when present.
_COPIED = (
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PixelSpacing",
    "SliceThickness",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
)


class BlindingError(ValueError):
    """The source instance cannot be blinded (no pixels, unreadable, multi-frame...)."""


UID_LENGTH = 44
_UID_DIGITS = 10**38


def alias_uid(alias: str, label: str) -> str:
    """A ``2.25.<int>`` UID from HMAC-SHA256(key=alias, msg=label), always 44 characters.

    The integer is ``10**38 + (h mod 10**38)`` with ``h`` the first 128 bits of the HMAC:
    always 39 digits (no leading zero) and below 2**128, as PS3.5 B.2 asks of 2.25 UIDs."""
    digest = hmac.new(alias.encode(), label.encode(), hashlib.sha256).digest()
    return f"2.25.{_UID_DIGITS + int.from_bytes(digest[:16], 'big') % _UID_DIGITS}"


def _window(ds: Dataset) -> tuple[float, float]:
    """Window centre/width covering the 1st-99th percentile of the rescaled pixel values."""
    values = ds.pixel_array.astype(np.float64)
    values = values * float(ds.get("RescaleSlope", 1) or 1) + float(
        ds.get("RescaleIntercept", 0) or 0
    )
    low, high = np.percentile(values, [1.0, 99.0])
    width = max(float(high - low), 1.0)
    return float((low + high) / 2.0), width


def blinded_dicom(
    instance_bytes: bytes, alias: str, slice_index: int, shared_study_uid: str
) -> bytes:
    """Rewrite one single-frame image as a blinded MR instance (Explicit VR Little Endian).

    alias: the read's opaque alias (keys every derived UID).
    slice_index: 0-based position in the series; sets InstanceNumber and the normalised
        ImagePositionPatient (origin 0, ``slice_index * spacing`` along the slice normal).
    shared_study_uid: StudyInstanceUID to use (e.g. one per reader and read, so paired
        reads can be hung together).
    """
    try:
        src = pydicom.dcmread(io.BytesIO(instance_bytes), force=True)
    except Exception as exc:  # pydicom raises many types for damaged input
        raise BlindingError(f"not a readable DICOM instance: {exc}") from None
    return blind_dataset(src, alias, slice_index, shared_study_uid)


def blind_dataset(src: Dataset, alias: str, slice_index: int, shared_study_uid: str) -> bytes:
    """:func:`blinded_dicom` of an already parsed instance ``src``."""
    if "PixelData" not in src:
        raise BlindingError("the instance has no pixel data")
    if int(src.get("NumberOfFrames", 1) or 1) != 1:
        raise BlindingError("multi-frame instances are not supported")
    if slice_index < 0:
        raise BlindingError("slice_index must be >= 0")

    ds = Dataset()
    for keyword in _COPIED:
        if keyword in src:
            setattr(ds, keyword, src[keyword].value)
    if src.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian).is_compressed:
        pixels = src.pixel_array
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    else:
        ds.PixelData = src.PixelData
    ds["PixelData"].VR = "OW" if int(src.BitsAllocated) > 8 else "OB"

    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.SOPInstanceUID = alias_uid(alias, f"sop:{slice_index}")
    ds.StudyInstanceUID = shared_study_uid
    ds.SeriesInstanceUID = alias_uid(alias, "series")
    ds.FrameOfReferenceUID = alias_uid(alias, "frame")
    ds.Modality = "MR"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BurnedInAnnotation = "NO"
    ds.PatientName = BLINDED
    ds.PatientID = BLINDED
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = DUMMY_DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = DUMMY_TIME
    ds.SeriesNumber = SERIES_NUMBER
    ds.InstanceNumber = slice_index + 1

    orientation = np.asarray(src.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), float)
    row, col = orientation[:3], orientation[3:]
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    normal = np.cross(row, col)
    spacing = float(src.get("SpacingBetweenSlices", None) or src.get("SliceThickness", 1) or 1)
    position = slice_index * spacing * normal
    ds.ImageOrientationPatient = [round(float(v), 6) for v in (*row, *col)]
    ds.ImagePositionPatient = [round(float(v), 4) for v in position]
    ds.SliceLocation = round(slice_index * spacing, 4)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    centre, width = _window(ds)
    ds.WindowCenter = f"{centre:.6g}"
    ds.WindowWidth = f"{width:.6g}"
    ds.preamble = b"\0" * 128
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()
