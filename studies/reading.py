"""Reader-side services: worklist, the reader's own reads, next read, and the opaque image
tokens of their image sets.

Blinding rules kept here (the views only render what these return):

* A reader reaches a read only through its random ``alias`` and only when it is theirs, the
  study is open and the session is available and not finished (:func:`reader_item`,
  otherwise ``Http404``): after finishing a session its reads, answers and images are out of
  reach, so nothing of an earlier session can be looked at again during or after the washout.
* Image URLs are ``/read/s/<token>/`` (the whole image set, multipart/related) and
  ``/read/i/<token>/<n>/`` (slice n in anatomical order) where ``token`` =
  HMAC-SHA256(SECRET_KEY, image alias), 128 bits, base64url: it names no instance, file,
  series or UID and cannot be derived without the server's key. The token is stored with
  its read and side (:class:`studies.models.ImageSet`) when the reading page is rendered, so
  every web process resolves it with one indexed query (:func:`resolve_token`): nothing
  lives in a process's memory.
* Pixel values, slice order and the stored blinded instances: :mod:`studies.display`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, Q
from django.http import Http404
from django.utils import timezone

from studies import services
from studies.models import Answer, ImageSet, Question, ReadingSession, ReadItem
from studies.permissions import readable_studies

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


# What the reading page needs of a read, fetched with it (one query instead of six).
_READ_RELATED = ("arm", "second_arm", "image_series", "second_image_series", "study_case__case")


def reader_item(user, alias: str, now: datetime | None = None) -> ReadItem:
    """The read ``alias`` of ``user`` in an open study and an available session, else 404.

    The same 404 answers "not yours", "no such alias", "study closed" and "washout", so a
    reader learns nothing about other reads."""
    now = now or timezone.now()
    item = (
        ReadItem.objects.select_related("session__study", *_READ_RELATED)
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


def position(item: ReadItem) -> tuple[int, int, int]:
    """(k, N, S): the read is case k of the N reads of its session, S of them submitted."""
    counts = item.session.items.aggregate(
        total=Count("pk"), submitted=Count("pk", filter=Q(submitted_at__isnull=False))
    )
    return item.order_index + 1, counts["total"], counts["submitted"]


def next_item(item: ReadItem) -> ReadItem | None:
    """The next unsubmitted read of the session after ``item`` (wrapping to earlier skipped
    ones), or None."""
    pending = (
        item.session.items.filter(submitted_at__isnull=True)
        .exclude(pk=item.pk)
        .select_related(*_READ_RELATED)
    )
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


def _image_aliases(item: ReadItem) -> list[tuple[int, str]]:
    """(side, image alias) of the read: side 0 the left/only image set, 1 the right."""
    sides = [(0, item.alias)]
    if item.second_arm_id is not None and item.second_alias:
        sides.append((1, item.second_alias))
    return sides


def image_token(image_alias: str) -> str:
    """The opaque URL token of one image set (128-bit HMAC-SHA256 keyed by the server's
    secret, base64url, 22 characters): it names no read, series, file or UID."""
    msg = f"reading-image-set|{image_alias}".encode()
    digest = hmac.new(settings.SECRET_KEY.encode(), msg, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def image_sets(item: ReadItem) -> list[tuple[ImageSet | None, int]]:
    """Per side, the read's :class:`ImageSet` (created on first use, in the database so every
    web process resolves its token) and its slice count; (None, 0) where the image set is
    missing."""
    try:
        found = services.read_images(item)
    except services.StudyError:
        found = [None] * len(_image_aliases(item))
    existing = {s.side: s for s in ImageSet.objects.filter(read_item=item)}
    result = []
    for (side, image_alias), series in zip(_image_aliases(item), found, strict=True):
        if series is None:
            result.append((None, 0))
            continue
        current = existing.get(side)
        if current is None:
            token = image_token(image_alias)
            ImageSet.objects.bulk_create(
                [ImageSet(read_item=item, side=side, token=token, series=series)],
                ignore_conflicts=True,
            )
            current = ImageSet.objects.get(read_item=item, side=side)
        if current.series_id != series.pk:  # an unpinned read whose arm was reconstructed again
            current.series = series
            current.save(update_fields=["series"])
        result.append((current, series.instances.count()))
    return result


def image_urls(item: ReadItem) -> list[dict[str, Any]]:
    """Per side: ``series`` (the whole image set in one multipart/related response) and
    ``slices`` (one URL per slice, anatomical order); empty for a missing image set."""
    from django.urls import reverse

    urls = []
    for image_set, count in image_sets(item):
        if image_set is None:
            urls.append({"series": None, "slices": []})
            continue
        urls.append(
            {
                "series": reverse("reading:series", args=[image_set.token]),
                "slices": [
                    reverse("reading:image", args=[image_set.token, i]) for i in range(count)
                ],
            }
        )
    return urls


def resolve_token(user, token: str, now: datetime | None = None) -> ImageSet:
    """The image set of ``token`` when it belongs to ``user``'s read in an open study and an
    available, unfinished session; Http404 otherwise (a token of another reader looks exactly
    like an unknown one). One indexed query, whichever process asks."""
    now = now or timezone.now()
    if not (16 <= len(token) <= 32):
        raise Http404("No such image.")
    image_set = (
        ImageSet.objects.select_related("read_item__session__study")
        .filter(
            token=token,
            read_item__reader=user,
            read_item__session__study__in=readable_studies(user),
        )
        .first()
    )
    if image_set is None or not _reachable(image_set.read_item.session, now):
        raise Http404("No such image.")
    return image_set
