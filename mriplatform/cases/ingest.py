"""Classify and validate an upload before anything is de-identified or stored.

An upload is one DICOM series (several files, or one zip of a folder), or one raw k-space
HDF5 file (fastMRI or ISMRMRD). :func:`inspect_upload` reads everything once, refuses what
the platform cannot use with an :class:`IngestError` whose message names the problem (and
the file), and returns an :class:`UploadPlan` with a non-identifying summary for the case
form (slices, coils, matrix, sampling, field strength, vendor).

Zips are read in memory with limits on member count and total uncompressed size, and
refused if a member name is absolute or climbs out of the folder (``..``). XML headers are
parsed with ``defusedxml`` (no entity expansion, no external entities).
"""

from __future__ import annotations

import io
import math
import os
import posixpath
import struct
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from xml.etree import ElementTree as ET

import h5py
import numpy as np
import pydicom
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.pixels import get_decoder
from pydicom.uid import EnhancedMRImageStorage, MRImageStorage

from recon_engine.io.hdf5_safety import UnsafeHDF5Error, audit_hdf5, first_non_finite_slice
from recon_engine.io.ismrmrd_header import acquired_window
from recon_engine.io.ismrmrd_header import parse_ismrmrd_header as parse_header_info
from recon_engine.registry import ReconError

ISMRMRD_NS = "http://www.ismrm.org/ISMRMRD"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
ACCEPTED_SOP_CLASSES = {str(MRImageStorage): "MR Image", str(EnhancedMRImageStorage): "Enhanced MR"}
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"  # SC, multi-frame SC 7.1-7.4

MAX_ZIP_MEMBERS = 5000
MAX_ZIP_BYTES = 2 * 1024**3
MAX_ZIP_RATIO = 200  # uncompressed / compressed per member; DICOM compresses ~2-10x
RATIO_FREE_BYTES = 64 * 1024  # tiny members may compress better than MAX_ZIP_RATIO
INFLATE_BLOCK_BYTES = 64 * 1024
MAX_PROBLEMS_SHOWN = 5
MAX_SEQUENCE_DEPTH = 16  # DICOM sequences nest a few levels; hostile files nest hundreds
MAX_DICOM_PIXEL_BYTES = 1024**3  # decoded pixels of one instance
# What pydicom raises on hostile bytes. It parses lazily and converts each value on first
# access, so any of these can surface long after dcmread returned.
DICOM_ERRORS = (
    InvalidDicomError,
    BytesLengthException,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    OSError,
    TypeError,
    AttributeError,
    OverflowError,
    NotImplementedError,
    struct.error,
    RecursionError,
)
REAL_KINDS = "biuf"  # numpy dtype kinds of real numbers (bool, ints, floats)
MAX_SUMMARY_TEXT = 64  # vendor, model, body part as shown in the summary
MAX_HEADER_BYTES = 16 * 1024**2  # an ISMRMRD XML header is a few kB
MAX_SLICE_BYTES = 1024**3  # one k-space slice (C, H, W) complex64; fastMRI's are ~10 MB
READOUT_BLOCK = 4096  # ISMRMRD acquisitions read at once when checking their samples
MAX_GRID_BYTES = 8 * 1024**3  # gridded ISMRMRD k-space (S, C, H, W) complex64


class IngestError(ValueError):
    """The upload cannot be used; ``str(error)`` is a message fit to show the uploader."""

    def __init__(self, message: str, problems: Sequence[str] | None = None):
        super().__init__(message)
        self.problems = list(problems) if problems else [message]


class UploadedFileLike(Protocol):
    """What :func:`inspect_upload` needs of an upload (Django's UploadedFile has it)."""

    name: str

    def read(self, size: int = -1) -> bytes: ...

    def seek(self, offset: int, whence: int = 0) -> int: ...


@dataclass
class DicomItem:
    """One DICOM instance of the upload, held in memory until it is de-identified."""

    name: str
    data: bytes
    sop_instance_uid: str
    instance_number: int
    slice_location: float | None

    def read_bytes(self) -> bytes:
        return self.data


@dataclass
class UploadPlan:
    """The validated upload: ``kind`` is ``dicom``, ``fastmri_h5`` or ``ismrmrd_h5``.

    For DICOM, ``dicom_items`` in instance order; for HDF5, ``raw_file`` is the upload to
    pass to :func:`mriplatform.cases.deid.deidentify_raw_h5`. ``summary`` holds only
    non-identifying facts (counts, matrix, sampling, scanner vendor and field strength);
    ``warnings`` what the uploader may want to know but does not stop the upload.
    """

    kind: str
    summary: dict[str, Any] = field(default_factory=dict)
    dicom_items: list[DicomItem] = field(default_factory=list)
    raw_file: Any = None
    warnings: list[str] = field(default_factory=list)


def check_deidentifiable(ds: Dataset, error: type[Exception] = IngestError) -> None:
    """Refuse images whose identity may be in the pixels, where tag editing cannot reach."""
    if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        raise error(
            "the image has burned-in annotation (BurnedInAnnotation = YES): text in the "
            "pixels cannot be removed by de-identification; export the series without it"
        )
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if "SCREEN SAVE" in image_type:
        raise error(
            "the image is a screen save (ImageType SCREEN SAVE), which can show "
            "patient details in the pixels"
        )
    if str(ds.get("SOPClassUID", "")).startswith(SECONDARY_CAPTURE_PREFIX):
        raise error(
            "the image is a secondary capture, which can show patient details in "
            "the pixels; upload the original MR series"
        )


