"""Reader-side services: worklist, the reader's own reads, next read, opaque image tokens and
blinded instances with a small in-process cache.

Blinding rules kept here (the views only render what these return):

* A reader reaches a read only through its random ``alias`` and only when it is theirs, the
  study is open and the session is available and not finished (:func:`reader_item`,
  otherwise ``Http404``): after finishing a session its reads, answers and images are out of
  reach, so nothing of an earlier session can be looked at again during or after the washout.
* Image URLs are ``/read/i/<token>/`` where ``token`` = HMAC-SHA256(SECRET_KEY, image alias
  and slice index), 128 bits, base64url: it names no instance, file, series or UID and
  cannot be derived without the server's key. Each server process keeps the map token ->
  (read, side, slice) in memory (bounded); a process that has not seen a token rebuilds the
  entries of the requesting reader's readable reads, so any process can serve any token. The
  rebuild runs at most once per reader and process every ``TOKEN_REBUILD_INTERVAL_S``
  seconds, so unknown tokens cannot make a reader's requests re-query all their reads.
* Pixel values are normalised per image set before blinding: the stored values become
  ``round(max(v, 0) / hi * 65535)`` (uint16, RescaleSlope 1, RescaleIntercept 0) with ``v``
  the modality values and ``hi = max v`` over the whole series. Magnitude images carry no
  meaningful negative signal; negatives (e.g. a network's undershoot) are clipped to 0, so
  zero signal is stored as 0 in every arm: the background is equally dark whatever the
  method, and ROI ratios (SNR, CNR) keep their zero. A reconstruction's own scaling (e.g.
  ``RescaleSlope = max / 65535`` of the engine's writer, or a network's output range)
  therefore never reaches the reader, while grey levels still compare across the slices of
  a series. For the engine's writer (``hi = 65535 * slope``) the stored pixel values are
  kept exactly. The image matrix and slice count are inherent to an image set
  (a super-resolution arm has a larger matrix) and are not hidden.
* Slices are served in anatomical order: sorted by position along the slice normal
  (ImagePositionPatient . (row x column)), then SliceLocation, then InstanceNumber.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pydicom
from django.conf import settings
from django.db.models import Count, Q
from django.http import Http404
from django.utils import timezone

from mriplatform.cases.models import Instance
from studies import services
from studies.blinding import alias_uid, blinded_dicom
from studies.models import Answer, Question, ReadingSession, ReadItem
from studies.permissions import readable_studies

TOKEN_MAP_ENTRIES = 500_000
TOKEN_REBUILD_INTERVAL_S = 60.0
BLINDED_CACHE_BYTES = 96 * 1024 * 1024
NORMALISED_MAX = 65535


# --------------------------------------------------------------------------- worklist


@dataclass
class SessionRow:
    """One session of the worklist: numbers and dates only. Never an arm, and repeat sessions
    look like any other (only side-by-side sessions say so: the reader sees two images)."""

    number: int
    side_by_side: bool
    total: int
    submitted: int
    available_from: datetime | None
    available: bool
    completed: bool
    next_alias: str | None
    can_finish: bool
    finish_alias: str | None = None


def worklist(user, now: datetime | None = None) -> list[dict[str, Any]]:
    """Per open study assigned to ``user``: title and its sessions as :class:`SessionRow`.

    ``start`` is the alias of the next unsubmitted read of the first available, unfinished
    session (None when nothing can be read now)."""
    now = now or timezone.now()
    studies = readable_studies(user).order_by("title", "pk")
    result = []
    for study in studies:
        sessions = (
            ReadingSession.objects.filter(study=study, reader=user)
            .annotate(
                total=Count("items"),
                submitted=Count("items", filter=Q(items__submitted_at__isnull=False)),
            )
            .order_by("index")
        )
        rows, start = [], None
        for s in sessions:
            available = s.is_available(now)
            completed = s.completed_at is not None
            nxt = None
            if available and not completed:
                first = s.items.filter(submitted_at__isnull=True).order_by("order_index").first()
                nxt = first.alias if first else None
                if start is None:
                    start = nxt or (
                        s.items.order_by("order_index").values_list("alias", flat=True).first()
                        if study.allow_edit_until_session_end
                        else None
                    )
            rows.append(
                SessionRow(
                    number=s.index + 1,
                    side_by_side=s.kind == ReadingSession.Kind.PAIRED,
                    total=s.total,
                    submitted=s.submitted,
                    available_from=s.available_from,
                    available=available,
                    completed=completed,
                    next_alias=nxt,
                    can_finish=available and not completed and s.total == s.submitted,
                    finish_alias=(
                        s.items.values_list("alias", flat=True).first()
                        if available and not completed and s.total == s.submitted
                        else None
                    ),
                )
            )
        result.append({"title": study.title, "sessions": rows, "start": start})
    return result


# --------------------------------------------------------------------------- reads


def reader_item(user, alias: str, now: datetime | None = None) -> ReadItem:
    """The read ``alias`` of ``user`` in an open study and an available session, else 404.

    The same 404 answers "not yours", "no such alias", "study closed" and "washout", so a
    reader learns nothing about other reads."""
    now = now or timezone.now()
    item = (
        ReadItem.objects.select_related("session__study")
        .filter(alias=alias, reader=user, session__study__in=readable_studies(user))
        .first()
    )
    if item is None or not _reachable(item.session, now):
        raise Http404("No such read.")
    return item


def _reachable(session: ReadingSession, now: datetime) -> bool:
    """A reader reaches the reads of a session only while it is available and unfinished."""
    return session.completed_at is None and session.is_available(now)


def editable(item: ReadItem) -> bool:
    """Whether the reader may still change the answers of ``item``."""
    if item.submitted_at is None:
        return True
    study = item.session.study
    return study.allow_edit_until_session_end and item.session.completed_at is None


def position(item: ReadItem) -> tuple[int, int]:
    """(k, N): the read is case k of the N reads of its session."""
    return item.order_index + 1, item.session.items.count()


def next_item(item: ReadItem) -> ReadItem | None:
    """The next unsubmitted read of the session after ``item`` (wrapping to earlier skipped
    ones), or None."""
    pending = item.session.items.filter(submitted_at__isnull=True).exclude(pk=item.pk)
    return (
        pending.filter(order_index__gt=item.order_index).order_by("order_index").first()
        or pending.order_by("order_index").first()
    )


def questions(item: ReadItem) -> list[Question]:
    """The questions this read asks (preference only on side-by-side reads)."""
    from studies.questions import questions_for

    return list(questions_for(item))


def own_answers(item: ReadItem) -> list[dict[str, Any]]:
    """The reader's own saved answers of ``item`` (for resuming)."""
    return [
        {"question": a.question, "value": a.value, "confidence": a.confidence}
        for a in Answer.objects.filter(read_item=item).order_by("question")
    ]


