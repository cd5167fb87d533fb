"""Fuzz suite of hostile uploads (issue 11): a seeded, bounded generator replays every class
of hostile input (files, case fields, malformed request bodies) through the upload form
(session login, CSRF token from the page, plain and XHR posts, as the browser sends them)
and through the REST API, new case and added series alike.

For every input: no 5xx; a refused input (4xx) changes no database row and leaves no file;
an accepted one (2xx) adds exactly one series whose files are all it stores. After the
run: the case list page, the API case list, every case and series page and the QA preview
of every stored slice still answer 200, and every stored file belongs to a series. The
counts are printed (run with ``-s``) and recorded as the test's ``fuzz_counts`` property.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from mriplatform.accounts.roles import Role
from mriplatform.audit.models import AuditEvent
from mriplatform.cases.models import Case, Instance, Series
from tests.cases import hostile

pytestmark = pytest.mark.django_db

SEED = 20261102
CHANNELS = ("form", "xhr", "api")
RAW_BODIES = 16


@dataclass
class FuzzInput:
    """One hostile request: its attack class, the files and the case fields it sends."""

    kind: str
    files: hostile.Files
    fields: dict[str, str] = field(default_factory=dict)
    new_case: bool = True
    raw_body: tuple[str, bytes] | None = None  # (content type, body) sent as is


def _flip_bytes(data: bytes, rng: random.Random, count: int) -> bytes:
    buffer = bytearray(data)
    for _ in range(count):
        buffer[rng.randrange(len(buffer))] = rng.randrange(256)
    return bytes(buffer)


def _file_classes(stored: Callable[[], str]) -> dict[str, tuple[int, Callable]]:
    """Attack class -> (how many inputs, builder(rng) -> files). ``stored()`` is the path
    of another case's stored raw file (what the virtual dataset / links aim at)."""
    dcm = "IM0001.dcm"
    return {
        "dicom-bit-flips": (80, lambda rng: [(dcm, hostile.dicom_bit_flips(rng))]),
        "dicom-unknown-vr": (8, lambda rng: [(dcm, hostile.dicom_unknown_vr(rng))]),
        "dicom-wrong-length": (8, lambda rng: [(dcm, hostile.dicom_wrong_length(rng))]),
        "dicom-bad-integer": (8, lambda rng: [(dcm, hostile.dicom_bad_integer_string(rng))]),
        "dicom-deep-sequence": (
            6,
            lambda rng: [(dcm, hostile.dicom_deep_sequence(rng.choice([17, 64, 300, 400])))],
        ),
        "dicom-pixel-module": (12, lambda rng: [(dcm, hostile.dicom_bad_pixel_module(rng))]),
        "dicom-garbage-jpeg": (8, lambda rng: [(dcm, hostile.dicom_garbage_jpeg(rng))]),
        "dicom-truncated": (
            6,
            lambda rng: [(dcm, hostile.mr_bytes()[: rng.randrange(140, 9000)])],
        ),
        "zip-zero-members": (
            4,
            lambda rng: [
                (
                    "s.zip",
                    hostile.zip_of_zeros(rng.randint(2, 12), rng.choice([2**18, 2**19, 2**20])),
                )
            ],
        ),
        "zip-corrupt-deflate": (10, lambda rng: [("s.zip", hostile.zip_corrupt_deflate(rng))]),
        "zip-negative-seek": (2, lambda rng: [("s.zip", hostile.zip_negative_offset())]),
        "zip-truncated": (
            6,
            lambda rng: [
                ("s.zip", hostile.zipped([(dcm, hostile.mr_bytes())])[: rng.randrange(30, 3000)])
            ],
        ),
        "h5-external-storage": (
            4,
            lambda rng: [
                ("k.h5", hostile.h5_external_storage(rng.choice(["/etc/hostname", stored()])))
            ],
        ),
        "h5-virtual": (4, lambda rng: [("k.h5", hostile.h5_virtual(stored()))]),
        "h5-links": (
            4,
            lambda rng: [
                (
                    "k.h5",
                    rng.choice(
                        [lambda: hostile.h5_external_link(stored()), hostile.h5_soft_link]
                    )(),
                )
            ],
        ),
        "h5-million-slices": (2, lambda rng: [("k.h5", hostile.h5_million_slices())]),
        "h5-huge-slice": (4, lambda rng: [("k.h5", hostile.h5_huge_slice(rng))]),
        "h5-nan-slice": (8, lambda rng: [("k.h5", hostile.h5_nan_slice(rng))]),
        "h5-ismrmrd-grid": (2, lambda rng: [("k.h5", hostile.h5_ismrmrd_grid_bomb())]),
        "h5-bad-companion": (6, lambda rng: [("k.h5", hostile.h5_bad_companion(rng))]),
        "h5-ismrmrd-nan": (4, lambda rng: [("k.h5", hostile.h5_ismrmrd_nan(rng))]),
        "h5-ismrmrd-corruption": (
            8,
            lambda rng: [("k.h5", _flip_bytes(hostile.ismrmrd_bytes(), rng, rng.randint(1, 8)))],
        ),
        "h5-byte-corruption": (
            12,
            lambda rng: [
                (
                    "k.h5",
                    _flip_bytes(hostile.fastmri_bytes(rng.randrange(100)), rng, rng.randint(1, 8)),
                )
            ],
        ),
    }