def parse_ismrmrd_header(xml: bytes | str, error: type[Exception] = IngestError) -> ET.Element:
    """Parse an ISMRMRD XML header safely; ``error`` if it is malformed or not ISMRMRD."""
    if isinstance(xml, str):
        xml = xml.encode()
    xml = xml.rstrip(b"\x00")
    try:
        root = safe_fromstring(xml)
    except (ET.ParseError, DefusedXmlException, ValueError) as exc:
        raise error(f"the ISMRMRD XML header is malformed or unsafe: {exc}") from exc
    if root.tag != f"{{{ISMRMRD_NS}}}ismrmrdHeader":
        raise error(f"the XML header is not an ISMRMRD header (root element {root.tag!r})")
    return root


def _text(root: ET.Element | None, path: str) -> str | None:
    if root is None:
        return None
    node = root.find("/".join(f"{{{ISMRMRD_NS}}}{p}" for p in path.split("/")))
    return node.text.strip() if node is not None and node.text else None


def header_summary(root: ET.Element) -> dict[str, Any]:
    """Scanner and encoding facts of an ISMRMRD header (none of them identifying)."""
    summary: dict[str, Any] = {}
    strength = _number(_text(root, "acquisitionSystemInformation/systemFieldStrength_T"))
    if strength is not None and strength > 0:
        summary["field_strength_t"] = strength
    for key, path in (
        ("vendor", "acquisitionSystemInformation/systemVendor"),
        ("model", "acquisitionSystemInformation/systemModel"),
        ("body_part", "studyInformation/bodyPartExamined"),
    ):
        value = _text(root, path)
        if value:
            summary[key] = value[:MAX_SUMMARY_TEXT]
    channels = _count(_text(root, "acquisitionSystemInformation/receiverChannels"))
    if channels is not None:
        summary["receiver_channels"] = channels
    for key, space in (("encoded_matrix", "encodedSpace"), ("recon_matrix", "reconSpace")):
        size = [_count(_text(root, f"encoding/{space}/matrixSize/{a}")) for a in ("x", "y", "z")]
        if all(v is not None for v in size):
            summary[key] = size
    for key, name in (("tr_ms", "TR"), ("te_ms", "TE"), ("ti_ms", "TI")):
        value = _number(_text(root, f"sequenceParameters/{name}"))
        if value is not None:
            summary[key] = value
    return summary


def _count(text: str | None) -> int | None:
    """A header count (matrix size, channels) as an int in 0..2**31, or None if not one."""
    try:
        value = int(text or "")
    except ValueError:
        return None
    return value if 0 <= value < 2**31 else None


# ISMRMRD acquisition flag bits (ismrmrd/ismrmrd.h; bit n is 1 << (n - 1)).
ACQ_IS_NOISE_MEASUREMENT = 19
ACQ_IS_REVERSE = 22
ACQ_IS_NAVIGATION_DATA = 23
ACQ_IS_PHASECORR_DATA = 24
ACQ_IS_HPFEEDBACK_DATA = 25
ACQ_IS_DUMMYSCAN_DATA = 27
ACQ_IS_RTFEEDBACK_DATA = 28
ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA = 29
ACQ_IS_PHASE_STABILIZATION_REFERENCE = 30
ACQ_IS_PHASE_STABILIZATION = 31
NON_IMAGING_FLAGS = (
    ACQ_IS_NOISE_MEASUREMENT,
    ACQ_IS_NAVIGATION_DATA,
    ACQ_IS_PHASECORR_DATA,
    ACQ_IS_HPFEEDBACK_DATA,
    ACQ_IS_DUMMYSCAN_DATA,
    ACQ_IS_RTFEEDBACK_DATA,
    ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA,
    ACQ_IS_PHASE_STABILIZATION_REFERENCE,
    ACQ_IS_PHASE_STABILIZATION,
)


@dataclass
class IsmrmrdLayout:
    """Where the imaging readouts of an ISMRMRD file go on a 2D Cartesian grid."""

    imaging: np.ndarray  # (N,) bool: readouts that are image data (not noise, navigators...)
    column: np.ndarray  # (M,) k-space column of each imaging readout (step 1 + offset)
    slices: np.ndarray  # (M,) slice of each imaging readout
    n_slices: int
    n_coils: int
    n_samples: int
    width: int  # columns of the fastMRI grid (the encoded matrix y when the header has it)
    window: tuple[int, int]  # columns [left, right) the encoding limits cover


def _flag(flags: np.ndarray, bit: int) -> np.ndarray:
    return (flags & np.uint64(1 << (bit - 1))) != 0


