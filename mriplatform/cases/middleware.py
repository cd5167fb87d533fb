"""Refuse request bodies larger than the upload limit before anything reads them."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


class UploadSizeLimitMiddleware:
    """Answer 413 to any request whose declared ``Content-Length`` exceeds
    ``settings.MAX_UPLOAD_BYTES``, before the CSRF check or a view parses (and spools to
    disk) the body. Must come before every middleware that reads ``request.POST``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        declared = request.META.get("CONTENT_LENGTH") or "0"
        limit = settings.MAX_UPLOAD_BYTES
        if declared.isdigit() and int(declared) > limit:
            message = (
                f"the request body of {int(declared)} bytes exceeds the upload limit of "
                f"{limit} bytes ({limit / 1024**3:.1f} GiB)"
            )
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": message}, status=413)
            if request.headers.get("x-requested-with") == "XMLHttpRequest":
                return JsonResponse({"errors": {"files": [message]}}, status=413)
            return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")
        return self.get_response(request)
