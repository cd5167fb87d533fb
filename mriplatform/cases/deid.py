"""De-identification of uploaded MR data: DICOM instances and raw k-space HDF5 files.

DICOM follows the PS3.15 Annex E **Basic Application Level Confidentiality Profile** with the
attribute table of :mod:`.dicom_tags` (Table E.1-1, all ~650 rows) and these options:

* Retain Longitudinal Temporal Information with Modified Dates (113107): every DA/DT value
  is shifted by the case's ``date_shift_days``. Times of day (TM values, the time part of
  DT values, ISMRMRD studyTime/seriesTime) are kept by design: the order and spacing of
  series in an examination and contrast timing need them, and without the true date they
  point to no day. The residual risk, stated in the README: someone who knows when a
  patient was scanned at a site can recognise the time.
* Retain Patient Characteristics (113108): sex, age, size, weight and pregnancy status are
  kept, because MR reading and SAR/coil-loading checks need them.
* Clean Descriptors (113105): study, series, protocol and procedure descriptions and the
  contrast agent (``CLEANED_DESCRIPTORS``) keep only their MR-vocabulary tokens
  (:class:`.free_text.FreeTextCleaner`, an allow-list, so a name it does not know is
  dropped) less any string found in the instance's identifying attributes; the other free
  text the option covers (comments, reasons for study, diagnoses, derivation notes) is
  removed. Free text the table does not list (Sequence Name, Pulse Sequence Name,
  Acquisition Protocol Name, Content Description, Frame Label, Performed Procedure Type
  Description: ``CLEANED_UNLISTED_TEXT``) is cleaned the same way whatever the options,
  and unlisted long text (LT, ST, UC, UT: worklist comments, potential reasons for the
  procedure, text values) is removed.
* Private attributes are all removed (MR vendors keep patient names and IDs in them).
* UIDs are replaced by ``2.25.<n>``, ``n`` a keyed HMAC-SHA256 of the original UID under the
  case's secret: the same original UID gives the same new UID within a case (so series,
  study and frame-of-reference links survive) and an unrelated one in any other case.

Why our own engine rather than ``deid``/``dicognito``/``dicom-anonymizer``: none of them
implements the standard's option columns together with keyed, per-case UID remapping and a
per-case day shift that leaves times alone, and none reports what it changed in a form fit
for an audit log without the original values. The table itself is the standard's, read from
``dicom-anonymizer``'s transcription and cross-checked against it in the tests.

Raw HDF5 (fastMRI and ISMRMRD) is scrubbed by copying only the known arrays bit for bit and
rewriting the ISMRMRD XML header element by element (:func:`deidentify_raw_h5`).

Nothing here touches the database or the filesystem beyond the destination given: the
functions work on bytes, file objects and pydicom datasets so that the browser upload, the
REST API and the DICOM receiver share them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO
from xml.etree import ElementTree as ET

import h5py
import numpy as np
import pydicom
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary

from mriplatform.cases.dicom_tags import (
    BASIC_PROFILE,
    CLEAN_DESCRIPTORS,
    CLEANED_DESCRIPTORS,
    CLEANED_UNLISTED_TEXT,
    PATIENT_CHARACTERISTICS,
    REPEATING_GROUPS,
)
from mriplatform.cases.free_text import FreeTextCleaner
from mriplatform.cases.ingest import (
    DICOM_ERRORS,
    ISMRMRD_NS,
    IngestError,
    check_deidentifiable,
    ismrmrd_layout,
    open_audited_hdf5,
    parse_ismrmrd_header,
)

PROFILE_NAME = "DICOM PS3.15 E.1 Basic Application Level Confidentiality Profile"

# PS3.16 CID 7050 codes for the methods applied.
CODE_BASIC = ("113100", "Basic Application Confidentiality Profile")
CODE_CLEAN_DESCRIPTORS = ("113105", "Clean Descriptors Option")
CODE_MODIFIED_DATES = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
CODE_PATIENT_CHARACTERISTICS = ("113108", "Retain Patient Characteristics Option")

PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
PATIENT_BIRTH_DATE = 0x00100030
PATIENT_BIRTH_TIME = 0x00100032
PATIENT_AGE = 0x00101010

_TEXT_VRS = {"AE", "LO", "LT", "PN", "SH", "ST", "UC", "UT"}
_PROSE_VRS = {"LT", "ST", "UC", "UT"}  # long free text
LONG_CODE_VALUE = 0x00080119  # UC, but a code, not prose
_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
_INT_VRS = {"SL", "SS", "SV", "UL", "US", "UV"}
_FLOAT_VRS = {"FD", "FL"}
# Dummy values for action D, chosen to be valid for each VR and to carry no information.
_DUMMY_TEXT = {
    "AE": "DEIDENTIFIED",
    "AS": "000Y",
    "CS": "DEIDENTIFIED",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "TM": "000000",
}
# File meta attributes that survive; the others (source/sending AE titles, presentation
# addresses, private information) can name the sending site.
_FILE_META_KEEP = {0x00020001, 0x00020002, 0x00020010, 0x00020012, 0x00020013}


class DeidentificationError(IngestError):
    """The data cannot be de-identified (burned-in text, malformed header, unreadable file)."""


@dataclass(frozen=True)
class DeidContext:
    """Per-case secrets and choices; the same context must be used for every file of a case.

    subject_code: the pseudonym written into PatientName/PatientID (at most 64 characters).
    uid_secret: key of the HMAC that remaps UIDs (at least 16 bytes, kept secret per case).
    date_shift_days: days added to every date (negative shifts into the past).
    extra_vocabulary: the site's terms added to the MR vocabulary of cleaned free text
    (setting ``DEID_EXTRA_VOCABULARY``).
    """

    subject_code: str
    uid_secret: bytes
    date_shift_days: int
    retain_dates: bool = True
    clean_descriptors: bool = True
    retain_patient_characteristics: bool = True
    extra_vocabulary: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.subject_code or not self.subject_code.strip():
            raise ValueError("subject_code must not be empty")
        if len(self.subject_code) > 64 or re.search(r"[\\^=\x00-\x1f]", self.subject_code):
            raise ValueError(
                "subject_code must be at most 64 characters without \\, ^, = or control "
                "characters (it becomes a DICOM LO and PN value)"
            )
        if len(self.uid_secret) < 16:
            raise ValueError("uid_secret must be at least 16 bytes")
        if abs(int(self.date_shift_days)) > 36500:
            raise ValueError("date_shift_days must be within ±100 years")

    def remap_uid(self, uid: str) -> str:
        """Map ``uid`` to ``2.25.<int>``: a version-8 UUID made of HMAC-SHA256(secret, uid)."""
        uid = str(uid).strip().rstrip("\x00")
        if not uid:
            return uid
        digest = bytearray(hmac.new(self.uid_secret, uid.encode(), hashlib.sha256).digest()[:16])
        digest[6] = (digest[6] & 0x0F) | 0x80  # UUID version 8 (custom), RFC 9562
        digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
        return f"2.25.{int.from_bytes(digest, 'big')}"

    @cached_property
    def free_text(self) -> FreeTextCleaner:
        """The cleaner of kept free text, with the site's extra vocabulary."""
        return FreeTextCleaner(self.extra_vocabulary)

    def shift_date(self, value: dt.date) -> dt.date:
        return value + dt.timedelta(days=int(self.date_shift_days))

    def method_codes(self) -> list[tuple[str, str]]:
        codes = [CODE_BASIC]
        if self.clean_descriptors:
            codes.append(CODE_CLEAN_DESCRIPTORS)
        if self.retain_dates:
            codes.append(CODE_MODIFIED_DATES)
        if self.retain_patient_characteristics:
            codes.append(CODE_PATIENT_CHARACTERISTICS)
        return codes