def ismrmrd_layout(
    head: np.ndarray, root: ET.Element, error: type[Exception] = IngestError, name: str = ""
) -> IsmrmrdLayout:
    """Check that acquisition headers ``head`` describe 2D Cartesian multi-slice data that
    the platform can grid into the fastMRI layout, and say where each readout goes."""
    prefix = f"{name}: " if name else ""
    trajectory = _text(root, "encoding/trajectory")
    if trajectory and trajectory != "cartesian":
        raise error(f"{prefix}{trajectory} ISMRMRD data is not supported, only cartesian")
    flags = head["flags"].astype(np.uint64)
    imaging = ~np.any([_flag(flags, bit) for bit in NON_IMAGING_FLAGS], axis=0)
    if not imaging.any():
        raise error(f"{prefix}the ISMRMRD file has no imaging readouts (only noise/navigators)")
    if _flag(flags[imaging], ACQ_IS_REVERSE).any():
        raise error(f"{prefix}reversed (EPI) readouts are not supported")
    idx = head["idx"][imaging]
    if np.any(idx["kspace_encode_step_2"] != 0):
        raise error(f"{prefix}3D ISMRMRD data (kspace_encode_step_2) is not supported")
    for field_name in ("contrast", "repetition", "set", "phase", "segment"):
        if np.unique(idx[field_name]).size > 1:
            raise error(
                f"{prefix}ISMRMRD data with several values of idx.{field_name} is not "
                "supported; upload one contrast or repetition per file"
            )
    samples = head["number_of_samples"][imaging]
    channels = head["active_channels"][imaging]
    if np.unique(samples).size != 1 or np.unique(channels).size != 1:
        raise error(f"{prefix}ISMRMRD readouts differ in number of samples or channels")
    if int(samples[0]) == 0 or int(channels[0]) == 0:
        raise error(f"{prefix}ISMRMRD readouts with no samples or no active channels")
    step1 = idx["kspace_encode_step_1"].astype(np.int64)
    lines = int(step1.max()) + 1
    limits = {
        key: _text(root, path)
        for key, path in (
            ("maximum", "encoding/encodingLimits/kspace_encoding_step_1/maximum"),
            ("center", "encoding/encodingLimits/kspace_encoding_step_1/center"),
            ("encoded", "encoding/encodedSpace/matrixSize/y"),
        )
    }
    counts = {key: _count(text) for key, text in limits.items()}
    malformed = [k for k, text in limits.items() if text is not None and counts[k] is None]
    if malformed:
        raise error(f"{prefix}malformed ISMRMRD encoding limits ({', '.join(malformed)})")
    if counts["maximum"] is not None:
        lines = max(lines, counts["maximum"] + 1)
    # Place the lines as fastMRI does, so that the k-space centre (encoding limit "center")
    # lands on column encoded_y // 2 and partial-Fourier data stays centred.
    offset, width = 0, lines
    encoded, center = counts["encoded"], counts["center"]
    if encoded is not None and center is not None:
        left = encoded // 2 - center
        if 0 <= left and left + lines <= encoded:
            offset, width = left, encoded
    slices = idx["slice"].astype(np.int64)
    layout = IsmrmrdLayout(
        imaging=imaging,
        column=step1 + offset,
        slices=slices,
        n_slices=int(slices.max()) + 1,
        n_coils=int(channels[0]),
        n_samples=int(samples[0]),
        width=width,
        window=(offset, offset + lines),
    )
    # Checked before anything is allocated: the gridded k-space is held in memory.
    grid_bytes = 8 * layout.n_slices * layout.n_coils * layout.n_samples * layout.width
    if grid_bytes > MAX_GRID_BYTES:
        raise error(
            f"{prefix}the acquisitions declare a k-space grid of {layout.n_slices} slices x "
            f"{layout.n_coils} coils x {layout.n_samples} x {layout.width} "
            f"({grid_bytes / 1024**3:.1f} GiB), more than the limit of "
            f"{MAX_GRID_BYTES / 1024**3:.0f} GiB"
        )
    return layout


# --------------------------------------------------------------------------------------
# Reading the upload
# --------------------------------------------------------------------------------------


def _read_all(upload: UploadedFileLike) -> bytes:
    if hasattr(upload, "seek"):
        upload.seek(0)
    data = upload.read()
    if hasattr(upload, "seek"):
        upload.seek(0)
    return data


def _head(upload: UploadedFileLike, size: int = 2048) -> bytes:
    upload.seek(0)
    data = upload.read(size)
    upload.seek(0)
    return data


def _is_hdf5(head: bytes) -> bool:
    # The superblock is at 0 or, after a user block, at 512, 1024, 2048, ...
    return any(head[o : o + 8] == HDF5_SIGNATURE for o in (0, 512, 1024))


def _is_dicom(head: bytes) -> bool:
    return head[128:132] == b"DICM"


def _safe_member_name(name: str) -> bool:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return False
    parts = posixpath.normpath(name.replace("\\", "/")).split("/")
    return ".." not in parts and ".." not in name.replace("\\", "/").split("/")


def _declared_member_count(data: bytes) -> int:
    """Total entries the zip's end-of-central-directory record declares (APPNOTE 4.3.16);
    0 when there is none (zipfile then refuses the archive). A ZIP64 archive, which
    declares 0xFFFF here, counts as that many."""
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if end < 0 or len(data) < end + 22:
        return 0
    return struct.unpack("<H", data[end + 10 : end + 12])[0]


