"""Fidelity lab pages: coordinators and site administrators only (readers get 403)."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render

from fidelity import report, services
from fidelity.forms import FidelityRunForm, KnownTruthStudyForm
from fidelity.models import FidelityRun
from mriplatform.accounts.roles import Role, role_required

ROLES = (Role.COORDINATOR, Role.SITE_ADMIN)


@role_required(*ROLES)
def run_list(request):
    form = FidelityRunForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                run = services.create_run(
                    request.user,
                    data["name"],
                    list(data["protocols"]),
                    data["sizes_mm"],
                    cases=list(data["cases"]),
                    lesion_kind=data["lesion_kind"],
                    contrast=data["contrast"],
                    n_realisations=data["n_realisations"],
                    snr=data["snr"],
                    pixel_mm=data["pixel_mm"],
                    matrix=data["matrix"],
                )
            except services.FidelityInputError as exc:
                form.add_error(None, str(exc))
            else:
                from fidelity.tasks import run_fidelity

                transaction.on_commit(lambda: run_fidelity.delay(run.pk))
                return redirect("fidelity:detail", pk=run.pk)
        status = 400
    runs = FidelityRun.objects.select_related("created_by")[:100]
    context = {"form": form, "runs": runs, "study_form": KnownTruthStudyForm()}
    return render(request, "fidelity/list.html", context, status=status)


@role_required(Role.COORDINATOR)
def known_truth_study(request):
    """POST: a draft reader study over lesion twins, its truth as the reference standard."""
    from fidelity.truth_study import create_known_truth_study

    form = KnownTruthStudyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            study = create_known_truth_study(
                request.user,
                request.user.institution,
                data["title"],
                list(data["protocols"]),
                n_cases=data["n_cases"],
                lesion_kind=data["lesion_kind"],
                size_mm=data["size_mm"],
                contrast=data["contrast"],
                matrix=data["matrix"],
                pixel_mm=data["pixel_mm"],
                snr=data["snr"],
            )
        except services.FidelityInputError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("studies:detail", pk=study.pk)
    status = 400 if request.method == "POST" else 200
    runs = FidelityRun.objects.select_related("created_by")[:100]
    context = {"form": FidelityRunForm(), "runs": runs, "study_form": form}
    return render(request, "fidelity/list.html", context, status=status)


@role_required(*ROLES)
def run_detail(request, pk: int):
    run = get_object_or_404(FidelityRun, pk=pk)
    context = report.report_context(run) if run.status == FidelityRun.Status.DONE else {"run": run}
    return render(request, "fidelity/detail.html", context)


@role_required(*ROLES)
def run_progress(request, pk: int):
    run = get_object_or_404(FidelityRun, pk=pk)
    return JsonResponse({"status": run.status, "progress": run.progress, "error": run.error})


@role_required(*ROLES)
def run_report_pdf(request, pk: int):
    run = get_object_or_404(FidelityRun, pk=pk)
    if run.status != FidelityRun.Status.DONE:
        return HttpResponse("The run has not finished: no report yet.", status=409)
    response = HttpResponse(report.render_pdf(run), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="fidelity-run-{run.pk}.pdf"'
    return response