@dataclass
class DeidReport:
    """What was done, for the audit log: counts per action and the attributes touched.

    Never holds an original value. ``changed`` lists attribute paths such as
    ``ReferencedImageSequence>ReferencedSOPInstanceUID``; the action keys are the PS3.15
    codes (D, Z, X, K, C, U) plus ``shift`` (dates moved) and ``private`` (private
    attributes removed).
    """

    profile: str
    method_codes: list[str]
    actions: Counter = field(default_factory=Counter)
    changed: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    sop_instance_uid: str = ""
    series_instance_uid: str = ""
    study_instance_uid: str = ""
    kind: str = "dicom"

    def note(self, action: str, path: str) -> None:
        self.actions[action] += 1
        if action != "K":
            self.changed.add(path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "method_codes": list(self.method_codes),
            "kind": self.kind,
            "actions": dict(sorted(self.actions.items())),
            "changed": sorted(self.changed),
            "removed": sorted(self.removed),
            "sop_instance_uid": self.sop_instance_uid,
            "series_instance_uid": self.series_instance_uid,
            "study_instance_uid": self.study_instance_uid,
        }


def _profile_name(ctx: DeidContext) -> str:
    options = [meaning.removesuffix(" Option") for _, meaning in ctx.method_codes()[1:]]
    return PROFILE_NAME + (" with " + ", ".join(options) if options else "")


def merge_reports(reports: Iterable[DeidReport]) -> dict[str, Any]:
    """Combine the reports of the instances of one series into one audit record."""
    reports = list(reports)
    if not reports:
        return {}
    actions: Counter = Counter()
    changed: set[str] = set()
    removed: set[str] = set()
    for report in reports:
        actions.update(report.actions)
        changed |= report.changed
        removed |= report.removed
    first = reports[0]
    return {
        "profile": first.profile,
        "method_codes": list(first.method_codes),
        "kind": first.kind,
        "instances": len(reports),
        "actions": dict(sorted(actions.items())),
        "changed": sorted(changed),
        "removed": sorted(removed),
        "series_instance_uid": first.series_instance_uid,
        "study_instance_uid": first.study_instance_uid,
    }


# --------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------