def _inflate(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, archive_name: str, total: int, budget: int
) -> tuple[int, list[bytes]]:
    """Inflate one member a block at a time, stopping as soon as it grows past its declared
    size or the archive's budget; returns the new running total and the blocks."""
    chunks: list[bytes] = []
    size = 0
    try:
        with archive.open(member) as handle:
            while chunk := handle.read(INFLATE_BLOCK_BYTES):
                size += len(chunk)
                total += len(chunk)
                if size > member.file_size:
                    raise IngestError(
                        f"{archive_name}: {member.filename} inflates past its declared size"
                    )
                if total > budget:
                    raise IngestError(
                        f"{archive_name}: uncompressed size exceeds the limit of "
                        f"{budget / 1024**2:.0f} MiB for this archive, refused as a "
                        "possible zip bomb"
                    )
                chunks.append(chunk)
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        ValueError,
        struct.error,
        NotImplementedError,
    ) as exc:
        if isinstance(exc, IngestError):
            raise
        raise IngestError(f"{archive_name}: {member.filename} is corrupt ({exc})") from exc
    return total, chunks


def extract_zip(
    data: bytes,
    archive_name: str,
    max_members: int = MAX_ZIP_MEMBERS,
    max_bytes: int = MAX_ZIP_BYTES,
    max_ratio: int = MAX_ZIP_RATIO,
) -> list[tuple[str, bytes]]:
    """The files of a zip, in memory, refusing zip bombs and unsafe paths.

    Limits are checked on the declared sizes first and again on the bytes actually
    inflated (a crafted archive can lie about sizes). Folders, macOS resource forks and
    DICOMDIR index files are skipped.
    """
    declared_entries = _declared_member_count(data)
    if declared_entries > 2 * max_members:  # files and the folders that hold them
        # Checked on the end record, before zipfile builds an object per directory entry.
        raise IngestError(
            f"{archive_name}: {declared_entries} entries in the archive, more than the "
            f"limit of {2 * max_members} files and folders"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, struct.error) as exc:
        raise IngestError(f"{archive_name}: not a readable zip archive ({exc})") from exc
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        for member in archive.infolist():
            if not _safe_member_name(member.filename):
                raise IngestError(
                    f"{archive_name}: refused, member path {member.filename!r} "
                    "is absolute or leaves the archive folder"
                )
        if len(members) > max_members:
            raise IngestError(
                f"{archive_name}: {len(members)} files in the archive, more than "
                f"the limit of {max_members}"
            )
        declared = sum(m.file_size for m in members)
        if declared > max_bytes:
            raise IngestError(
                f"{archive_name}: uncompressed size {declared / 1024**2:.0f} MiB "
                f"exceeds the limit of {max_bytes / 1024**2:.0f} MiB"
            )
        files: list[tuple[str, bytes]] = []
        total = 0
        # The whole archive may not inflate more than max_ratio times its size either.
        budget = min(max_bytes, max(max_ratio * len(data), RATIO_FREE_BYTES))
        for member in members:
            base = posixpath.basename(member.filename)
            if (
                member.filename.startswith("__MACOSX/")
                or base.startswith("._")
                or (base.upper() == "DICOMDIR" or base == ".DS_Store")
            ):
                continue
            if member.flag_bits & 0x1:
                raise IngestError(f"{archive_name}: {member.filename} is encrypted")
            if member.file_size > max(max_ratio * member.compress_size, RATIO_FREE_BYTES):
                raise IngestError(
                    f"{archive_name}: {member.filename} compresses more than "
                    f"{max_ratio}:1, refused as a possible zip bomb"
                )
            total, chunks = _inflate(archive, member, archive_name, total, budget)
            content = b"".join(chunks)
            if content[:4] == ZIP_SIGNATURE:
                raise IngestError(
                    f"{archive_name}: nested archives are not accepted ({member.filename})"
                )
            files.append((f"{archive_name}/{member.filename}", content))
    if not files:
        raise IngestError(f"{archive_name}: the archive holds no files")
    return files


# --------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------


def _expected_pixel_bytes(ds: Dataset) -> int:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    bits = int(ds.get("BitsAllocated", 0) or 0)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    return int(ds.Rows) * int(ds.Columns) * frames * samples * bits // 8


def _short(exc: BaseException, limit: int = 200) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_dicom(name: str, data: bytes) -> tuple[Dataset, list[str]]:
    """Parse one instance and return it with the problems that make it unusable.

    A dataset without problems has had every attribute value converted (so later reads
    cannot fail) and its pixel data decoded once."""
    try:
        return _validate_dicom(name, data)
    except DICOM_ERRORS as exc:
        # pydicom converts values lazily: a malformed IS/DS or UID surfaces only here.
        return Dataset(), [f"{name}: malformed DICOM attribute value ({_short(exc)})"]


def convert_all_values(ds: Dataset, max_depth: int = MAX_SEQUENCE_DEPTH) -> None:
    """Convert every attribute of ``ds`` and its sequence items (pydicom converts lazily,
    on first access); ValueError if sequences nest deeper than ``max_depth`` or an IS/DS
    value is not a number (pydicom keeps those as text and ``int()`` fails later)."""
    pending = [(ds, 0)]
    while pending:
        dataset, depth = pending.pop()
        if depth > max_depth:
            raise ValueError(f"sequences nested deeper than {max_depth} levels")
        for elem in dataset:
            if elem.VR == "SQ":
                pending.extend((item, depth + 1) for item in elem.value or [])
                continue
            value = elem.value
            if elem.VR in ("IS", "DS"):
                values = value if isinstance(value, pydicom.multival.MultiValue) else [value]
                for number in values:
                    if isinstance(number, str) and number.strip():
                        raise ValueError(
                            f"{elem.keyword or elem.tag} value {number[:16]!r} is not a "
                            f"number ({elem.VR})"
                        )


