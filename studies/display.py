"""Blinded display instances of an image series, built once and served to every reader.

Display normalisation (per image set, i.e. per series shown)
------------------------------------------------------------
The modality values ``v`` (stored value x RescaleSlope + RescaleIntercept) of the whole series
are multiplied by one common factor ``s = DISPLAY_P995 / p99.5(max(v, 0))`` and stored as
``round(max(v, 0) * s)`` (uint16, RescaleSlope 1, RescaleIntercept 0). So the 99.5th
percentile of every image set lands on the same value (3000) in an MR-like range: a
reconstruction's own scaling (an engine writer's ``RescaleSlope``, a network's output range)
never reaches the reader, grey levels keep their ratios within and across slices (ROI
means, SNR and CNR are unchanged by the factor), zero signal stays 0 in every arm
(negatives, e.g. a network's undershoot, are clipped: magnitude images have no negative
signal), and window/level reads in the same units for every image set, so per-study
presets (:data:`DEFAULT_WINDOW_PRESETS`) mean the same on every case. Values are not
stretched to 16 bits; the rare voxels above ``65535 / s`` (21.8 x the 99.5th percentile)
saturate.

Storage
-------
A series is blinded once (:func:`blinded_series`): its instances, in anatomical order,
blinded with placeholder UIDs (:func:`studies.blinding.blind_dataset` keyed by a template
alias), one ``multipart/related`` body as DICOMweb WADO-RS returns a series, written through
Django's storage API (``BlindedSeries.blob``). Every derived UID has the same length, so a
reader's copy (:func:`reader_series`, :func:`reader_instance`) is the stored bytes with the
reader's own UIDs written at the recorded offsets: no pixel work per request, and no two
readers (or a read and its repeat) share a UID.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import pydicom
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.http import Http404

from mriplatform.cases.models import Instance, Series
from studies.blinding import UID_LENGTH, alias_uid, blind_dataset
from studies.models import BlindedSeries, ImageSet

BLINDING_VERSION = "display2"
DISPLAY_P995 = 3000.0
DISPLAY_MAX = 65535
CONTENT_TYPE = 'multipart/related; type="application/dicom"; boundary={boundary}'
BLOB_CACHE_BYTES = 128 * 1024 * 1024

logger = logging.getLogger(__name__)

SEQUENCE_TYPES = ("PD", "PD-FS", "T1", "T2")

# Window presets per sequence type, in the display units above (99.5th percentile = 3000).
# Starting points chosen on the fraction of that percentile a structure typically occupies
# (e.g. PD cartilage sits at roughly a third to a half of it, fat-suppressed marrow near the
# bottom); a study sets its own in ``Study.window_presets``. Not clinically validated.
DEFAULT_WINDOW_PRESETS: dict[str, list[dict]] = {
    "PD": [
        {"name": "Soft tissue", "width": 3200, "center": 1600},
        {"name": "Cartilage", "width": 1800, "center": 1100},
        {"name": "Ligament / tendon", "width": 1400, "center": 600},
    ],
    "PD-FS": [
        {"name": "Fluid", "width": 3200, "center": 1600},
        {"name": "Marrow oedema", "width": 1600, "center": 700},
        {"name": "Cartilage", "width": 2000, "center": 1000},
    ],
    "T1": [
        {"name": "Fat / marrow", "width": 3400, "center": 1700},
        {"name": "Soft tissue", "width": 2000, "center": 1000},
    ],
    "T2": [
        {"name": "Fluid", "width": 3400, "center": 1700},
        {"name": "Soft tissue", "width": 1600, "center": 800},
    ],
}
GENERIC_PRESETS = [
    {"name": "Full range", "width": 3400, "center": 1700},
    {"name": "Soft tissue", "width": 2000, "center": 1000},
]


# --------------------------------------------------------------------------- presets


def sequence_type(description: str) -> str | None:
    """PD, PD-FS, T1 or T2 from a free-text sequence description (``Case.sequence``), or
    None when it names none of them. Fat suppression: "FS", "fat sat", "fat-suppressed",
    "SPAIR", "SPIR", "CHESS" or "Dixon water"."""
    text = description.upper()
    fat_suppressed = bool(
        re.search(r"\bFS\b|FAT[- ]?SAT|FAT[- ]?SUPP|SPAIR|\bSPIR\b|CHESS|DIXON WATER", text)
    )
    if re.search(r"\bT1", text):
        return "T1"
    if re.search(r"\bT2", text):
        return "T2"
    if re.search(r"\bPD|PROTON", text) or fat_suppressed:
        return "PD-FS" if fat_suppressed else "PD"
    return None


def validate_window_presets(value: object) -> None:
    """ValidationError unless ``value`` is {sequence type: [{name, width > 0, center}]}."""
    if not isinstance(value, dict):
        raise ValidationError("window presets must be an object keyed by sequence type")
    for key, presets in value.items():
        if key not in SEQUENCE_TYPES:
            raise ValidationError(f"unknown sequence type {key!r}: use {', '.join(SEQUENCE_TYPES)}")
        if not isinstance(presets, list) or not presets or len(presets) > 8:
            raise ValidationError(f"{key}: give 1 to 8 presets")
        for preset in presets:
            if not isinstance(preset, dict) or set(preset) != {"name", "width", "center"}:
                raise ValidationError(f"{key}: each preset is {{name, width, center}}")
            name, width, center = preset["name"], preset["width"], preset["center"]
            if not isinstance(name, str) or not name.strip() or len(name) > 40:
                raise ValidationError(f"{key}: a preset needs a name of 1-40 characters")
            numbers = (width, center)
            if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers):
                raise ValidationError(f"{key}: width and center must be numbers")
            if not (0 < width <= DISPLAY_MAX and 0 <= center <= DISPLAY_MAX):
                raise ValidationError(f"{key}: width must be in (0, 65535], center in [0, 65535]")


def window_presets(study, description: str) -> tuple[str | None, list[dict]]:
    """(sequence type, absolute window presets) for a case of ``study`` whose sequence is
    ``description``: the study's own presets for that type, else the defaults."""
    kind = sequence_type(description or "")
    chosen = (study.window_presets or {}).get(kind) if kind else None
    if not chosen:
        chosen = DEFAULT_WINDOW_PRESETS.get(kind, GENERIC_PRESETS) if kind else GENERIC_PRESETS
    return kind, [{"kind": "absolute", **p} for p in chosen]