def resolve_action(code: str, vr: str) -> str:
    """Reduce a combined Table E.1-1 code to one action.

    The combined codes let an implementation keep an attribute the IOD requires. We remove
    (X) whenever removal is allowed, except ``X/Z/U*`` (Referenced/Source Image Sequence),
    whose UIDs are remapped so that references between the case's images keep working, and
    ``Z/D``, where Z is both allowed and the emptier choice. Dates and descriptors under the
    options are decided before this is reached.
    """
    if code == "X/Z/U*":
        return "U" if vr in ("UI", "SQ") else "Z"
    if code.startswith("X"):
        return "X"
    if code == "Z/D":
        return "Z"
    return code


def _table_code(tag: int) -> str | None:
    row = BASIC_PROFILE.get(tag)
    if row is not None:
        return row[0]
    for value, mask, code, _name in REPEATING_GROUPS:
        if tag & mask == value:
            return code
    return None


def _name(tag: int) -> str:
    return keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _values(elem: DataElement) -> list:
    if elem.value is None or elem.value == "":
        return []
    if elem.VM > 1:
        return list(elem.value)
    return [elem.value]


def _age_years(value: Any) -> float:
    """Years in an AS value such as ``045Y``, ``006M``, ``012W`` or ``003D`` (0 if unreadable)."""
    match = re.fullmatch(r"(\d{3})([DWMY])", str(value or "").strip().upper())
    if not match:
        return 0.0
    per_year = {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}[match[2]]
    return int(match[1]) / per_year


_DA = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")
_DT = re.compile(r"^(\d{4})(\d{2})(\d{2})(.*)$")


def _shift_da(value: str, ctx: DeidContext) -> str | None:
    match = _DA.match(str(value).strip())
    if not match:
        return None
    try:
        day = dt.date(*map(int, match.groups()))
    except ValueError:
        return None
    return ctx.shift_date(day).strftime("%Y%m%d")


def _shift_dt(value: str, ctx: DeidContext) -> str | None:
    # Only the calendar date moves; time of day, fraction and UTC offset are kept.
    match = _DT.match(str(value).strip())
    if not match:
        return None
    try:
        day = dt.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None
    return ctx.shift_date(day).strftime("%Y%m%d") + match[4]


def _identifying_strings(ds: Dataset, ctx: DeidContext) -> list[str]:
    """Text of every attribute the profile removes, for Clean Descriptors to strip."""
    found: set[str] = set()

    def visit(dataset: Dataset) -> None:
        for elem in dataset:
            if elem.VR == "SQ":
                for item in elem.value or []:
                    visit(item)
                continue
            tag = int(elem.tag)
            # Names wherever they are (private ones too), and the text of every attribute
            # the profile does not keep.
            listed = _table_code(tag) is not None and elem.VR in _TEXT_VRS | {"DA", "DT"}
            if not (listed or elem.VR == "PN"):
                continue
            if tag in CLEAN_DESCRIPTORS or tag in PATIENT_CHARACTERISTICS:
                continue
            shortest = 2 if elem.VR == "PN" else 3  # two-letter surnames exist; "MR" is not one
            for value in _values(elem):
                text = str(value).strip()
                if len(text) >= 2:
                    found.add(text)
                for part in re.split(r"[\^=\s,]+", text):
                    if len(part) >= shortest:
                        found.add(part)
                if elem.VR in ("DA", "DT") and len(text) >= 8 and text[:8].isdigit():
                    y, m, d = text[:4], text[4:6], text[6:8]
                    found.update({f"{y}-{m}-{d}", f"{d}.{m}.{y}", f"{m}/{d}/{y}", f"{d}/{m}/{y}"})

    visit(ds)
    found.discard(ctx.subject_code)
    return sorted(found, key=len, reverse=True)


def _set_empty(elem: DataElement) -> None:
    elem.value = [] if elem.VR == "SQ" else elem.empty_value


def _set_dummy(elem: DataElement, ctx: DeidContext) -> None:
    vr = elem.VR
    if vr == "SQ":
        # The only dummy sequence certain to carry no identity is an empty one.
        elem.value = []
    elif vr == "UI":
        elem.value = (
            [ctx.remap_uid(v) for v in _values(elem)]
            if elem.VM > 1
            else (ctx.remap_uid(elem.value) if elem.value else "")
        )
    elif vr == "PN":
        elem.value = "DEIDENTIFIED"
    elif vr in _TEXT_VRS:
        elem.value = "DEIDENTIFIED"
    elif vr in _DUMMY_TEXT:
        elem.value = _DUMMY_TEXT[vr]
    elif vr in _INT_VRS:
        elem.value = 0
    elif vr in _FLOAT_VRS:
        elem.value = 0.0
    elif vr in _BINARY_VRS:
        elem.value = b"\x00\x00"
    else:  # UR and anything exotic: an empty value is the safe dummy
        _set_empty(elem)


def _remap_uids(elem: DataElement, ctx: DeidContext) -> None:
    if elem.VM > 1:
        elem.value = [ctx.remap_uid(v) for v in elem.value]
    elif elem.value:
        elem.value = ctx.remap_uid(elem.value)