def submit(item: ReadItem, user, now: datetime | None = None) -> ReadItem | None:
    """Submit ``item`` (idempotent) and return the next read to show, or None.

    When no read of the session is left and edits after submission are not allowed, the
    session is finished at once (its washout clock starts). A read whose images are missing
    (no image set, or one without instances) is refused with StudyError: its answers could
    not have been given on the images."""
    now = now or timezone.now()
    if item.submitted_at is None and not services.read_has_images(item):
        raise services.StudyError(
            "the images of this read are missing; it cannot be submitted. "
            "Please tell the study coordinator."
        )
    services.submit_read(item, user, now=now)
    item.refresh_from_db()
    following = next_item(item)
    if following is None and not item.session.study.allow_edit_until_session_end:
        services.finish_session(item.session, user, now=now)
    return following


def finish(item: ReadItem, user, now: datetime | None = None) -> ReadingSession:
    """Finish the session of ``item`` (every read submitted): the reader's button."""
    return services.finish_session(item.session, user, now=now)


# --------------------------------------------------------------------------- images


def _image_aliases(item: ReadItem) -> list[tuple[int, str, Any]]:
    """(side, image alias, arm) of the read: side 0 the left/only image set, 1 the right."""
    sides = [(0, item.alias, item.arm)]
    if item.second_arm_id is not None and item.second_alias:
        sides.append((1, item.second_alias, item.second_arm))
    return sides