# --------------------------------------------------------------------------- building


def series_digest(series_pk: int) -> str:
    """Names the content a blinded series is built from: blinding version + instances."""
    rows = Instance.objects.filter(series_id=series_pk).order_by("pk").values_list("pk", "file")
    text = "|".join(f"{pk}:{name}" for pk, name in rows)
    return f"{BLINDING_VERSION}-" + hashlib.sha256(text.encode()).hexdigest()[:48]


def _modality_values(ds: pydicom.Dataset) -> np.ndarray:
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return ds.pixel_array.astype(np.float64) * slope + intercept


def _anatomical_key(ds: pydicom.Dataset, instance_number: int) -> tuple[float, float, int]:
    """Position along the slice normal, then SliceLocation, then InstanceNumber."""
    orientation = np.asarray(ds.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), float)
    normal = np.cross(orientation[:3], orientation[3:])
    where = ds.get("ImagePositionPatient")
    location = float(ds.get("SliceLocation") or 0.0)
    along = float(np.dot(np.asarray(where, float), normal)) if where else location
    return along, location, instance_number


def display_scale(values: list[np.ndarray]) -> float:
    """The common factor ``DISPLAY_P995 / p99.5`` of a series' non-negative values (the
    maximum when the percentile is 0, 1 for an all-zero series)."""
    flat = np.concatenate([v.ravel() for v in values])
    reference = float(np.percentile(flat, 99.5))
    if reference <= 0:
        reference = float(flat.max())
    return DISPLAY_P995 / reference if reference > 0 else 1.0


def _template_aliases(digest: str) -> tuple[str, str]:
    return f"template-image|{digest}", f"template-read|{digest}"


