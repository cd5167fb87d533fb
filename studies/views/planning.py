"""Sample-size planning of a reader study, before it opens: coordinators for their own
studies, statisticians for their site's (:func:`studies.permissions.plannable_studies`;
404 otherwise). The computation lives in :mod:`studies.planning_service`."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET

from studies import planning_service, report
from studies.forms import PlanForm
from studies.models import Study, StudyPlan
from studies.permissions import plannable_studies


def _pilot_choices(user) -> tuple[list[tuple[str, str]], dict[str, tuple[Study, str]]]:
    choices, lookup = [], {}
    for pilot in planning_service.pilot_studies(user):
        for question in planning_service.pilot_questions(pilot):
            key = f"{pilot.pk}:{question}"
            choices.append((key, f"{pilot.title} — {question}"))
            lookup[key] = (pilot, question)
    return choices, lookup


@login_required
def study_plan(request: HttpRequest, pk: int) -> HttpResponse:
    """The plan form and the latest saved plan's power table (GET); compute and save a
    plan (POST, then back to GET)."""
    study = get_object_or_404(plannable_studies(request.user), pk=pk)
    choices, lookup = _pilot_choices(request.user)
    form = PlanForm(request.POST or None, pilot_choices=choices)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        pilot, question = lookup.get(data["pilot_question"], (None, None))
        given = {k: data[k] for k in PlanForm.COMPONENTS if data.get(k) is not None}
        try:
            planning_service.plan_study(
                study,
                request.user,
                source=data["source"],
                effect=data["effect"],
                alpha=data["alpha"],
                power=data["power"],
                pilot=pilot,
                question=question,
                components=given or None,
                request=request,
            )
        except planning_service.PlanningError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("studies:plan", pk=study.pk)
    status = 400 if request.method == "POST" else 200
    plans = study.plans.select_related("created_by")
    context = {"study": study, "form": form, "plan": plans.first(), "plans": plans}
    return render(request, "studies/planning/plan.html", context, status=status)


@require_GET
@login_required
def plan_pdf(request: HttpRequest, pk: int, plan_pk: int) -> HttpResponse:
    """One saved plan as a PDF (paginated, tables never split)."""
    study = get_object_or_404(plannable_studies(request.user), pk=pk)
    plan = get_object_or_404(StudyPlan, pk=plan_pk, study=study)
    html = render_to_string("studies/planning/plan_pdf.html", {"study": study, "plan": plan})
    pdf = report.render_pdf(html)
    response = HttpResponse(pdf, content_type="application/pdf")
    name = f"study-{study.pk}-plan-{plan.pk}.pdf"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