FIELD_CLASSES: dict[str, tuple[int, Callable[[random.Random], dict[str, str]]]] = {
    "subject-code-delimiters": (
        8,
        lambda rng: {"subject_code": "S" + rng.choice("^=\\\t\x01") + str(rng.randrange(99))},
    ),
    "field-strength": (
        12,
        lambda rng: {
            "field_strength_t": rng.choice(
                ["NaN", "nan", "inf", "-inf", "Infinity", "1e309", "-1e309", "-3", "0", "99"]
            )
        },
    ),
    "over-long-text": (
        8,
        lambda rng: {
            name: "x" * size
            for name, size in [rng.choice([("description", 201), ("vendor", 65), ("notes", 4001)])]
        },
    ),
}


def _multipart(rng: random.Random) -> tuple[str, bytes]:
    """A well-formed multipart upload of one instance, cut or scrambled."""
    boundary = "FuZzBoUnDaRy"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="subject_code"\r\n\r\n'
        f"RAW-{rng.randrange(10**6)}\r\n--{boundary}\r\nContent-Disposition: form-data; "
        f'name="files"; filename="IM1.dcm"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + hostile.mr_bytes()
    body += f"\r\n--{boundary}--\r\n".encode()
    damage = rng.choice(["cut", "scramble", "no-boundary", "garbage", "json"])
    content_type = f"multipart/form-data; boundary={boundary}"
    if damage == "cut":
        body = body[: rng.randrange(10, len(body) - 10)]
    elif damage == "scramble":
        body = _flip_bytes(body, rng, rng.randint(1, 40))
    elif damage == "no-boundary":
        content_type = "multipart/form-data"
    elif damage == "garbage":
        body = bytes(rng.randrange(256) for _ in range(rng.randint(1, 2000)))
    else:
        content_type, body = "application/json", b'{"subject_code": [' * rng.randint(1, 50)
    return content_type, body


def fuzz_inputs(rng: random.Random, stored: Callable[[], str]) -> Iterator[FuzzInput]:
    """Every class with its count of inputs, in a seeded random order."""
    inputs: list[FuzzInput] = []
    for kind, (count, build) in _file_classes(stored).items():
        for _ in range(count):
            inputs.append(FuzzInput(kind, build(rng), new_case=rng.random() < 0.6))
    for kind, (count, build) in FIELD_CLASSES.items():
        for _ in range(count):
            inputs.append(FuzzInput(kind, [("IM0001.dcm", hostile.mr_bytes())], build(rng)))
    for _ in range(RAW_BODIES):
        inputs.append(
            FuzzInput("malformed-body", [], new_case=rng.random() < 0.6, raw_body=_multipart(rng))
        )
    rng.shuffle(inputs)
    yield from inputs


def _uploads(files: hostile.Files) -> list[SimpleUploadedFile]:
    return [SimpleUploadedFile(name, data, "application/octet-stream") for name, data in files]


def _state(media_root) -> tuple:
    return (
        Case.objects.count(),
        Series.objects.count(),
        Instance.objects.count(),
        AuditEvent.objects.filter(action="case.deidentify").count(),
        frozenset(p for p in media_root.rglob("*") if p.is_file()),
    )