class _TokenMap:
    """Thread-safe, bounded (least recently registered dropped first) map of token ->
    (read pk, side, slice index, image-set series pk)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data: OrderedDict[str, tuple[int, int, int, int]] = OrderedDict()
        self.lock = threading.Lock()

    def update(self, entries: dict[str, tuple[int, int, int, int]]) -> None:
        with self.lock:
            for key, value in entries.items():
                self.data[key] = value
                self.data.move_to_end(key)
            while len(self.data) > self.limit:
                self.data.popitem(last=False)

    def get(self, key: str) -> tuple[int, int, int, int] | None:
        with self.lock:
            return self.data.get(key)


_tokens = _TokenMap(TOKEN_MAP_ENTRIES)


def image_token(image_alias: str, slice_index: int) -> str:
    """The opaque URL token of one slice of one image set (128-bit HMAC, base64url)."""
    msg = f"reading-image|{image_alias}|{slice_index}".encode()
    digest = hmac.new(settings.SECRET_KEY.encode(), msg, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def image_urls(item: ReadItem) -> list[list[str]]:
    """Per side, the blinded image URLs of the read in anatomical order; registers the
    tokens so :func:`resolve_token` finds them."""
    from django.urls import reverse

    urls = []
    entries = {}
    try:
        found = services.read_images(item)
    except services.StudyError:
        found = [None] * len(_image_aliases(item))
    for (side, image_alias, _arm), series in zip(_image_aliases(item), found, strict=True):
        count = series.instances.count() if series is not None else 0
        side_urls = []
        for index in range(count):
            token = image_token(image_alias, index)
            entries[token] = (item.pk, side, index, series.pk)
            side_urls.append(reverse("reading:image", args=[token]))
        urls.append(side_urls)
    _tokens.update(entries)
    return urls


_rebuilt_at: dict[int, float] = {}
_rebuilt_lock = threading.Lock()


def _register_available(user, now: datetime) -> None:
    """Re-register the tokens of every read of ``user`` in available, unfinished sessions of
    open studies (after a cache miss, e.g. another server process rendered the page).

    At most once per reader and process every ``TOKEN_REBUILD_INTERVAL_S`` seconds (monotonic
    clock): a burst of unknown tokens costs one rebuild, not one per request."""
    clock = time.monotonic()
    with _rebuilt_lock:
        last = _rebuilt_at.get(user.pk)
        if last is not None and clock - last < TOKEN_REBUILD_INTERVAL_S:
            return
        _rebuilt_at[user.pk] = clock
        if len(_rebuilt_at) > 10_000:
            _rebuilt_at.clear()
            _rebuilt_at[user.pk] = clock
    items = ReadItem.objects.filter(
        reader=user,
        session__study__in=readable_studies(user),
        session__available_from__lte=now,
        session__completed_at__isnull=True,
    ).select_related(
        "study_case", "arm", "second_arm", "session__study", "image_series", "second_image_series"
    )
    for item in items:
        image_urls(item)


def resolve_token(user, token: str, now: datetime | None = None) -> tuple[ReadItem, int, int, int]:
    """(read, side, slice index, image-set series pk) of ``token`` when it belongs to
    ``user``'s readable read; Http404 otherwise (a token of another reader looks exactly
    like an unknown one)."""
    now = now or timezone.now()
    if not (16 <= len(token) <= 32):
        raise Http404("No such image.")
    found = _tokens.get(token)
    if found is None:
        _register_available(user, now)
        found = _tokens.get(token)
    if found is None:
        raise Http404("No such image.")
    item_pk, side, index, series_pk = found
    item = (
        ReadItem.objects.select_related("session__study", "study_case", "arm", "second_arm")
        .filter(pk=item_pk, reader=user, session__study__in=readable_studies(user))
        .first()
    )
    if item is None or not _reachable(item.session, now):
        raise Http404("No such image.")
    return item, side, index, series_pk


@dataclass(frozen=True)
class _SeriesProfile:
    files: tuple[str, ...]  # storage names of the instances, in anatomical order
    lo: float
    hi: float


_profiles: OrderedDict[int, _SeriesProfile] = OrderedDict()
_profiles_lock = threading.Lock()


def _modality_values(ds: pydicom.Dataset) -> np.ndarray:
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return ds.pixel_array.astype(np.float64) * slope + intercept


def _profile(series_pk: int) -> _SeriesProfile:
    """Anatomical slice order and value range of a (immutable) output series, cached."""
    with _profiles_lock:
        if series_pk in _profiles:
            _profiles.move_to_end(series_pk)
            return _profiles[series_pk]
    keyed, hi = [], 0.0
    for inst in Instance.objects.filter(series_id=series_pk):
        with inst.file.open("rb") as fh:
            ds = pydicom.dcmread(fh, force=True)
        orientation = np.asarray(ds.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), float)
        normal = np.cross(orientation[:3], orientation[3:])
        where = ds.get("ImagePositionPatient")
        along = float(np.dot(np.asarray(where, float), normal)) if where else None
        location = ds.get("SliceLocation")
        keyed.append(
            (
                along if along is not None else float(location or 0.0),
                float(location or 0.0),
                inst.instance_number,
                inst.file.name,
            )
        )
        values = _modality_values(ds)
        hi = max(hi, float(values.max()))
    keyed.sort()
    profile = _SeriesProfile(tuple(k[-1] for k in keyed), 0.0, hi if hi > 0 else 1.0)
    with _profiles_lock:
        _profiles[series_pk] = profile
        while len(_profiles) > 512:
            _profiles.popitem(last=False)
    return profile


def normalised_instance(instance_bytes: bytes, lo: float, hi: float) -> bytes:
    """The instance with pixel values mapped from [lo, hi] onto 0..65535 (uint16, slope 1,
    intercept 0), values below ``lo`` clipped to 0: see the module docstring (the reading
    pages always pass ``lo = 0``, so negative signal is clipped and zero stays 0)."""
    ds = pydicom.dcmread(io.BytesIO(instance_bytes), force=True)
    values = np.maximum(_modality_values(ds), lo)
    stored = np.round((values - lo) / (hi - lo) * NORMALISED_MAX).clip(0, NORMALISED_MAX)
    ds.PixelData = stored.astype("<u2").tobytes()
    ds["PixelData"].VR = "OW"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = 1
    ds.RescaleIntercept = 0
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=False)
    return out.getvalue()


class _BytesLRU:
    """A thread-safe LRU of blinded instances bounded by total size in bytes."""

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
            if key in self.data:
                return
            self.data[key] = value
            self.size += len(value)
            while self.size > self.budget and self.data:
                _, old = self.data.popitem(last=False)
                self.size -= len(old)


_blinded_cache = _BytesLRU(BLINDED_CACHE_BYTES)


def _instance_storage():
    return Instance._meta.get_field("file").storage


def blinded_image(item: ReadItem, side: int, slice_index: int, series_pk: int) -> bytes:
    """The blinded, normalised DICOM of one slice (anatomical order) of the read's image set
    on ``side`` (the series ``series_pk`` that :func:`image_urls` found for it); Http404
    when the slice does not exist."""
    sides = {s: image_alias for s, image_alias, _ in _image_aliases(item)}
    if side not in sides:
        raise Http404("No such image.")
    image_alias = sides[side]
    key = (image_alias, slice_index)
    cached = _blinded_cache.get(key)
    if cached is not None:
        return cached
    profile = _profile(series_pk)
    if not 0 <= slice_index < len(profile.files):
        raise Http404("No such image.")
    with _instance_storage().open(profile.files[slice_index], "rb") as fh:
        raw = fh.read()
    data = blinded_dicom(
        normalised_instance(raw, profile.lo, profile.hi),
        alias=image_alias,
        slice_index=slice_index,
        shared_study_uid=alias_uid(item.alias, "study"),
    )
    _blinded_cache.put(key, data)
    return data