def _process(
    ds: Dataset, ctx: DeidContext, report: DeidReport, identifiers: list[str], prefix: str
) -> None:
    for elem in list(ds):
        tag = int(elem.tag)
        path = prefix + _name(tag)
        if elem.tag.is_private:
            del ds[elem.tag]
            report.actions["private"] += 1
            report.removed.add("private attributes")
            continue
        group = tag >> 16
        if 0x5000 <= group <= 0x50FF or (0x6000 <= group <= 0x60FF and group % 2 == 0):
            # Curves and overlays: Table E.1-1 removes curve data and overlay data/comments;
            # an overlay without its data is invalid, so the whole group goes.
            del ds[elem.tag]
            report.note("X", f"{prefix}({group:04X},xxxx)")
            continue
        vr = elem.VR
        code = _table_code(tag)

        if tag in (PATIENT_NAME, PATIENT_ID):
            elem.value = ctx.subject_code
            report.note("D", path)
            continue
        if tag in PATIENT_CHARACTERISTICS and ctx.retain_patient_characteristics:
            if tag == PATIENT_AGE and _age_years(elem.value) > 89:
                # Ages over 89 are rare enough to identify (HIPAA Safe Harbor 164.514(b)).
                elem.value = "090Y"
                report.note("C", path)
            else:
                report.note("K", path)
            continue
        if tag == PATIENT_BIRTH_DATE:
            # Z even with modified dates: age is kept, and the birth date adds nothing else.
            _set_empty(elem)
            report.note("Z", path)
            continue
        if vr in ("DA", "DT") and ctx.retain_dates:
            shift = _shift_da if vr == "DA" else _shift_dt
            new = [shift(v, ctx) for v in _values(elem)]
            if any(v is None for v in new):
                _set_empty(elem)  # unparseable dates cannot be shifted, so they go
                report.note("Z", path)
            elif new:
                elem.value = new if len(new) > 1 else new[0]
                report.note("shift", path)
            continue
        if vr == "TM" and ctx.retain_dates and code is not None and tag != PATIENT_BIRTH_TIME:
            report.note("K", path)  # times of day are kept under modified dates
            continue
        if (tag in CLEANED_DESCRIPTORS and ctx.clean_descriptors) or tag in CLEANED_UNLISTED_TEXT:
            values = [ctx.free_text.clean(str(v), identifiers) for v in _values(elem)]
            values = [v for v in values if v]
            elem.value = (values if len(values) > 1 else values[0]) if values else ""
            report.note("C", path)
            continue

        if code is None:
            if vr == "SQ":
                for item in elem.value or []:
                    _process(item, ctx, report, identifiers, f"{path}>")
            elif vr == "PN" and elem.value:
                # A person's name in an attribute the table doesn't list (newer standard
                # or retired attributes): names are never needed for reading, so empty it.
                _set_empty(elem)
                report.note("Z", path)
            elif vr in _PROSE_VRS and tag != LONG_CODE_VALUE:
                # Prose the table doesn't list (worklist comments, reasons, text values):
                # no vocabulary makes it safe and reading never needs it.
                del ds[elem.tag]
                report.note("X", path)
            elif vr == "UI" and any(str(v) not in UID_dictionary for v in _values(elem)):
                # An instance UID in an attribute the table doesn't list (vendor or newer
                # standard attributes): remap it too. Registered UIDs (SOP classes,
                # transfer syntaxes, coding schemes) are kept.
                elem.value = (
                    [v if str(v) in UID_dictionary else ctx.remap_uid(v) for v in _values(elem)]
                    if elem.VM > 1
                    else ctx.remap_uid(elem.value)
                )
                report.note("U", path)
            continue

        action = resolve_action(code, vr)
        if action == "X":
            del ds[elem.tag]
            report.note("X", path)
        elif action == "Z":
            _set_empty(elem)
            report.note("Z", path)
        elif action == "D":
            _set_dummy(elem, ctx)
            report.note("D", path)
        elif action == "U":
            if vr == "SQ":
                for item in elem.value or []:
                    _process(item, ctx, report, identifiers, f"{path}>")
                report.note("U", path)
            elif vr == "UI":
                _remap_uids(elem, ctx)
                report.note("U", path)
            else:
                _set_empty(elem)
                report.note("Z", path)
        else:  # K from a future table row
            report.note("K", path)


def _mark_deidentified(ds: Dataset, ctx: DeidContext) -> None:
    codes = ctx.method_codes()
    # Type 2 in every image IOD: make sure the pseudonym is there even if the sender left
    # them out.
    ds.PatientName = ctx.subject_code
    ds.PatientID = ctx.subject_code
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [
        "ReconTrial: " + PROFILE_NAME.removeprefix("DICOM ")[:52],
        *[meaning[:64] for _, meaning in codes[1:]],
    ]
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning[:64]
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    if ctx.retain_dates:
        ds.LongitudinalTemporalInformationModified = (
            "MODIFIED" if ctx.date_shift_days else "UNMODIFIED"
        )
    else:
        ds.LongitudinalTemporalInformationModified = "REMOVED"


