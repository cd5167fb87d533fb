"""The reads export API: who may export (statisticians of the site, the study's
coordinator), only after close, JSON rows equal to the tidy table, CSV download, audit."""

from __future__ import annotations

import io
from datetime import timedelta

import pandas as pd
import pytest
from rest_framework.test import APIClient

from mriplatform.audit.models import AuditEvent
from studies.export import COLUMNS, tidy_csv
from studies.models import ReadingSession, ReadItem, ReferenceStandard
from studies.services import close_study, open_study, save_answer, submit_read
from tests.factories import QuestionFactory, UserFactory
from tests.studies.conftest import T0

pytestmark = pytest.mark.django_db

ROI = {"type": "rectangle", "mean": 250.5, "sd": 12.25, "pixel_count": 64, "area_mm2": None}


@pytest.fixture
def answered(build_study):
    """2 cases x 2 arms x 2 readers, every read answered and submitted (not closed)."""
    study, arms, cases, readers = build_study(n_cases=2, n_arms=2, n_readers=2)
    QuestionFactory(study=study, key="quality", kind="likert", order=0)
    QuestionFactory(
        study=study,
        key="tear",
        kind="finding",
        order=1,
        choices=["absent", "present"],
        with_confidence=True,
    )
    QuestionFactory(study=study, key="roi_fluid", kind="roi", order=2, required=False)
    open_study(study, study.coordinator, now=T0)
    for session in ReadingSession.objects.filter(study=study):
        ReadingSession.objects.filter(pk=session.pk).update(available_from=T0)
        for item in session.items.all():
            save_answer(item, "quality", 4, None, item.reader, now=T0)
            save_answer(item, "tear", "present", 3, item.reader, now=T0)
            save_answer(item, "roi_fluid", ROI, None, item.reader, now=T0)
            submit_read(item, item.reader, now=T0 + timedelta(seconds=20))
    ReferenceStandard.objects.create(
        study_case=cases[0],
        question="tear",
        value="present",
        source="consensus",
        entered_by=study.coordinator,
    )
    return study


def _client(user=None):
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def _url(study_pk, csv=False):
    return f"/api/studies/{study_pk}/reads" + (".csv" if csv else "/")


def _close(study):
    close_study(study, study.coordinator, reason="done")
    study.refresh_from_db()


def test_statistician_gets_json_rows_of_closed_study(answered):
    study = answered
    _close(study)
    statistician = UserFactory(roles=("statistician",), institution=study.institution)
    response = _client(statistician).get(_url(study.pk))
    assert response.status_code == 200
    rows = response.json()
    n_reads = ReadItem.objects.filter(session__study=study).count()
    assert len(rows) == n_reads * 3 == 2 * 2 * 2 * 3
    assert all(tuple(row) == COLUMNS for row in rows)
    quality = [r for r in rows if r["question"] == "quality"]
    assert {r["value"] for r in quality} == {4}
    assert {r["value_numeric"] for r in quality} == {4.0}
    assert all(r["truth"] is None and r["confidence"] is None for r in quality)
    tears = [r for r in rows if r["question"] == "tear"]
    assert {(r["value"], r["value_numeric"], r["confidence"]) for r in tears} == {
        ("present", 1.0, 3)
    }
    with_truth = [r for r in tears if r["truth"] is not None]
    assert len(with_truth) == 4  # 2 readers x 2 arms of the case with a reference
    assert {(r["truth"], r["truth_numeric"]) for r in with_truth} == {("present", 1.0)}
    rois = [r for r in rows if r["question"] == "roi_fluid"]
    assert rois[0]["value"]["mean"] == 250.5 and rois[0]["value"]["shape"] == "rectangle"
    assert rois[0]["value"]["area_mm2"] is None and rois[0]["value_numeric"] == 250.5
    assert {r["reader_id"] for r in rows} == {"R1", "R2"}
    assert {r["time_on_case_s"] for r in rows} == {20.0}
    assert AuditEvent.objects.filter(action="study.export_reads", actor=statistician).exists()


def test_csv_download_equals_the_tidy_csv(answered):
    study = answered
    _close(study)
    response = _client(study.coordinator).get(_url(study.pk, csv=True))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert f'filename="study-{study.pk}-reads.csv"' in response["Content-Disposition"]
    body = response.content.decode()
    assert body == tidy_csv(study)
    table = pd.read_csv(io.StringIO(body))
    assert list(table.columns) == list(COLUMNS) and len(table) == 24


def test_not_closed_is_409_for_the_coordinator_and_hidden_from_statisticians(answered):
    study = answered
    statistician = UserFactory(roles=("statistician",), institution=study.institution)
    for url in (_url(study.pk), _url(study.pk, csv=True)):
        response = _client(study.coordinator).get(url)
        assert response.status_code == 409
        assert "not closed" in response.json()["detail"]
        assert _client(statistician).get(url).status_code == 404
    assert not AuditEvent.objects.filter(action="study.export_reads").exists()


def test_others_cannot_export(answered):
    study = answered
    _close(study)
    reader = ReadItem.objects.filter(session__study=study).first().reader
    outsiders = [
        reader,
        UserFactory(roles=("statistician",)),  # another site
        UserFactory(roles=("coordinator",), institution=study.institution),
        UserFactory(roles=("site_admin",), institution=study.institution),
    ]
    for user in outsiders:
        for url in (_url(study.pk), _url(study.pk, csv=True)):
            assert _client(user).get(url).status_code == 404, user
    assert _client().get(_url(study.pk)).status_code in (401, 403)
    statistician = UserFactory(roles=("statistician",), institution=study.institution)
    assert _client(statistician).get(_url(999999)).status_code == 404
    assert not AuditEvent.objects.filter(action="study.export_reads").exists()


def test_export_routes_are_in_the_openapi_schema(client):
    import yaml

    client.force_login(UserFactory(roles=("statistician",)))
    schema = yaml.safe_load(client.get("/api/schema/").content)
    assert "/api/studies/{id}/reads/" in schema["paths"]
    assert "/api/studies/{id}/reads.csv" in schema["paths"]
    csv_get = schema["paths"]["/api/studies/{id}/reads.csv"]["get"]
    assert "text/csv" in csv_get["responses"]["200"]["content"]
