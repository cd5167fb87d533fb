"""The reader's pages under /read/: worklist, reading page, answers (autosave/resume),
submit, finish session, and blinded images.

Thin: access, blinding and ordering are decided in :mod:`studies.reading`; answers go
through :func:`studies.services.save_answer` / ``submit_read``. Nothing rendered or
returned here names a study's arms, protocols, methods, series, files or UIDs.
"""

from __future__ import annotations

import json
import logging

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from mriplatform.accounts.roles import Role, role_required
from studies import display, reading
from studies.blinding import BlindingError
from studies.questions import CONFIDENCE_MAX, CONFIDENCE_MIN, choice_label, choice_values, scale
from studies.services import StudyError, save_answer, start_read

MAX_BODY = 256 * 1024
IMAGE_CACHE_CONTROL = "private, max-age=3600, immutable"

logger = logging.getLogger(__name__)


def _error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _messages(exc: ValidationError) -> str:
    return "; ".join(exc.messages)


@require_GET
@role_required(Role.READER)
def worklist(request: HttpRequest) -> HttpResponse:
    """The reader's open studies, sessions (progress, availability) and Start/Resume."""
    return render(
        request, "studies/reading/worklist.html", {"studies": reading.worklist(request.user)}
    )


def _form_questions(item) -> list[dict]:
    """Questions as plain dicts for the template (options and anchors resolved)."""
    rows = []
    for q in reading.questions(item):
        row = {"q": q, "options": []}
        if q.kind == "likert":
            lo, hi = scale(q)
            anchors = q.anchors or {}
            row["options"] = [(v, anchors.get(str(v), "")) for v in range(lo, hi + 1)]
        elif q.kind in ("finding", "choice"):
            row["options"] = [(v, choice_label(q, v)) for v in choice_values(q)]
        elif q.kind == "preference":
            row["options"] = [("left", "Left"), ("equal", "Equal"), ("right", "Right")]
        rows.append(row)
    return rows


def _form_sections(item) -> list[dict]:
    """The questions grouped by anatomical structure, in order of first appearance, for the
    form's collapsible sections; questions without a structure form "General"."""
    sections: dict[str, dict] = {}
    for row in _form_questions(item):
        structure = row["q"].structure or ""
        label = structure.replace("_", " ").capitalize() if structure else "General"
        sections.setdefault(structure, {"label": label, "rows": []})["rows"].append(row)
    return list(sections.values())


@require_GET
@role_required(Role.READER)
def read(request: HttpRequest, alias: str) -> HttpResponse:
    """The reading page: viewer (single or side by side) and the question form."""
    item = reading.reader_item(request.user, alias)
    try:
        start_read(item, request.user)
    except StudyError:
        return redirect("reading:worklist")
    k, n, submitted = reading.position(item)
    urls = reading.image_urls(item)
    images_missing = any(not side["slices"] for side in urls)
    following = reading.next_item(item)
    upcoming = reading.image_urls(following) if following else []
    upcoming = [side for side in upcoming if side["series"]]
    sequence, presets = display.window_presets(item.session.study, item.study_case.case.sequence)
    config = {
        "imageIds": [f"wadouri:{u}" for u in urls[0]["slices"]],
        "secondImageIds": [f"wadouri:{u}" for u in urls[1]["slices"]] if len(urls) > 1 else [],
        "series": [side["series"] for side in urls],
        "prefetch": [[f"wadouri:{u}" for u in side["slices"]] for side in upcoming],
        "prefetchSeries": [side["series"] for side in upcoming],
        "sequenceType": sequence,
        "presets": presets,
        "answersUrl": reverse("reading:answers", args=[item.alias]),
        "submitUrl": reverse("reading:submit", args=[item.alias]),
        "imageErrorUrl": reverse("reading:image_error", args=[item.alias]),
        "worklistUrl": reverse("reading:worklist"),
        "editable": reading.editable(item),
        "submitted": item.submitted_at is not None,
    }
    return render(
        request,
        "studies/reading/read.html",
        {
            "item": item,
            "position": k,
            "total": n,
            "submitted_count": submitted,
            "side_by_side": len(urls) > 1,
            "sections": _form_sections(item),
            "confidence_range": range(CONFIDENCE_MIN, CONFIDENCE_MAX + 1),
            "config": config,
            "editable": config["editable"],
            "can_finish": item.submitted_at is not None
            and item.session.completed_at is None
            and not item.session.items.filter(submitted_at__isnull=True).exists(),
            "finish_url": reverse("reading:finish", args=[item.alias]),
            "images_missing": images_missing,
        },
    )


