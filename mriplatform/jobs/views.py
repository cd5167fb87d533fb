from django.contrib import messages
from django.http import HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from mriplatform.accounts.roles import Role, role_required
from mriplatform.cases.models import Series
from mriplatform.cases.permissions import manageable_cases, visible_cases
from mriplatform.jobs import lease, services
from mriplatform.jobs.forms import SubmitForm
from mriplatform.jobs.models import ReconJob
from mriplatform.jobs.presentation import metric_rows, provenance_rows

VIEWERS = (Role.SITE_ADMIN, Role.COORDINATOR)
RAW_KINDS = (Series.Kind.FASTMRI, Series.Kind.ISMRMRD)


def _is_number(text: str) -> bool:
    """ASCII digits only ("²".isdigit() is True, and int("²") raises)."""
    return text.isascii() and text.isdecimal() and len(text) < 19


def _jobs_for(user):
    """Jobs of ``user``'s cases; running jobs whose worker was lost are failed first."""
    lease.reap_lost_jobs()
    return ReconJob.objects.filter(input_series__case__in=visible_cases(user)).select_related(
        "input_series__case", "protocol", "output_series"
    )


@role_required(*VIEWERS)
def job_list(request):
    jobs = _jobs_for(request.user)
    status = request.GET.get("status")
    if status in ReconJob.Status.values:
        jobs = jobs.filter(status=status)
    return render(
        request,
        "jobs/list.html",
        {"jobs": jobs[:500], "statuses": ReconJob.Status.choices, "status": status},
    )


@never_cache
@role_required(*VIEWERS)
def job_status_json(request):
    ids = [int(i) for i in request.GET.get("ids", "").split(",") if _is_number(i)][:500]
    jobs = _jobs_for(request.user).filter(pk__in=ids) if ids else _jobs_for(request.user)[:500]
    return JsonResponse({"jobs": [services.job_state(job) for job in jobs]})


@role_required(Role.SITE_ADMIN)
def submit(request):
    """Reconstruct raw series with protocols; ``?case=N`` limits the list to that case."""
    cases = manageable_cases(request.user)
    raw = Series.objects.filter(case__in=cases, kind__in=RAW_KINDS).select_related("case")
    case = None
    if "case" in request.GET:
        case_id = request.GET["case"]
        case = get_object_or_404(cases, pk=int(case_id)) if _is_number(case_id) else None
        if case is None:
            return HttpResponseBadRequest("case must be a case number")
        raw = raw.filter(case=case)
    form = SubmitForm(
        request.POST or None, series_queryset=raw, initial={"series": raw} if case else {}
    )
    if request.method == "POST" and form.is_valid():
        created, existing = services.submit_jobs(
            form.cleaned_data["series"],
            form.cleaned_data["protocols"],
            request.user,
            request=request,
        )
        messages.success(
            request,
            f"{len(created)} job(s) submitted"
            + (f", {len(existing)} already existed" if existing else "")
            + ".",
        )
        return redirect("jobs:list")
    return render(
        request,
        "jobs/submit.html",
        {"form": form, "case": case, "has_raw": raw.exists()},
    )


@role_required(*VIEWERS)
def job_detail(request, pk: int):
    job = get_object_or_404(_jobs_for(request.user), pk=pk)
    output = job.output_series
    return render(
        request,
        "jobs/detail.html",
        {
            "job": job,
            "metric_rows": metric_rows(job.metrics or {}),
            "provenance_rows": list(provenance_rows(job.provenance or {})),
            "preview_index": (output.n_slices or 1) // 2 if output is not None else None,
        },
    )


@require_POST
@role_required(Role.SITE_ADMIN)
def retry(request, pk: int):
    job = get_object_or_404(
        ReconJob.objects.filter(input_series__case__in=manageable_cases(request.user)), pk=pk
    )
    if services.retry_job(job, request.user, request=request):
        messages.success(request, "Job queued again.")
    else:
        messages.error(request, "Only failed jobs can be retried.")
    return redirect("jobs:detail", pk=job.pk)