def _clean_file_meta(ds: Dataset, report: DeidReport) -> None:
    meta = getattr(ds, "file_meta", None)
    new = FileMetaDataset()
    if meta is not None:
        for elem in meta:
            if int(elem.tag) in _FILE_META_KEEP:
                new.add(elem)
            elif int(elem.tag) not in (0x00020000, 0x00020003):
                report.note("X", _name(int(elem.tag)))
    if "TransferSyntaxUID" not in new:
        implicit, little = getattr(ds, "original_encoding", (False, True))
        new.TransferSyntaxUID = (
            pydicom.uid.ImplicitVRLittleEndian
            if implicit
            else pydicom.uid.ExplicitVRLittleEndian
            if little
            else pydicom.uid.ExplicitVRBigEndian
        )
    if "SOPClassUID" in ds:
        new.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        new.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        report.note("U", "MediaStorageSOPInstanceUID")
    ds.file_meta = new


def deidentify_dataset(ds: Dataset, ctx: DeidContext) -> DeidReport:
    """De-identify ``ds`` in place (sequences included, file meta too); return the report.

    Raises DeidentificationError for images whose identity may be burned into the pixels.
    """
    check_deidentifiable(ds, error=DeidentificationError)
    missing = [k for k in ("SOPClassUID", "SOPInstanceUID") if not str(ds.get(k, "")).strip()]
    if missing:
        raise DeidentificationError(f"not a DICOM image instance: {', '.join(missing)} missing")
    report = DeidReport(
        profile=_profile_name(ctx), method_codes=[code for code, _ in ctx.method_codes()]
    )
    identifiers = _identifying_strings(ds, ctx) if ctx.clean_descriptors else []
    _process(ds, ctx, report, identifiers, "")
    _mark_deidentified(ds, ctx)
    _clean_file_meta(ds, report)
    report.sop_instance_uid = str(ds.get("SOPInstanceUID", ""))
    report.series_instance_uid = str(ds.get("SeriesInstanceUID", ""))
    report.study_instance_uid = str(ds.get("StudyInstanceUID", ""))
    return report


# Free-text values of an ingest summary (read from the original headers) that are stored
# with the series: cleaned like the same text in the de-identified header.
SUMMARY_FREE_TEXT = ("acquisition", "body_part")


def clean_summary(summary: dict[str, Any], ctx: DeidContext) -> dict[str, Any]:
    """A copy of an ingest summary whose free-text values keep only MR-vocabulary tokens
    (a value left empty is dropped)."""
    cleaned = dict(summary)
    for key in SUMMARY_FREE_TEXT:
        if isinstance(cleaned.get(key), str):
            text = ctx.free_text.clean(cleaned[key])
            if text:
                cleaned[key] = text
            else:
                del cleaned[key]
    return cleaned


def read_dicom_bytes(data: bytes) -> Dataset:
    """Parse a DICOM Part 10 file held in memory; DeidentificationError if it is not one."""
    try:
        return pydicom.dcmread(io.BytesIO(data))
    except DICOM_ERRORS as exc:
        raise DeidentificationError(f"not a readable DICOM file: {exc}") from exc


def deidentify_dicom_bytes(data: bytes, ctx: DeidContext) -> tuple[bytes, DeidReport]:
    """De-identify one DICOM Part 10 file in memory; return the new file and the report.

    The original is never written anywhere; pixel data and transfer syntax are unchanged.
    """
    ds = read_dicom_bytes(data)
    try:
        report = deidentify_dataset(ds, ctx)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
    except DICOM_ERRORS as exc:
        if isinstance(exc, DeidentificationError):
            raise
        # pydicom parses values lazily, so a malformed attribute only fails here.
        raise DeidentificationError(f"malformed DICOM attribute value ({exc})") from exc
    return buffer.getvalue(), report


# --------------------------------------------------------------------------------------
# Raw k-space HDF5
# --------------------------------------------------------------------------------------

COPY_BLOCK_BYTES = 64 * 1024**2
CHUNK_TARGET_BYTES = 4 * 1024**2
FASTMRI_ARRAYS = ("kspace", "mask", "reconstruction_rss", "reconstruction_esc")
# fastMRI root attributes that describe the acquisition, not the patient; "acquisition"
# (the protocol label, "CORPD_FBK") is free text and cleaned like a series description.
FASTMRI_SAFE_ATTRS = ("acquisition", "max", "norm")


def _q(tag: str) -> str:
    return f"{{{ISMRMRD_NS}}}{tag}"