@require_http_methods(["GET", "POST"])
@role_required(Role.READER)
def answers(request: HttpRequest, alias: str) -> JsonResponse:
    """GET: the reader's own saved answers. POST ``{"answers": [{"question", "value",
    "confidence"}]}``: save them all or none (400 invalid, 409 no longer editable)."""
    item = reading.reader_item(request.user, alias)
    if request.method == "GET":
        return JsonResponse(
            {
                "answers": reading.own_answers(item),
                "submitted": item.submitted_at is not None,
                "editable": reading.editable(item),
            }
        )
    if len(request.body) > MAX_BODY:
        return _error("the request is too large", 400)
    try:
        payload = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return _error("the body must be JSON", 400)
    rows = payload.get("answers") if isinstance(payload, dict) else None
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        return _error('expected {"answers": [{"question": ..., "value": ...}, ...]}', 400)
    try:
        with transaction.atomic():
            for row in rows:
                if not isinstance(row.get("question"), str):
                    raise ValidationError("each answer needs its question key")
                save_answer(
                    item, row["question"], row.get("value"), row.get("confidence"), request.user
                )
    except ValidationError as exc:
        return _error(_messages(exc), 400)
    except StudyError as exc:
        return _error(str(exc), 409)
    return JsonResponse({"saved": len(rows), "answers": reading.own_answers(item)})


@require_POST
@role_required(Role.READER)
def submit(request: HttpRequest, alias: str) -> JsonResponse:
    """Submit the read (a second submit answers the same); returns where to go next."""
    item = reading.reader_item(request.user, alias)
    try:
        following = reading.submit(item, request.user)
    except ValidationError as exc:
        return _error(_messages(exc), 400)
    except StudyError as exc:
        return _error(str(exc), 409)
    next_url = (
        reverse("reading:read", args=[following.alias])
        if following
        else reverse("reading:worklist")
    )
    return JsonResponse({"submitted": True, "next_url": next_url, "finished": following is None})


@require_POST
@role_required(Role.READER)
def finish(request: HttpRequest, alias: str) -> HttpResponse:
    """Finish the session of the read (every read submitted); back to the worklist."""
    from django.contrib import messages

    item = reading.reader_item(request.user, alias)
    try:
        reading.finish(item, request.user)
    except StudyError as exc:
        messages.error(request, str(exc))
        return redirect("reading:read", alias=item.alias)
    messages.success(request, "Session finished. Thank you.")
    return redirect("reading:worklist")


def _image_response(body: bytes, content_type: str, tag: str, request) -> HttpResponse:
    """Blinded image bytes with caching headers for immutable content (private: per reader)."""
    if request.headers.get("If-None-Match") == tag:
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(body, content_type=content_type)
    response["ETag"] = tag
    response["Cache-Control"] = IMAGE_CACHE_CONTROL
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _unavailable(image_set, exc: Exception) -> JsonResponse:
    logger.error(
        "blinded image set %s (read %s) could not be built: %s",
        image_set.pk,
        image_set.read_item_id,
        exc,
    )
    return _error("this image cannot be shown; the study coordinator has been told", 503)


@require_GET
@role_required(Role.READER)
def series(request: HttpRequest, token: str) -> HttpResponse:
    """The whole blinded image set in one ``multipart/related; type="application/dicom"``
    response (as DICOMweb WADO-RS returns a series), instances in anatomical order."""
    image_set = reading.resolve_token(request.user, token)
    try:
        pieces, length, content_type, tag = display.reader_series(image_set)
    except (BlindingError, OSError, ValueError) as exc:
        return _unavailable(image_set, exc)
    if request.headers.get("If-None-Match") == tag:
        return _image_response(b"", content_type, tag, request)
    response = StreamingHttpResponse(pieces, content_type=content_type)
    response["Content-Length"] = str(length)
    response["ETag"] = tag
    response["Cache-Control"] = IMAGE_CACHE_CONTROL
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
@role_required(Role.READER)
def image(request: HttpRequest, token: str, index: int) -> HttpResponse:
    """Slice ``index`` (0-based, anatomical order) of an image set: one blinded DICOM
    instance (``application/dicom``, no file name)."""
    image_set = reading.resolve_token(request.user, token)
    try:
        body, tag = display.reader_instance(image_set, index)
    except (BlindingError, OSError, ValueError) as exc:
        return _unavailable(image_set, exc)
    return _image_response(body, "application/dicom", tag, request)


@require_POST
@role_required(Role.READER)
def image_error(request: HttpRequest, alias: str) -> HttpResponse:
    """The viewer reports an image that failed to load ``{"message", "viewport",
    "slice_index"}``: logged server-side (warning) for the operators; 204."""
    item = reading.reader_item(request.user, alias)
    if len(request.body) > 4096:
        return _error("the request is too large", 400)
    try:
        payload = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return _error("the body must be JSON", 400)
    if not isinstance(payload, dict) or not isinstance(payload.get("message"), str):
        return _error('expected {"message": ..., "viewport": ..., "slice_index": ...}', 400)
    numbers = [payload.get("viewport"), payload.get("slice_index")]
    if not all(n is None or (isinstance(n, int) and not isinstance(n, bool)) for n in numbers):
        return _error("viewport and slice_index must be integers", 400)
    logger.warning(
        "reader %s could not load an image of read %s (viewport %s, slice %s): %s",
        request.user.pk,
        item.pk,
        numbers[0],
        numbers[1],
        payload["message"][:500].replace("\n", " "),
    )
    return HttpResponse(status=204)
