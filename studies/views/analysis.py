"""The statistician's pages: closed studies, analysis runs with live progress, the report
and its downloads. Statisticians of the study's site (and superusers) only; everyone else
gets 404 (:func:`studies.permissions.analysable_studies` decides)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from mriplatform.accounts.roles import Role
from mriplatform.audit.services import record
from studies import analysis_service, report
from studies.models import AnalysisRun, Study
from studies.permissions import analysable_studies, plannable_studies
from studies.services import StudyError


class AnalysisForm(forms.Form):
    """The analyses to run and their parameters (defaults: :data:`report.DEFAULT_PARAMETERS`)."""

    analyses = forms.MultipleChoiceField(
        choices=list(report.ANALYSES.items()),
        widget=forms.CheckboxSelectMultiple,
        initial=list(report.ANALYSES),
    )
    reference = forms.ChoiceField(label="Reference arm", required=False)
    alpha = forms.FloatField(initial=0.05, min_value=0.001, max_value=0.2)
    n_boot = forms.IntegerField(
        label="Bootstrap resamples", initial=2000, min_value=100, max_value=100_000
    )
    seed = forms.IntegerField(label="Random seed", min_value=0, max_value=2**63 - 1)
    margin = forms.FloatField(
        label="Interchangeability margin", initial=0.05, min_value=0.001, max_value=0.5
    )
    noninferiority_margin = forms.FloatField(
        label="Non-inferiority margin (proportion correct)",
        initial=0.10,
        min_value=0.01,
        max_value=0.5,
        required=False,
        help_text="Blank: 0.10.",
    )
    likert_threshold = forms.FloatField(label="Likert score counted as diagnostic", initial=3)
    kappa_weights = forms.ChoiceField(
        label="Kappa weights (Likert)",
        choices=[("linear", "linear"), ("quadratic", "quadratic"), ("unweighted", "unweighted")],
        initial="linear",
    )
    roc_rating = forms.ChoiceField(
        label="ROC rating",
        choices=[
            ("signed", "confidence signed by the call (present: 5 + c, absent: 6 - c)"),
            ("confidence", "confidence as given (probability-of-disease scale)"),
        ],
        initial="signed",
    )
    mrmc_covariance = forms.ChoiceField(
        label="MRMC covariance",
        choices=[("jackknife", "jackknife"), ("delong", "DeLong")],
        initial="jackknife",
    )
    n_coils = forms.IntegerField(
        label="Receive coils (magnitude noise correction)", initial=1, min_value=1, max_value=128
    )

    def __init__(self, *args, study: Study, **kwargs):
        super().__init__(*args, **kwargs)
        arms = list(study.arms.order_by("label"))
        self.fields["reference"].choices = [(a.label, f"{a.label}: {a.protocol}") for a in arms]
        if study.reference_arm_id:
            self.fields["reference"].initial = study.reference_arm.label
        self.fields["seed"].initial = analysis_service.study_seed(study)


def _runs_for(user):
    return AnalysisRun.objects.filter(study__in=analysable_studies(user)).select_related(
        "study", "requested_by"
    )


def _analysable(user):
    if not (user.is_superuser or user.has_role(Role.STATISTICIAN)):
        raise Http404
    return analysable_studies(user)


@require_GET
@login_required
def index(request):
    """Closed studies the statistician may analyse, with their latest runs."""
    studies = _analysable(request.user).order_by("-closed")
    runs = _runs_for(request.user)[:50]
    plannable = plannable_studies(request.user).exclude(status=Study.Status.CLOSED)
    context = {"studies": studies, "runs": runs, "plannable": plannable.order_by("-created")}
    return render(request, "studies/analysis/index.html", context)


@login_required
def study_analysis(request, pk: int):
    """Choose analyses and parameters (GET), start a run on the worker (POST)."""
    study = get_object_or_404(analysable_studies(request.user), pk=pk)
    form = AnalysisForm(request.POST or None, study=study)
    if request.method == "POST" and form.is_valid():
        try:
            run = analysis_service.start_analysis(
                study, request.user, form.cleaned_data, request=request
            )
        except (StudyError, report.ReportError) as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("studies:analysis-run", pk=run.pk)
    status = 400 if request.method == "POST" else 200
    runs = study.analysis_runs.select_related("requested_by")[:20]
    context = {"study": study, "form": form, "runs": runs, "analyses": report.ANALYSES}
    return render(request, "studies/analysis/study.html", context, status=status)


@require_GET
@login_required
def run_detail(request, pk: int):
    """Progress of a run; the report itself (tables and plots) once it has succeeded."""
    run = get_object_or_404(_runs_for(request.user), pk=pk)
    body = ""
    stored = analysis_service.run_file(run, "report_body.html")
    if stored is not None:
        with default_storage.open(stored, "rb") as fh:
            text = fh.read().decode("utf-8")
        body = mark_safe(text)  # noqa: S308 (Jinja2-autoescaped)
    context = {
        "run": run,
        "study": run.study,
        "report_body": body,
        "downloads": list(analysis_service.REPORT_FILES),
        "state": analysis_service.run_state(run),
        "reference": analysis_service.reference_check(run),
    }
    return render(request, "studies/analysis/run.html", context)


@require_POST
@login_required
def run_again(request, pk: int):
    """Queue a new run with a failed run's parameters (e.g. after the broker was down)."""
    run = get_object_or_404(_runs_for(request.user), pk=pk)
    try:
        new = analysis_service.run_again(run, request.user, request=request)
    except (StudyError, report.ReportError) as exc:
        messages.error(request, str(exc))
        return redirect("studies:analysis-run", pk=run.pk)
    messages.success(request, f"Run #{new.pk} queued with the parameters of run #{run.pk}.")
    return redirect("studies:analysis-run", pk=new.pk)


@require_GET
@never_cache
@login_required
def run_status(request, pk: int):
    run = get_object_or_404(_runs_for(request.user), pk=pk)
    return JsonResponse(analysis_service.run_state(run))


@require_GET
@login_required
def run_download(request, pk: int, name: str):
    """report.html, report.pdf, reads.csv or bundle.zip as an attachment (audited)."""
    run = get_object_or_404(_runs_for(request.user), pk=pk)
    stored = analysis_service.run_file(run, name)
    if stored is None or name not in analysis_service.REPORT_FILES:
        raise Http404
    details = {"run": run.pk, "file": name}
    record(request.user, "study.analysis.download", run.study, request=request, details=details)
    stem, _, ext = name.rpartition(".")
    filename = f"study-{run.study_id}-analysis-{run.pk}-{stem}.{ext}"
    response = FileResponse(
        default_storage.open(stored, "rb"),
        as_attachment=True,
        filename=filename,
        content_type=analysis_service.REPORT_FILES[name],
    )
    return response