def _pixel_problems(ds: Dataset) -> list[str]:
    """What makes the image pixel module unusable (checked before anything is decoded)."""
    rows, columns = int(ds.Rows or 0), int(ds.Columns or 0)
    if rows <= 0 or columns <= 0:
        return [f"Rows/Columns are {rows} x {columns}"]
    problems = []
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        problems.append(f"PhotometricInterpretation {photometric[:32]!r} is not MONOCHROME1/2")
    if int(ds.get("SamplesPerPixel", 1) or 0) != 1:
        problems.append("SamplesPerPixel must be 1 for MR images")
    if "PixelData" in ds:
        bits = int(ds.get("BitsAllocated", 0) or 0)
        stored = int(ds.get("BitsStored", 0) or 0)
        if bits not in (8, 16, 32):
            problems.append(f"BitsAllocated {bits} is not 8, 16 or 32")
        elif not 1 <= stored <= bits:
            problems.append(f"BitsStored {stored} is not within 1..{bits}")
        if int(ds.get("PixelRepresentation", 0) or 0) not in (0, 1):
            problems.append("PixelRepresentation must be 0 or 1")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    item_bytes = max(int(ds.get("BitsAllocated", 16) or 16), 8) // 8
    if frames <= 0 or rows * columns * frames * item_bytes > MAX_DICOM_PIXEL_BYTES:
        problems.append(
            f"{frames} frame(s) of {rows} x {columns} exceed the limit of "
            f"{MAX_DICOM_PIXEL_BYTES // 1024**2} MiB of pixels per instance"
        )
    return problems


def _decode_problem(ds: Dataset) -> str | None:
    """Decode the pixel data once (as the previews and jobs will); the reason it fails."""
    if "PixelData" not in ds:
        return None
    try:
        decoder = get_decoder(ds.file_meta.TransferSyntaxUID)
        pixels, _ = decoder.as_array(ds)
    except (*DICOM_ERRORS, RuntimeError) as exc:
        return f"pixel data cannot be decoded ({_short(exc)})"
    if pixels.size == 0:
        return "pixel data decodes to an empty image"
    return None


def _validate_dicom(name: str, data: bytes) -> tuple[Dataset, list[str]]:
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except DICOM_ERRORS as exc:
        return Dataset(), [f"{name}: corrupt or truncated DICOM ({_short(exc)})"]
    if len(ds) == 0:
        # pydicom stops quietly at the end of the data: a file cut inside the header.
        return ds, [f"{name}: corrupt or truncated DICOM (no data elements after the header)"]
    try:
        convert_all_values(ds)
    except DICOM_ERRORS as exc:
        return Dataset(), [f"{name}: malformed DICOM attribute value ({_short(exc)})"]
    problems: list[str] = []
    modality = str(ds.get("Modality", "")).strip()
    sop_class = str(ds.get("SOPClassUID", ""))
    if modality != "MR":
        problems.append(f"{name}: modality is {modality or 'missing'}, not MR")
    elif sop_class not in ACCEPTED_SOP_CLASSES:
        label = pydicom.uid.UID(sop_class).name if sop_class else "missing"
        problems.append(f"{name}: SOP class {label} is not MR Image or Enhanced MR Image Storage")
    try:
        check_deidentifiable(ds)
    except IngestError as exc:
        problems.append(f"{name}: {exc}")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        problems.append(f"{name}: no pixel data (the file may be truncated)")
    elif "Rows" not in ds or "Columns" not in ds:
        problems.append(f"{name}: Rows/Columns missing")
    elif pixel_problems := _pixel_problems(ds):
        problems += [f"{name}: {p}" for p in pixel_problems]
    elif "PixelData" in ds and not ds.file_meta.TransferSyntaxUID.is_compressed:
        expected = _expected_pixel_bytes(ds)
        if len(ds.PixelData) < expected:
            problems.append(
                f"{name}: pixel data truncated ({len(ds.PixelData)} of {expected} bytes)"
            )
    if not problems and (problem := _decode_problem(ds)):
        problems.append(f"{name}: {problem}")
    if not str(ds.get("SOPInstanceUID", "")).strip():
        problems.append(f"{name}: SOPInstanceUID missing")
    if not str(ds.get("SeriesInstanceUID", "")).strip():
        problems.append(f"{name}: SeriesInstanceUID missing")
    return ds, problems


