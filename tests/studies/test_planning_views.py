"""The planning page: a statistician or coordinator plans the readers x cases of a study
before it opens, from a closed pilot study or stated assumptions; the plan is saved with
the study, audited, and downloadable as a PDF. Everyone else gets 404."""

from __future__ import annotations

import pytest
from django.urls import reverse

from mriplatform.audit.models import AuditEvent
from studies import analysis as sa
from studies import planning_service
from studies.demo import build_demo_analysis_study
from studies.models import StudyPlan
from tests.factories import StudyFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def site(db):
    pilot = build_demo_analysis_study()
    target = StudyFactory(title="Knee DLR pivotal", institution=pilot.institution)
    statistician = UserFactory(roles=("statistician",), institution=pilot.institution)
    return {"pilot": pilot, "target": target, "statistician": statistician}


def test_statistician_plans_from_the_closed_demo_pilot(client, site):
    pilot, target = site["pilot"], site["target"]
    client.force_login(site["statistician"])
    url = reverse("studies:plan", args=[target.pk])
    page = client.get(url)
    assert page.status_code == 200
    questions = planning_service.pilot_questions(pilot)
    assert questions, "the demo pilot has finding questions with truth and confidence"
    choice = f"{pilot.pk}:{questions[0]}"
    assert choice in page.content.decode()
    done = client.post(
        url, {"source": "pilot", "pilot_question": choice, "alpha": 0.05, "power": 0.8}
    )
    assert done.status_code == 302
    plan = StudyPlan.objects.get(study=target)
    assert plan.source == "pilot" and plan.pilot_id == pilot.pk
    # the saved table is what the library computes on the pilot's ROC reads
    table = planning_service.pilot_roc_table(pilot, questions[0])
    comp = sa.or_components_from_pilot(table)
    six = next(r for r in plan.result["rows"] if r["readers"] == 6)
    expected = sa.mrmc_sample_size(6, 0.8, None, comp)
    assert six["cases_rrrc"] == expected.cases
    assert plan.result["effect"] == pytest.approx(comp.observed_effect)
    shown = client.get(url).content.decode()
    assert 'id="power-table"' in shown and "Hillis" in shown
    assert AuditEvent.objects.filter(action="study.plan").count() == 1
    pdf = client.get(reverse("studies:plan-pdf", args=[target.pk, plan.pk]))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    assert f"study-{target.pk}-plan-{plan.pk}.pdf" in pdf["Content-Disposition"]


def test_stated_assumptions_default_to_published_components(client, site):
    client.force_login(site["statistician"])
    url = reverse("studies:plan", args=[site["target"].pk])
    done = client.post(
        url, {"source": "assumptions", "effect": -0.0438, "alpha": 0.05, "power": 0.8}
    )
    assert done.status_code == 302
    plan = StudyPlan.objects.get(study=site["target"])
    six = next(r for r in plan.result["rows"] if r["readers"] == 6)
    # RJafroc SsSampleSizeKGivenJ(dataset02, J = 6) needs 251 cases for -0.0438003
    assert six["cases_rrrc"] in (250, 251, 252)
    assert "Van Dyke" in plan.result["components"]["source"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"source": "pilot", "alpha": 0.05, "power": 0.8}, "Choose a pilot"),
        ({"source": "assumptions", "alpha": 0.05, "power": 0.8}, "State the AUC difference"),
        (
            {"source": "assumptions", "effect": 0.05, "alpha": 0.05, "power": 0.8, "cov1": 1e-4},
            "all six variance components",
        ),
        ({"source": "pilot", "pilot_question": "999:x", "alpha": 0.05, "power": 0.8}, "valid"),
        ({"source": "assumptions", "effect": 0.05, "alpha": 2, "power": 0.8}, "alpha"),
    ],
)
def test_bad_plan_input_is_a_400_with_a_message(client, site, data, message):
    client.force_login(site["statistician"])
    res = client.post(reverse("studies:plan", args=[site["target"].pk]), data)
    assert res.status_code == 400
    assert message.lower() in res.content.decode().lower()
    assert not StudyPlan.objects.exists()


def test_who_may_plan(client, site):
    target = site["target"]
    url = reverse("studies:plan", args=[target.pk])
    client.force_login(target.coordinator)
    assert client.get(url).status_code == 200
    for user in (
        UserFactory(roles=("reader",), institution=target.institution),
        UserFactory(roles=("statistician",)),  # another site
        UserFactory(roles=("coordinator",), institution=target.institution),  # not theirs
    ):
        client.force_login(user)
        assert client.get(url).status_code == 404
    client.logout()
    assert client.get(url).status_code == 302


def test_plan_sample_size_command_prints_the_demo_pilot_table(site):
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    out = StringIO()
    call_command("plan_sample_size", str(site["pilot"].pk), stdout=out)
    text = out.getvalue()
    for question in planning_service.pilot_questions(site["pilot"]):
        assert text.count(f"{question}: ") == 1
    assert "cases RRRC (power)" in text and "3 readers x 12 cases" in text
    with pytest.raises(CommandError, match="no closed study"):
        call_command("plan_sample_size", str(site["target"].pk))
