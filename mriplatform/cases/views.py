from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import cache_control

from mriplatform.accounts.roles import Role, role_required
from mriplatform.cases.forms import CaseForm, UploadForm
from mriplatform.cases.imaging import (
    SliceDecodeError,
    SliceError,
    slice_count,
    slice_image,
    to_png,
)
from mriplatform.cases.models import Anatomy
from mriplatform.cases.permissions import manageable_cases, visible_cases, visible_series
from mriplatform.cases.services import IngestError, create_case_with_series, ingest_files

VIEWERS = (Role.SITE_ADMIN, Role.COORDINATOR)


@role_required(*VIEWERS)
def case_list(request):
    cases = (
        visible_cases(request.user)
        .select_related("institution")
        .annotate(n_series=Count("series", distinct=True))
        # Meta.ordering is not applied to aggregate queries: without this the list (and its
        # pages) came in arbitrary database order.
        .order_by("institution__name", "subject_code")
    )
    anatomy = request.GET.get("anatomy", "")
    query = request.GET.get("q", "").strip()
    if anatomy in Anatomy.values:
        cases = cases.filter(anatomy=anatomy)
    if query:
        cases = cases.filter(
            Q(subject_code__icontains=query)
            | Q(sequence__icontains=query)
            | Q(vendor__icontains=query)
        )
    page = Paginator(cases, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "cases/list.html",
        {
            "page": page,
            "anatomies": Anatomy.choices,
            "anatomy": anatomy,
            "q": query,
            "can_upload": manageable_cases(request.user).exists()
            or request.user.has_role(Role.SITE_ADMIN),
        },
    )


@role_required(*VIEWERS)
def case_detail(request, pk: int):
    case = get_object_or_404(visible_cases(request.user), pk=pk)
    series = list(case.series.all())
    for s in series:
        count = slice_count(s)
        s.thumb_index = count // 2 if count else None
    can_manage = manageable_cases(request.user).filter(pk=case.pk).exists()
    has_raw = any(s.is_raw for s in series)
    return render(
        request,
        "cases/detail.html",
        {"case": case, "series": series, "can_manage": can_manage, "has_raw": has_raw},
    )


@role_required(*VIEWERS)
def series_view(request, uuid):
    series = get_object_or_404(visible_series(request.user).select_related("case"), uuid=uuid)
    count = slice_count(series)
    job = getattr(series, "source_job", None)
    return render(
        request,
        "cases/series.html",
        {"series": series, "count": count, "middle": count // 2, "job": job},
    )


@cache_control(private=True, max_age=300)
@role_required(*VIEWERS)
def series_slice_png(request, uuid, index: int):
    series = get_object_or_404(visible_series(request.user), uuid=uuid)
    try:
        png = to_png(slice_image(series, index))
    except SliceDecodeError as exc:
        # The file is stored but cannot be shown: say so instead of failing the page.
        return HttpResponse(str(exc), status=422, content_type="text/plain; charset=utf-8")
    except SliceError as exc:
        raise Http404(str(exc)) from None
    return HttpResponse(png, content_type="image/png")


def _upload_response(request, form, template, context, success_url):
    """Answer the XHR upload (JSON, for the progress bar) or the plain form post."""
    wants_json = request.headers.get("x-requested-with") == "XMLHttpRequest"
    if success_url:
        if wants_json:
            return JsonResponse({"redirect": success_url})
        return redirect(success_url)
    if wants_json:
        errors = {k: [str(e) for e in v] for k, v in form.errors.items()}
        return JsonResponse({"errors": errors}, status=400)
    return render(request, template, {"form": form, **context}, status=400 if form.errors else 200)


@role_required(Role.SITE_ADMIN)
def case_create(request):
    institution = request.user.institution
    if institution is None:
        raise PermissionDenied("Your account belongs to no site; ask an administrator.")
    # A POST is always a bound form: an empty or unparsable body is answered 400, not the page.
    posted = request.method == "POST"
    form = CaseForm(
        request.POST if posted else None,
        request.FILES if posted else None,
        institution=institution,
    )
    success = None
    if request.method == "POST" and form.is_valid():
        data = {k: form.cleaned_data[k] for k in CaseForm.Meta.fields}
        try:
            case = create_case_with_series(
                data,
                institution,
                form.cleaned_data["files"],
                request.user,
                form.cleaned_data["description"],
                request=request,
            )
            messages.success(request, f"Case {case.subject_code} uploaded and de-identified.")
            success = reverse("cases:detail", args=[case.pk])
        except IngestError as exc:
            form.add_error("files", str(exc))
    if request.method == "GET":
        return render(request, "cases/upload.html", {"form": form, "title": "Upload a case"})
    return _upload_response(request, form, "cases/upload.html", {"title": "Upload a case"}, success)


@role_required(Role.SITE_ADMIN)
def series_upload(request, pk: int):
    case = get_object_or_404(manageable_cases(request.user), pk=pk)
    posted = request.method == "POST"
    form = UploadForm(request.POST if posted else None, request.FILES if posted else None)
    title = f"Add a series to {case.subject_code}"
    success = None
    if request.method == "POST" and form.is_valid():
        try:
            ingest_files(
                case,
                form.cleaned_data["files"],
                request.user,
                form.cleaned_data["description"],
                request=request,
            )
            messages.success(request, "Series uploaded and de-identified.")
            success = reverse("cases:detail", args=[case.pk])
        except IngestError as exc:
            form.add_error("files", str(exc))
    if request.method == "GET":
        return render(request, "cases/upload.html", {"form": form, "title": title, "case": case})
    return _upload_response(
        request, form, "cases/upload.html", {"title": title, "case": case}, success
    )
