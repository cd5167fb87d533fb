"""A queued analysis run tells the statistician why it waits: the short queue's worker
slot, and how many earlier runs are ahead of it."""

from __future__ import annotations

import pytest
from django.urls import reverse

from studies import analysis_service
from studies.models import AnalysisRun, Study
from tests.factories import StudyFactory, UserFactory

pytestmark = pytest.mark.django_db

S = AnalysisRun.Status


def test_queued_runs_say_what_they_wait_for_and_how_many_are_ahead(client):
    study = StudyFactory(status=Study.Status.CLOSED)
    statistician = UserFactory(roles=("statistician",), institution=study.institution)

    def run(status):
        return AnalysisRun.objects.create(
            study=study, requested_by=statistician, parameters={}, status=status, message="Queued"
        )

    finished, running, first, second = (
        run(S.SUCCEEDED),
        run(S.RUNNING),
        run(S.QUEUED),
        run(S.QUEUED),
    )
    waiting = "Queued: waiting for a worker on the short queue"
    assert (
        analysis_service.run_state(first)["message"] == f"{waiting}, behind 1 earlier analysis run"
    )
    assert analysis_service.run_state(second)["message"] == (
        f"{waiting}, behind 2 earlier analysis runs"
    )
    running.status = S.FAILED
    running.message = "ValueError: no reads"
    running.save()
    assert analysis_service.run_state(first)["message"] == waiting
    assert analysis_service.run_state(running)["message"] == "ValueError: no reads"
    assert analysis_service.run_state(finished)["message"] == "Queued"  # its own, as stored

    client.force_login(statistician)
    status = client.get(reverse("studies:analysis-run-status", args=[second.pk])).json()
    assert status["message"] == f"{waiting}, behind 1 earlier analysis run"
    page = client.get(reverse("studies:analysis-run", args=[second.pk])).content.decode()
    assert f"{waiting}, behind 1 earlier analysis run" in page
