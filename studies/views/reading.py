"""The reader's pages under /read/: worklist, reading page, answers (autosave/resume),
submit, finish session, and blinded images.

Thin: access, blinding and ordering are decided in :mod:`studies.reading`; answers go
through :func:`studies.services.save_answer` / ``submit_read``. Nothing rendered or
returned here names a study's arms, protocols, methods, series, files or UIDs.
"""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from mriplatform.accounts.roles import Role, role_required
from studies import reading, services
from studies.questions import CONFIDENCE_MAX, CONFIDENCE_MIN, choice_label, choice_values, scale
from studies.services import StudyError, save_answer, start_read

MAX_BODY = 256 * 1024


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


@require_GET
@role_required(Role.READER)
def read(request: HttpRequest, alias: str) -> HttpResponse:
    """The reading page: viewer (single or side by side) and the question form."""
    item = reading.reader_item(request.user, alias)
    try:
        start_read(item, request.user)
    except StudyError:
        return redirect("reading:worklist")
    k, n = reading.position(item)
    urls = reading.image_urls(item)
    images_missing = not services.read_has_images(item)
    following = reading.next_item(item)
    prefetch = [u for side in reading.image_urls(following) for u in side] if following else []
    config = {
        "imageIds": [f"wadouri:{u}" for u in urls[0]],
        "secondImageIds": [f"wadouri:{u}" for u in urls[1]] if len(urls) > 1 else [],
        "prefetch": [f"wadouri:{u}" for u in prefetch],
        "answersUrl": reverse("reading:answers", args=[item.alias]),
        "submitUrl": reverse("reading:submit", args=[item.alias]),
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
            "side_by_side": len(urls) > 1,
            "questions": _form_questions(item),
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


@require_GET
@role_required(Role.READER)
def image(request: HttpRequest, token: str) -> HttpResponse:
    """One blinded DICOM instance (``application/dicom``, no file name, private cache)."""
    item, side, index, series_pk = reading.resolve_token(request.user, token)
    response = HttpResponse(
        reading.blinded_image(item, side, index, series_pk), content_type="application/dicom"
    )
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response