def _integer(value: Any) -> int:
    """``value`` as an int; 0 when it is missing or not a whole number."""
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, malformed, NaN or infinite)."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _dicom_plan(files: list[tuple[str, bytes]]) -> UploadPlan:
    problems: list[str] = []
    items: list[DicomItem] = []
    datasets: list[Dataset] = []
    for name, data in files:
        ds, issues = validate_dicom(name, data)
        problems += issues
        if issues:
            continue
        datasets.append(ds)
        items.append(
            DicomItem(
                name=name,
                data=data,
                sop_instance_uid=str(ds.SOPInstanceUID),
                instance_number=_integer(ds.get("InstanceNumber")),
                slice_location=_number(ds.get("SliceLocation")),
            )
        )
    if problems:
        _raise(problems)
    series = {str(ds.SeriesInstanceUID) for ds in datasets}
    if len(series) > 1:
        raise IngestError(
            f"the upload mixes {len(series)} series (different "
            "SeriesInstanceUID); upload one series at a time"
        )
    seen: dict[str, str] = {}
    for item in items:
        if item.sop_instance_uid in seen:
            problems.append(
                f"duplicate SOPInstanceUID in {seen[item.sop_instance_uid]} and {item.name}"
            )
        seen.setdefault(item.sop_instance_uid, item.name)
    sizes = {(int(ds.Rows), int(ds.Columns)) for ds in datasets}
    if len(sizes) > 1:
        listed = ", ".join(f"{r}x{c}" for r, c in sorted(sizes))
        problems.append(f"inconsistent matrix sizes within the series: {listed}")
    if problems:
        _raise(problems)
    order = sorted(
        range(len(items)), key=lambda i: (items[i].instance_number, items[i].slice_location or 0.0)
    )
    items = [items[i] for i in order]
    first = datasets[order[0]]
    warnings = []
    numbers = [item.instance_number for item in items]
    if len(set(numbers)) < len(numbers):
        warnings.append(
            "instance numbers are missing or repeated; slices are ordered by "
            "slice location where instance numbers tie"
        )
    rows, cols = sizes.pop()
    summary: dict[str, Any] = {
        "kind": "dicom",
        "n_slices": sum(int(ds.get("NumberOfFrames", 1) or 1) for ds in datasets),
        "n_instances": len(items),
        "matrix": [rows, cols],
        "sop_class": ACCEPTED_SOP_CLASSES[str(first.SOPClassUID)],
    }
    for key, keyword in (
        ("field_strength_t", "MagneticFieldStrength"),
        ("slice_thickness_mm", "SliceThickness"),
        ("tr_ms", "RepetitionTime"),
        ("te_ms", "EchoTime"),
    ):
        value = _number(first.get(keyword))
        if value is not None:
            summary[key] = value
    for key, keyword in (
        ("vendor", "Manufacturer"),
        ("model", "ManufacturerModelName"),
        ("sequence", "ScanningSequence"),
        ("body_part", "BodyPartExamined"),
    ):
        value = first.get(keyword)
        if value:
            summary[key] = (
                "\\".join(map(str, value))
                if isinstance(value, list | tuple | pydicom.multival.MultiValue)
                else str(value)
            )[:MAX_SUMMARY_TEXT]
    spacing = [_number(v) for v in (first.get("PixelSpacing") or [])]
    if spacing and None not in spacing:
        summary["pixel_spacing_mm"] = spacing
    return UploadPlan(kind="dicom", summary=summary, dicom_items=items, warnings=warnings)


def _raise(problems: list[str]) -> None:
    shown = problems[:MAX_PROBLEMS_SHOWN]
    more = len(problems) - len(shown)
    message = "; ".join(shown) + (f"; and {more} more problem(s)" if more > 0 else "")
    raise IngestError(message, problems)


# --------------------------------------------------------------------------------------
# HDF5
# --------------------------------------------------------------------------------------


def _open(upload: Any) -> tuple[h5py.File, int]:
    """The upload (a path, an uploaded file or a binary stream) opened read-only, and its
    size in bytes."""
    if isinstance(upload, str | os.PathLike):
        return h5py.File(upload, "r"), os.path.getsize(upload)
    temp_path = getattr(upload, "temporary_file_path", None)
    if callable(temp_path):
        return h5py.File(temp_path(), "r"), os.path.getsize(temp_path())
    handle = upload if hasattr(upload, "seek") else upload.file
    size = handle.seek(0, os.SEEK_END)
    handle.seek(0)
    return h5py.File(handle, "r"), size


def open_audited_hdf5(upload: Any, error: type[Exception] = IngestError) -> h5py.File:
    """Open an uploaded HDF5 file and audit its structure before any value is read:
    external storage, virtual datasets, soft/external links, plugin filters and datasets
    that declare more than they store are refused with ``error`` (naming the object)."""
    name = posixpath.basename(str(getattr(upload, "name", "") or upload))
    try:
        h5, size = _open(upload)
    except OSError as exc:
        raise error(f"{name}: corrupt or truncated HDF5 file ({exc})") from exc
    try:
        audit_hdf5(h5, size)
    except UnsafeHDF5Error as exc:
        h5.close()
        raise error(f"{name}: {exc}") from exc
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        h5.close()
        raise error(f"{name}: corrupt or truncated HDF5 file ({exc})") from exc
    return h5


def _small_dataset(h5: h5py.File | h5py.Group, key: str, limit: int) -> h5py.Dataset:
    """``h5[key]`` if it is a dataset of at most ``limit`` declared bytes."""
    dataset = h5[key]
    if not isinstance(dataset, h5py.Dataset):
        raise IngestError(f"'{key}' is not a dataset")
    if dataset.size * dataset.dtype.itemsize > limit:
        raise IngestError(f"'{key}' is {dataset.shape} {dataset.dtype}, larger than expected")
    return dataset