class Sender:
    """Posts one input through a channel, as the browser page or an API client does."""

    def __init__(self, site_admin, target_case: Case):
        self.browser = Client(enforce_csrf_checks=True, raise_request_exception=False)
        self.browser.force_login(site_admin)
        self.api = APIClient(raise_request_exception=False)
        self.api.force_authenticate(site_admin)
        self.target = target_case
        self.codes = iter(range(1, 10**6))

    @cached_property
    def csrf_token(self) -> str:
        """The token of the upload page's form (valid for the whole session)."""
        page = self.browser.get(reverse("cases:create")).content.decode()
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]

    def send(self, item: FuzzInput, channel: str):
        if item.raw_body is not None:
            return self._send_raw(item, channel)
        data = {
            "subject_code": f"FUZZ-{next(self.codes):04d}",
            "anatomy": "knee",
            "field_strength_t": "1.5",
            **item.fields,
            "files": _uploads(item.files),
        }
        if not item.new_case:
            data = {k: v for k, v in data.items() if k in ("files", "description")}
        if channel == "api":
            url = "/api/cases/" if item.new_case else f"/api/cases/{self.target.pk}/series/"
            return self.api.post(url, data, format="multipart")
        url = (
            reverse("cases:create")
            if item.new_case
            else reverse("cases:upload", args=[self.target.pk])
        )
        data["csrfmiddlewaretoken"] = self.csrf_token
        extra = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"} if channel == "xhr" else {}
        return self.browser.post(url, data, **extra)

    def _send_raw(self, item: FuzzInput, channel: str):
        content_type, body = item.raw_body
        if channel == "api":
            url = "/api/cases/" if item.new_case else f"/api/cases/{self.target.pk}/series/"
            return self.api.generic("POST", url, body, content_type=content_type)
        url = (
            reverse("cases:create")
            if item.new_case
            else reverse("cases:upload", args=[self.target.pk])
        )
        # The token in the header: a broken body cannot carry it, and the view must be reached.
        return self.browser.generic(
            "POST", url, body, content_type=content_type, HTTP_X_CSRFTOKEN=self.csrf_token
        )


def test_fuzz_hostile_uploads(make_user, media_root, record_property):
    site_admin = make_user(Role.SITE_ADMIN)
    sender = Sender(
        site_admin,
        Case.objects.create(
            institution=site_admin.institution, subject_code="FUZZ-TARGET", created_by=site_admin
        ),
    )
    # A stored raw file of another case for the virtual dataset / links to aim at.
    seed_response = sender.api.post(
        "/api/cases/",
        {
            "subject_code": "FUZZ-VICTIM",
            "anatomy": "knee",
            "files": _uploads([("k.h5", hostile.fastmri_bytes())]),
        },
        format="multipart",
    )
    assert seed_response.status_code == 201
    victim = Series.objects.get(case__subject_code="FUZZ-VICTIM").file.path

    rng = random.Random(SEED)
    counts: Counter[str] = Counter()
    by_kind: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []
    for number, item in enumerate(fuzz_inputs(rng, lambda: victim)):
        channel = CHANNELS[number % len(CHANNELS)]
        before = _state(media_root)
        response = sender.send(item, channel)
        status = response.status_code
        counts["inputs"] += 1
        counts[f"{status // 100}xx"] += 1
        by_kind[(item.kind, status // 100)] += 1
        after = _state(media_root)
        where = f"#{number} {item.kind} via {channel} (new case: {item.new_case}) -> {status}"
        if status >= 500:
            failures.append(f"{where}: {response.content[:300]!r}")
        elif status >= 400:
            if after != before:
                failures.append(f"{where}: refused but changed rows or files")
        elif status < 300 or status in (302, 303):
            cases, series, _, audits, files = after
            new_files = files - before[4]
            if series != before[1] + 1 or audits != before[3] + 1 or not new_files:
                failures.append(f"{where}: accepted but not exactly one stored series")
            if before[4] - files:
                failures.append(f"{where}: files of other series disappeared")
        else:
            failures.append(f"{where}: unexpected status")

    # Healthy after: the pages everyone reads, and the preview of every stored slice.
    assert sender.browser.get(reverse("cases:list")).status_code == 200
    assert sender.api.get("/api/cases/").status_code == 200
    for case in Case.objects.all():
        assert sender.browser.get(reverse("cases:detail", args=[case.pk])).status_code == 200
    for series in Series.objects.all():
        assert sender.browser.get(reverse("cases:series", args=[series.uuid])).status_code == 200
        for index in range(series.n_slices or 0):
            status = sender.browser.get(reverse("cases:slice", args=[series.uuid, index]))
            if status.status_code != 200:
                failures.append(f"preview {series.kind} {index}: {status.status_code}")
    # Nothing half-stored: every stored file belongs to a series.
    referenced = {s.file.name for s in Series.objects.exclude(file="")} | {
        i.file.name for i in Instance.objects.all()
    }
    on_disk = {p.relative_to(media_root).as_posix() for p in media_root.rglob("*") if p.is_file()}
    assert on_disk == referenced

    summary = (
        f"fuzz seed={SEED} inputs={counts['inputs']} 2xx={counts['2xx']} "
        f"3xx={counts['3xx']} 4xx={counts['4xx']} 5xx={counts['5xx']}"
    )
    print(f"\n{summary}")
    for (kind, status), n in sorted(by_kind.items()):
        print(f"  {kind:26s} {status}xx: {n}")
    record_property("fuzz_counts", summary)
    assert counts["inputs"] == 260
    assert counts["4xx"] >= counts["inputs"] // 2  # the suite does exercise refusals
    assert not failures, "\n".join(failures)