def _build(series: Series, digest: str) -> tuple[bytes, str, list]:
    """(multipart body, boundary, parts) of the series blinded with placeholder UIDs."""
    sources = []
    for inst in Instance.objects.filter(series=series):
        with inst.file.open("rb") as fh:
            ds = pydicom.dcmread(fh, force=True)
        sources.append((_anatomical_key(ds, inst.instance_number), ds))
    if not sources:
        raise Http404("No such image.")
    sources.sort(key=lambda pair: pair[0])
    values = [np.maximum(_modality_values(ds), 0.0) for _, ds in sources]
    scale = display_scale(values)
    image_alias, read_alias = _template_aliases(digest)
    study_uid = alias_uid(read_alias, "study")
    instances = []
    for index, ((_, ds), v) in enumerate(zip(sources, values, strict=True)):
        stored = np.round(v * scale).clip(0, DISPLAY_MAX).astype("<u2")
        ds.PixelData = stored.tobytes()
        ds["PixelData"].VR = "OW"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleSlope = 1
        ds.RescaleIntercept = 0
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        instances.append(blind_dataset(ds, image_alias, index, study_uid))
    boundary = secrets.token_hex(16)
    while any(boundary.encode() in data for data in instances):
        boundary = secrets.token_hex(16)
    placeholders = {"study": study_uid.encode()}
    for label in ("series", "frame"):
        placeholders[label] = alias_uid(image_alias, label).encode()
    out, parts, offset = io.BytesIO(), [], 0
    for index, data in enumerate(instances):
        head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        out.write(head)
        start = offset + len(head)
        labels = {**placeholders, f"sop:{index}": alias_uid(image_alias, f"sop:{index}").encode()}
        uids = []
        for label, uid in labels.items():
            found = data.find(uid)
            while found >= 0:
                uids.append([start + found, label])
                found = data.find(uid, found + UID_LENGTH)
        out.write(data)
        out.write(b"\r\n")
        parts.append([start, start + len(data), uids])
        offset = start + len(data) + 2
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), boundary, parts


_known: OrderedDict[int, BlindedSeries] = OrderedDict()
_known_lock = threading.Lock()


def _remember(series_pk: int, blinded: BlindedSeries) -> BlindedSeries:
    with _known_lock:
        _known[series_pk] = blinded
        while len(_known) > 4096:
            _known.popitem(last=False)
    return blinded


def blinded_series(series_pk: int) -> BlindedSeries:
    """The stored blinded display of series ``series_pk``, built now when missing or built
    by another blinding version (once: concurrent requests wait on a row lock). A built row
    never changes (series are immutable, a new blinding version is a new deployment), so
    each process keeps the rows it has seen."""
    known = _known.get(series_pk)
    if known is not None:
        return known
    found = BlindedSeries.objects.filter(series_id=series_pk).first()
    if found is not None and found.digest.startswith(f"{BLINDING_VERSION}-"):
        return _remember(series_pk, found)
    with transaction.atomic():
        series = Series.objects.select_for_update().get(pk=series_pk)
        found = BlindedSeries.objects.filter(series=series).first()
        digest = series_digest(series_pk)
        if found is not None and found.digest == digest:
            return _remember(series_pk, found)
        body, boundary, parts = _build(series, digest)
        if found is None:
            found = BlindedSeries(series=series)
        elif found.blob:
            found.blob.delete(save=False)
        found.digest, found.boundary, found.parts = digest, boundary, parts
        found.blob.save(f"{series_pk}-{digest}.multipart", ContentFile(body), save=False)
        found.save()
        _blobs.put((found.pk, digest), body)
    return _remember(series_pk, found)


def build_study_display(study_id: int) -> int:
    """Blind and store every series the reads of study ``study_id`` show (those already
    stored are left); returns how many series it holds. A series that cannot be blinded is
    logged and left to its first request, which answers the reader with a clear error."""
    from studies.models import ReadItem

    reads = ReadItem.objects.filter(session__study_id=study_id)
    wanted = set(reads.exclude(image_series=None).values_list("image_series_id", flat=True))
    wanted |= set(
        reads.exclude(second_image_series=None).values_list("second_image_series_id", flat=True)
    )
    for series_pk in sorted(wanted):
        try:
            blinded_series(series_pk)
        except (Http404, OSError, ValueError) as exc:
            logger.error("series %s could not be blinded for display: %s", series_pk, exc)
    return len(wanted)