def _header_bytes(h5: h5py.File | h5py.Group, key: str) -> bytes:
    dataset = _small_dataset(h5, key, MAX_HEADER_BYTES)
    if dataset.size != 1:
        raise IngestError(f"'{key}' must hold one XML string, found shape {dataset.shape}")
    value = dataset[()]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    return value.encode() if isinstance(value, str) else bytes(value)


def _read_header(h5: h5py.File | h5py.Group, key: str, name: str) -> ET.Element:
    try:
        return parse_ismrmrd_header(_header_bytes(h5, key))
    except IngestError as exc:
        raise IngestError(f"{name}: {exc}") from exc


def _acquired_columns(h5: h5py.File, width: int) -> tuple[int, int]:
    """The engine's acquired window (fastMRI's encoding-limit arithmetic) for this file;
    every column when the header is absent or lacks the limits."""
    if "ismrmrd_header" not in h5:
        return 0, width
    try:
        info = parse_header_info(_header_bytes(h5, "ismrmrd_header"))
    except ReconError:
        return 0, width
    return acquired_window(info, width)


def _fastmri_summary(name: str, h5: h5py.File) -> dict[str, Any]:
    kspace = h5["kspace"]
    if not isinstance(kspace, h5py.Dataset):
        raise IngestError(f"{name}: 'kspace' is not a dataset")
    if kspace.dtype.kind != "c":
        raise IngestError(f"{name}: k-space must be complex, found {kspace.dtype}")
    if kspace.ndim not in (3, 4):
        raise IngestError(
            f"{name}: k-space must have rank 3 (slices, H, W) or 4 (slices, "
            f"coils, H, W), found rank {kspace.ndim} {kspace.shape}"
        )
    if min(kspace.shape) == 0:
        raise IngestError(f"{name}: k-space is empty {kspace.shape}")
    width = kspace.shape[-1]
    mask = None
    if "mask" in h5:
        declared = h5["mask"].size if isinstance(h5["mask"], h5py.Dataset) else -1
        if declared != width:
            raise IngestError(
                f"{name}: mask has {declared} entries but k-space has {width} "
                "phase-encode columns (last axis)"
            )
        if h5["mask"].dtype.kind not in REAL_KINDS:
            raise IngestError(f"{name}: mask must be numeric, found {h5['mask'].dtype}")
        mask = np.asarray(h5["mask"][()]).reshape(-1)
        if not np.isfinite(mask).all():
            raise IngestError(f"{name}: mask contains NaN or infinite values")
    for key in ("reconstruction_rss", "reconstruction_esc"):
        reference = h5.get(key)
        if reference is None:
            continue
        if (
            not isinstance(reference, h5py.Dataset)
            or reference.dtype.kind not in REAL_KINDS
            or reference.ndim not in (2, 3)
            or reference.shape[0] != kspace.shape[0]
        ):
            raise IngestError(
                f"{name}: '{key}' must be a real image stack (slices, H, W) with "
                f"{kspace.shape[0]} slices"
            )
    try:
        # Every slice is read (one block of chunks at a time): the data must really be in
        # the file and finite everywhere, not only in the slices a spot check would see.
        bad_slice = first_non_finite_slice(kspace, MAX_SLICE_BYTES)
    except UnsafeHDF5Error as exc:
        raise IngestError(f"{name}: {exc}") from exc
    except (OSError, RuntimeError) as exc:
        raise IngestError(
            f"{name}: k-space cannot be read, the file is truncated or corrupt ({exc})"
        ) from exc
    if bad_slice is not None:
        raise IngestError(f"{name}: k-space slice {bad_slice} contains NaN or infinite values")
    root = _read_header(h5, "ismrmrd_header", name) if "ismrmrd_header" in h5 else None
    left, right = _acquired_columns(h5, width)
    if mask is not None:
        sampled = mask != 0
    else:
        middle = np.asarray(kspace[kspace.shape[0] // 2])
        sampled = np.abs(middle).reshape(-1, width).max(axis=0) > 0
    n_sampled = int(sampled[left:right].sum())
    if n_sampled == 0:
        raise IngestError(f"{name}: no phase-encode line is sampled")
    summary: dict[str, Any] = {
        "kind": "fastmri_h5",
        "n_slices": int(kspace.shape[0]),
        "n_coils": int(kspace.shape[1]) if kspace.ndim == 4 else 1,
        "matrix": [int(kspace.shape[-2]), int(kspace.shape[-1])],
        "acquired_columns": [left, right],
        "fully_sampled": n_sampled == right - left,
        "acceleration": round((right - left) / n_sampled, 3),
        "has_reference": "reconstruction_rss" in h5 or "reconstruction_esc" in h5,
    }
    acquisition = h5.attrs.get("acquisition")
    if acquisition is not None:
        summary["acquisition"] = (
            acquisition.decode(errors="replace")
            if isinstance(acquisition, bytes)
            else str(acquisition)
        )[:MAX_SUMMARY_TEXT]
    if root is not None:
        summary.update(header_summary(root))
    return summary


def _first_non_finite_readout(data: h5py.Dataset, imaging: np.ndarray) -> int | None:
    """Index of the first imaging acquisition whose samples hold NaN or infinity, reading
    ``READOUT_BLOCK`` acquisitions at a time; None when all are finite."""
    for start in range(0, data.shape[0], READOUT_BLOCK):
        payloads = data[start : start + READOUT_BLOCK]["data"]
        for offset, samples in enumerate(payloads):
            if imaging[start + offset] and not np.isfinite(samples).all():
                return start + offset
    return None


def _ismrmrd_summary(name: str, h5: h5py.File) -> dict[str, Any]:
    group = h5["dataset"]
    missing = [k for k in ("xml", "data") if k not in group]
    if missing:
        raise IngestError(
            f"{name}: ISMRMRD file without " + " and ".join(f"'dataset/{k}'" for k in missing)
        )
    root = _read_header(group, "xml", name)
    data = group["data"]
    if data.dtype.names is None or not {"head", "data"} <= set(data.dtype.names):
        raise IngestError(f"{name}: 'dataset/data' is not an ISMRMRD acquisition table")
    if data.shape[0] == 0:
        raise IngestError(f"{name}: the ISMRMRD file holds no acquisitions")
    try:
        head = data["head"]
        _ = data[-1]
    except (OSError, RuntimeError) as exc:
        raise IngestError(
            f"{name}: acquisitions cannot be read, the file is truncated or corrupt ({exc})"
        ) from exc
    layout = ismrmrd_layout(head, root, error=IngestError, name=name)
    bad_readout = _first_non_finite_readout(data, layout.imaging)
    if bad_readout is not None:
        raise IngestError(f"{name}: acquisition {bad_readout} contains NaN or infinite values")
    left, right = layout.window
    n_sampled = int(np.unique(layout.column).size)
    summary: dict[str, Any] = {
        "kind": "ismrmrd_h5",
        "n_slices": layout.n_slices,
        "n_coils": layout.n_coils,
        "matrix": [layout.n_samples, layout.width],
        "acquired_columns": [left, right],
        "n_acquisitions": int(layout.imaging.sum()),
        "fully_sampled": n_sampled == right - left,
        "acceleration": round((right - left) / max(n_sampled, 1), 3),
    }
    summary.update(header_summary(root))
    return summary


def _hdf5_plan(name: str, upload: Any) -> UploadPlan:
    h5 = open_audited_hdf5(upload)
    warnings: list[str] = []
    try:
        with h5:
            if "kspace" in h5:
                summary = _fastmri_summary(name, h5)
                kept = {"kspace", "mask", "reconstruction_rss", "reconstruction_esc"}
                if "ismrmrd_header" not in h5:
                    warnings.append("no ISMRMRD header: field strength and vendor are unknown")
                dropped = sorted(set(h5) - kept - {"ismrmrd_header"})
            elif "dataset" in h5 and isinstance(h5["dataset"], h5py.Group):
                summary = _ismrmrd_summary(name, h5)
                dropped = sorted(f"dataset/{k}" for k in set(h5["dataset"]) - {"data", "xml"})
                dropped += sorted(set(h5) - {"dataset"})
            else:
                raise IngestError(
                    f"{name}: HDF5 file is neither fastMRI (no 'kspace' dataset) "
                    "nor ISMRMRD (no 'dataset' group)"
                )
    except IngestError:
        raise
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, OverflowError) as exc:
        # A value of the wrong type or size somewhere in the file (h5py or numpy refuses it).
        raise IngestError(f"{name}: corrupt or malformed HDF5 file ({exc})") from exc
    if dropped:
        warnings.append("not kept by de-identification: " + ", ".join(dropped))
    if hasattr(upload, "seek"):
        upload.seek(0)
    return UploadPlan(kind=summary["kind"], summary=summary, raw_file=upload, warnings=warnings)


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def inspect_upload(
    files: Sequence[UploadedFileLike],
    read: Callable[[UploadedFileLike], bytes] = _read_all,
) -> UploadPlan:
    """Classify and validate one upload; IngestError (naming the problem) if unusable."""
    files = list(files)
    if not files:
        raise IngestError("no files were uploaded")
    hdf5: list[UploadedFileLike] = []
    dicom: list[tuple[str, bytes]] = []
    for upload in files:
        name = posixpath.basename(str(getattr(upload, "name", "") or "upload"))
        head = _head(upload)
        if _is_hdf5(head):
            hdf5.append(upload)
        elif head[:4] == ZIP_SIGNATURE:
            for member, data in extract_zip(read(upload), name):
                if _is_hdf5(data[:2048]):
                    raise IngestError(f"{member}: send raw HDF5 files on their own, not in a zip")
                if not _is_dicom(data[:132]):
                    raise IngestError(f"{member}: not a DICOM file (no DICM preamble)")
                dicom.append((member, data))
        elif _is_dicom(head):
            dicom.append((name, read(upload)))
        elif len(head) == 0:
            raise IngestError(f"{name}: the file is empty")
        else:
            raise IngestError(
                f"{name}: neither a DICOM file (no DICM preamble) nor an HDF5 "
                "file nor a zip of DICOM files"
            )
    if hdf5 and dicom:
        raise IngestError("the upload mixes DICOM and HDF5 files; upload one series at a time")
    if len(hdf5) > 1:
        raise IngestError(
            f"{len(hdf5)} HDF5 files uploaded together; upload one raw k-space file per series"
        )
    if hdf5:
        upload = hdf5[0]
        return _hdf5_plan(posixpath.basename(str(getattr(upload, "name", "upload.h5"))), upload)
    return _dicom_plan(dicom)