# Per section of the ISMRMRD header: what happens to each child element. Elements not
# listed in these sections are removed; the other sections (encoding, sequence
# parameters, experimental conditions, ...) describe the acquisition and are kept, except
# their free text (``_FREE_TEXT_ELEMENTS``). "clean" is free text kept under Clean
# Descriptors, "text" free text always kept, both with only their MR-vocabulary tokens.
_XML_RULES: dict[str, dict[str, str]] = {
    "subjectInformation": {
        "patientName": "subject",
        "patientID": "subject",
        "patientWeight_kg": "characteristic",
        "patientHeight_m": "characteristic",
        "patientGender": "characteristic",
    },
    "studyInformation": {
        "studyDate": "date",
        "studyTime": "time",
        "studyInstanceUID": "uid",
        "bodyPartExamined": "text",
        "studyDescription": "clean",
    },
    "measurementInformation": {
        "seriesDate": "date",
        "seriesTime": "time",
        "patientPosition": "keep",
        "relativeTablePosition": "keep",
        "initialSeriesNumber": "keep",
        "protocolName": "clean",
        "sequenceName": "text",
        "seriesDescription": "clean",
        "seriesInstanceUIDRoot": "uid",
        "frameOfReferenceUID": "uid",
        "referencedImageSequence": "uid-children",
    },
    "acquisitionSystemInformation": {
        "systemVendor": "keep",
        "systemModel": "keep",
        "systemFieldStrength_T": "keep",
        "relativeReceiverNoiseBandwidth": "keep",
        "receiverChannels": "keep",
        "coilLabel": "keep",
        "coilName": "keep",
    },
    "userParameters": {
        "userParameterLong": "keep",
        "userParameterDouble": "keep",
    },
}


# Free-text elements of the ISMRMRD schema (ismrmrd.xsd 1.x) inside the kept sections:
# cleaned like the descriptions (or removed if nothing is left); user string and base64
# parameters are removed wherever they are.
_FREE_TEXT_ELEMENTS = {"comment", "identifier", "sequence_type", "diffusionScheme", "waveformName"}
_REMOVED_ELEMENTS = {"userParameterString", "userParameterBase64"}


def _clean_kept_sections(
    root: ET.Element, ctx: DeidContext, report: DeidReport, identifiers: list[str]
) -> None:
    """Clean the free text of the sections ``_XML_RULES`` does not list."""
    for section in list(root):
        local = section.tag.split("}")[-1]
        if local in _XML_RULES:
            continue
        for parent in list(section.iter()):
            for child in list(parent):
                name = child.tag.split("}")[-1]
                path = f"{local}/{name}"
                if name in _REMOVED_ELEMENTS:
                    parent.remove(child)
                    report.note("X", path)
                elif name in _FREE_TEXT_ELEMENTS and len(child) == 0:
                    cleaned = ctx.free_text.clean((child.text or "").strip(), identifiers)
                    if cleaned:
                        child.text = cleaned
                    else:
                        parent.remove(child)
                    report.note("C", path)


def _xml_identifiers(root: ET.Element) -> list[str]:
    found: set[str] = set()
    for section in (
        "subjectInformation",
        "studyInformation",
        "measurementInformation",
        "acquisitionSystemInformation",
    ):
        node = root.find(_q(section))
        if node is None:
            continue
        rules = _XML_RULES[section]
        for child in node.iter():
            local = child.tag.split("}")[-1]
            if rules.get(local) in ("keep", "characteristic", "clean", "text") or not child.text:
                continue
            text = child.text.strip()
            if len(text) >= 2:
                found.add(text)
            found.update(p for p in re.split(r"[\^=\s,_]+", text) if len(p) >= 2)
    return sorted(found, key=len, reverse=True)


def scrub_ismrmrd_header(xml: bytes | str, ctx: DeidContext, report: DeidReport) -> bytes:
    """Rewrite an ISMRMRD XML header without identifying elements (see ``_XML_RULES``)."""
    root = parse_ismrmrd_header(xml, error=DeidentificationError)
    identifiers = _xml_identifiers(root)
    for section, rules in _XML_RULES.items():
        node = root.find(_q(section))
        if node is None:
            continue
        for child in list(node):
            local = child.tag.split("}")[-1]
            path = f"{section}/{local}"
            rule = rules.get(local, "remove")
            text = (child.text or "").strip()
            if rule == "subject":
                child.text = ctx.subject_code
                report.note("D", path)
            elif rule == "keep":
                report.note("K", path)
            elif rule == "characteristic" and ctx.retain_patient_characteristics:
                report.note("K", path)
            elif rule == "date" and ctx.retain_dates:
                try:
                    child.text = ctx.shift_date(dt.date.fromisoformat(text)).isoformat()
                    report.note("shift", path)
                except ValueError:
                    node.remove(child)
                    report.note("X", path)
            elif rule == "time" and ctx.retain_dates:
                report.note("K", path)
            elif rule == "uid":
                child.text = ctx.remap_uid(text)
                report.note("U", path)
            elif rule == "uid-children":
                for leaf in child.iter():
                    if leaf is not child and (leaf.text or "").strip():
                        leaf.text = ctx.remap_uid(leaf.text.strip())
                report.note("U", path)
            elif rule == "text" or (rule == "clean" and ctx.clean_descriptors):
                cleaned = ctx.free_text.clean(text, identifiers)
                if cleaned:
                    child.text = cleaned
                else:
                    node.remove(child)
                report.note("C", path)
            else:
                node.remove(child)
                report.note("X", path)
    _clean_kept_sections(root, ctx, report, identifiers)
    ET.register_namespace("", ISMRMRD_NS)
    ET.register_namespace("xsi", "http://www.w3.org/2001/XMLSchema-instance")
    ET.register_namespace("xs", "http://www.w3.org/2001/XMLSchema")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