class _BytesLRU:
    """A thread-safe LRU of bytes bounded by their total size (a per-process read cache of
    stored blobs; the storage stays the source of truth)."""

    def __init__(self, budget: int) -> None:
        self.budget, self.size = budget, 0
        self.data: OrderedDict[tuple, bytes] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple) -> bytes | None:
        with self.lock:
            value = self.data.get(key)
            if value is not None:
                self.data.move_to_end(key)
            return value

    def put(self, key: tuple, value: bytes) -> None:
        with self.lock:
            if key in self.data or len(value) > self.budget:
                return
            self.data[key] = value
            self.size += len(value)
            while self.size > self.budget:
                _, old = self.data.popitem(last=False)
                self.size -= len(old)


_blobs = _BytesLRU(BLOB_CACHE_BYTES)


def _blob(blinded: BlindedSeries) -> bytes:
    key = (blinded.pk, blinded.digest)
    body = _blobs.get(key)
    if body is None:
        with blinded.blob.open("rb") as fh:
            body = fh.read()
        _blobs.put(key, body)
    return body


# --------------------------------------------------------------------------- serving


def _reader_uids(image_set: ImageSet, count: int) -> dict[str, bytes]:
    read = image_set.read_item
    image_alias = read.alias if image_set.side == 0 else read.second_alias
    uids = {"study": alias_uid(read.alias, "study").encode()}
    for label in ("series", "frame", *(f"sop:{i}" for i in range(count))):
        uids[label] = alias_uid(image_alias, label).encode()
    return uids


def _write_uids(buffer: bytearray, shift: int, part: list, uids: dict[str, bytes]) -> None:
    for offset, label in part[2]:
        buffer[offset - shift : offset - shift + UID_LENGTH] = uids[label]


def _with_reader_uids(blob: bytes, parts: list, uids: dict[str, bytes]) -> Iterator[bytes]:
    """The stored body in pieces, each placeholder UID replaced by the reader's (same length):
    the pixel data are sliced from the stored bytes, never patched in a copy."""
    view = memoryview(blob)
    position = 0
    for part in parts:
        for offset, label in sorted(part[2]):
            yield view[position:offset]
            yield uids[label]
            position = offset + UID_LENGTH
    yield view[position:]


def reader_series(image_set: ImageSet) -> tuple[Iterator[bytes], int, str, str]:
    """(body pieces, length in bytes, content type, ETag) of the whole image set for its
    reader: the multipart/related body of every blinded instance in anatomical order with
    the reader's UIDs."""
    blinded = blinded_series(image_set.series_id)
    blob = _blob(blinded)
    uids = _reader_uids(image_set, len(blinded.parts))
    content_type = CONTENT_TYPE.format(boundary=blinded.boundary)
    pieces = _with_reader_uids(blob, blinded.parts, uids)
    return pieces, len(blob), content_type, etag(image_set, blinded)


def reader_instance(image_set: ImageSet, index: int) -> tuple[bytes, str]:
    """(one blinded DICOM instance, ETag): slice ``index`` (0-based, anatomical order) of the
    image set with the reader's UIDs; Http404 for a slice that does not exist."""
    blinded = blinded_series(image_set.series_id)
    if not 0 <= index < len(blinded.parts):
        raise Http404("No such image.")
    part = blinded.parts[index]
    buffer = bytearray(_blob(blinded)[part[0] : part[1]])
    _write_uids(buffer, part[0], part, _reader_uids(image_set, len(blinded.parts)))
    return bytes(buffer), etag(image_set, blinded, index)


def etag(image_set: ImageSet, blinded: BlindedSeries, index: int | None = None) -> str:
    """A strong ETag per reader's image set (keyed by its token, so two reads of one series
    never share one) and content digest."""
    text = f"{image_set.token}|{blinded.digest}|{'' if index is None else index}"
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'