Source = str | Path | BinaryIO


def _open_h5(src: Any, mode: str = "r") -> h5py.File:
    if isinstance(src, str | Path):
        return h5py.File(src, mode)
    temp_path = getattr(src, "temporary_file_path", None)
    if callable(temp_path):  # Django TemporaryUploadedFile: read it from disk
        return h5py.File(temp_path(), mode)
    handle = getattr(src, "file", src) if not hasattr(src, "seek") else src
    handle.seek(0)
    return h5py.File(handle, mode)


def copy_values(source: h5py.Dataset, out: h5py.Group, name: str) -> h5py.Dataset:
    """Write the values of ``source`` into a new dataset ``out[name]``, a block of rows
    along axis 0 at a time: only values travel, never the source's storage (external
    files, virtual mappings), filters or attributes. gzip compression is kept, in chunks of
    whole rows (one k-space slice, or as many ISMRMRD acquisitions as fill ~4 MiB)."""
    if source.ndim == 0 or source.size == 0:
        return out.create_dataset(name, data=source[()], dtype=source.dtype)
    compressed = source.compression == "gzip"
    row_bytes = max(source.dtype.itemsize * source.size // source.shape[0], 1)
    step = max(1, COPY_BLOCK_BYTES // row_bytes)
    chunk_rows = max(1, min(source.shape[0], CHUNK_TARGET_BYTES // row_bytes))
    target = out.create_dataset(
        name,
        shape=source.shape,
        dtype=source.dtype,
        chunks=(chunk_rows, *source.shape[1:]) if compressed else None,
        compression="gzip" if compressed else None,
    )
    for start in range(0, source.shape[0], step):
        target[start : start + step] = source[start : start + step]
    return target


def _read_text(dataset: h5py.Dataset) -> bytes:
    value = dataset[()]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    return value.encode() if isinstance(value, str) else bytes(value)


def _new_report(ctx: DeidContext, kind: str) -> DeidReport:
    profile = _profile_name(ctx).replace(PROFILE_NAME, PROFILE_NAME + " (applied to HDF5)")
    return DeidReport(
        profile=profile, method_codes=[code for code, _ in ctx.method_codes()], kind=kind
    )


def deidentify_fastmri_h5(src: Source, dst: Source, ctx: DeidContext) -> DeidReport:
    """Copy a fastMRI HDF5 file to ``dst`` keeping only the known arrays and a clean header.

    The source is audited first (:func:`~mriplatform.cases.ingest.open_audited_hdf5`: no
    external storage, virtual datasets or links). The values of ``kspace``, ``mask`` and the
    reference reconstructions are copied bit for bit into fresh datasets
    (:func:`copy_values`: gzip kept, dataset attributes dropped); ``ismrmrd_header`` is
    rewritten by :func:`scrub_ismrmrd_header`; the root attribute ``patient_id`` becomes the
    subject code and unknown root attributes and objects are dropped.
    """
    report = _new_report(ctx, "fastmri_h5")
    source = open_audited_hdf5(src, error=DeidentificationError)
    with source, _open_h5(dst, "w") as out:
        if "kspace" not in source:
            raise DeidentificationError("not a fastMRI file: no 'kspace' dataset")
        for name in source:
            if name in FASTMRI_ARRAYS and isinstance(source[name], h5py.Dataset):
                copy_values(source[name], out, name)
                report.note("K", name)
            elif name == "ismrmrd_header":
                xml = scrub_ismrmrd_header(_read_text(source[name]), ctx, report)
                out.create_dataset(name, data=np.bytes_(xml))
            else:
                report.note("X", name)
                report.removed.add(name)
        for key in source.attrs:
            if key == "patient_id":
                out.attrs["patient_id"] = ctx.subject_code
                report.note("D", f"@{key}")
            elif key == "acquisition":
                value = source.attrs[key]
                text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
                cleaned = ctx.free_text.clean(text)
                if cleaned:
                    out.attrs[key] = cleaned
                else:
                    report.removed.add(f"@{key}")
                report.note("C", f"@{key}")
            elif key in FASTMRI_SAFE_ATTRS:
                out.attrs[key] = source.attrs[key]
                report.note("K", f"@{key}")
            else:
                report.note("X", f"@{key}")
                report.removed.add(f"@{key}")
    return report


def ismrmrd_to_kspace(group: h5py.Group, header: ET.Element) -> tuple[np.ndarray, np.ndarray]:
    """Grid the Cartesian 2D acquisitions of an ISMRMRD ``dataset`` group.

    Returns k-space (S, C, H, W) complex64 in the fastMRI layout (H = readout samples,
    W = the encoded matrix y, line ``kspace_encode_step_1`` at column step + encoded_y // 2
    - center as in fastMRI; lines never acquired stay zero) and the mask (W,) float32.
    Noise, navigator, phase-correction and other non-imaging readouts are skipped; repeated
    readouts of the same line (averages) are averaged. What cannot be gridded
    this way (3D, non-Cartesian, EPI, several contrasts) is refused by ``ismrmrd_layout``.
    """
    data = group["data"]
    layout = ismrmrd_layout(data["head"], header, error=DeidentificationError)
    column, slices, imaging = layout.column, layout.slices, layout.imaging
    n_coils, n_samples, width = layout.n_coils, layout.n_samples, layout.width
    payload = data["data"][imaging]
    expected = 2 * n_coils * n_samples
    short = [i for i, flat in enumerate(payload) if np.size(flat) != expected]
    if short:
        raise DeidentificationError(
            f"{len(short)} ISMRMRD readout(s) hold a number of values other than "
            f"2 x {n_coils} channels x {n_samples} samples"
        )
    readouts = np.stack([np.asarray(flat, dtype=np.float32) for flat in payload])
    readouts = readouts.view(np.complex64).reshape(len(payload), n_coils, n_samples)
    # Accumulate on an (S, W, C, H) grid so repeated lines add up, then average them.
    grid = np.zeros((layout.n_slices, width, n_coils, n_samples), np.complex64)
    np.add.at(grid, (slices, column), readouts)
    counts = np.zeros((layout.n_slices, width), np.int64)
    np.add.at(counts, (slices, column), 1)
    grid /= np.maximum(counts, 1)[:, :, None, None].astype(np.float32)
    kspace = np.ascontiguousarray(grid.transpose(0, 2, 3, 1))
    sampled = counts > 0
    mask = sampled.any(axis=0).astype(np.float32)
    return kspace, mask


def deidentify_ismrmrd_h5(
    src: Source, dst: Source, ctx: DeidContext, to_fastmri: bool = True
) -> DeidReport:
    """De-identify an ISMRMRD HDF5 file into ``dst``.

    ``to_fastmri=True`` (what the platform stores) writes the fastMRI layout: ``kspace``
    (S, C, H, W) complex64 gridded by :func:`ismrmrd_to_kspace`, ``mask`` (W,) and the
    scrubbed header as ``ismrmrd_header``. ``to_fastmri=False`` keeps the ISMRMRD layout:
    the values of ``dataset/data`` and ``dataset/waveforms`` copied bit for bit
    (acquisition headers hold counters, positions and time-of-day stamps, nothing that
    names the patient) and
    ``dataset/xml`` scrubbed; every other object is dropped.
    """
    report = _new_report(ctx, "ismrmrd_h5")
    source = open_audited_hdf5(src, error=DeidentificationError)
    with source, _open_h5(dst, "w") as out:
        names = [k for k in source if k != "dataset"]
        group = source.get("dataset")
        if not isinstance(group, h5py.Group) or "xml" not in group or "data" not in group:
            raise DeidentificationError(
                "not an ISMRMRD file: needs 'dataset/xml' and 'dataset/data'"
            )
        xml = _read_text(group["xml"])
        clean = scrub_ismrmrd_header(xml, ctx, report)
        if to_fastmri:
            kspace, mask = ismrmrd_to_kspace(group, parse_ismrmrd_header(xml))
            out.create_dataset("kspace", data=kspace)
            out.create_dataset("mask", data=mask)
            out.create_dataset("ismrmrd_header", data=np.bytes_(clean))
            out.attrs["patient_id"] = ctx.subject_code
            report.note("K", "dataset/data")
        else:
            target = out.create_group("dataset")
            # Same shape as the source: the ismrmrd library writes and reads a (1,) array.
            shape = group["xml"].shape
            text = np.array(clean.decode(), dtype=h5py.string_dtype()).reshape(shape or ())
            target.create_dataset("xml", data=text, dtype=h5py.string_dtype())
            for name in group:
                if name in ("data", "waveforms") and isinstance(group[name], h5py.Dataset):
                    copy_values(group[name], target, name)
                    report.note("K", f"dataset/{name}")
                elif name != "xml":
                    report.note("X", f"dataset/{name}")
                    report.removed.add(f"dataset/{name}")
        for name in names:
            report.note("X", name)
            report.removed.add(name)
    return report


def deidentify_raw_h5(src: Source, dst: Source, ctx: DeidContext, kind: str) -> DeidReport:
    """Dispatch on ``kind`` (``fastmri_h5`` or ``ismrmrd_h5``); ISMRMRD becomes fastMRI."""
    if kind == "fastmri_h5":
        return deidentify_fastmri_h5(src, dst, ctx)
    if kind == "ismrmrd_h5":
        return deidentify_ismrmrd_h5(src, dst, ctx, to_fastmri=True)
    raise ValueError(f"unknown raw kind {kind!r}; expected 'fastmri_h5' or 'ismrmrd_h5'")
