"""Jobs REST API without a worker: batch submission (series x protocols, idempotent),
validation of what may be submitted, listing with status filter, and retry rules."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from mriplatform.accounts.roles import Role
from mriplatform.cases.services import ingest_files
from mriplatform.jobs import services
from mriplatform.jobs.models import ReconJob
from tests.factories import CaseFactory, ProtocolFactory
from tests.jobs import raw_series

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(make_user):
    return make_user(Role.SITE_ADMIN)


@pytest.fixture
def api(admin):
    client = APIClient()
    client.force_authenticate(admin)
    return client


@pytest.fixture
def sent(monkeypatch):
    queued = []
    monkeypatch.setattr(services, "enqueue", queued.append)
    return queued


@pytest.fixture
def raws(admin, media_root, raw_case_file):
    case = CaseFactory(institution=admin.institution)
    return [raw_series(case, raw_case_file), raw_series(case, raw_case_file)]


def test_batch_submit_and_resubmit(api, raws, sent):
    protocols = [ProtocolFactory(), ProtocolFactory(), ProtocolFactory()]
    body = {"series": [s.pk for s in raws], "protocols": [p.pk for p in protocols]}
    response = api.post("/api/jobs/submit/", body, format="json")
    assert response.status_code == 201
    created = response.json()["created"]
    assert len(created) == 6 and response.json()["existing"] == []
    assert {(j["input_series"], j["protocol"]) for j in created} == {
        (s.pk, p.pk) for s in raws for p in protocols
    }
    assert all(j["status"] == "queued" and j["case"] == raws[0].case_id for j in created)
    assert len(sent) == 6
    again = api.post("/api/jobs/submit/", body, format="json").json()
    assert again["created"] == [] and len(again["existing"]) == 6
    assert ReconJob.objects.count() == 6 and len(sent) == 6


def test_submit_validation(api, admin, raws, media_root, mr_series_files, sent):
    old = ProtocolFactory()
    new = old.new_version(name="renamed")
    dicom = ingest_files(
        raws[0].case, [SimpleUploadedFile(p.name, p.read_bytes()) for p in mr_series_files], admin
    )
    cases = {
        "not raw": ({"series": [dicom.pk], "protocols": [new.pk]}, "series", "not raw k-space"),
        "old version": ({"series": [raws[0].pk], "protocols": [old.pk]}, "protocols", "Invalid"),
        "empty": ({"series": [], "protocols": [new.pk]}, "series", "may not be empty"),
    }
    for name, (body, field, phrase) in cases.items():
        response = api.post("/api/jobs/submit/", body, format="json")
        assert response.status_code == 400, name
        assert phrase in " ".join(response.json()[field]), name
    assert not ReconJob.objects.exists() and sent == []


def test_list_filter_and_retry_rules(api, raws, sent):
    protocol = ProtocolFactory()
    done = ReconJob.objects.create(
        input_series=raws[0], protocol=protocol, status=ReconJob.Status.SUCCEEDED
    )
    failed = ReconJob.objects.create(
        input_series=raws[1], protocol=protocol, status=ReconJob.Status.FAILED, error="boom"
    )
    listed = api.get("/api/jobs/", {"status": "failed"}).json()
    assert [j["id"] for j in listed["results"]] == [failed.pk]
    assert listed["results"][0]["error"] == "boom"
    assert api.post(f"/api/jobs/{done.pk}/retry/").status_code == 409
    response = api.post(f"/api/jobs/{failed.pk}/retry/")
    assert response.status_code == 202
    assert response.json()["status"] == "queued" and response.json()["error"] == ""
    assert sent == [failed]


def test_coordinator_reads_but_cannot_submit(make_user, raws, sent):
    coordinator = make_user(Role.COORDINATOR)
    api = APIClient()
    api.force_authenticate(coordinator)
    ReconJob.objects.create(input_series=raws[0], protocol=ProtocolFactory())
    assert api.get("/api/jobs/").json()["count"] == 1
    body = {"series": [raws[1].pk], "protocols": [ProtocolFactory().pk]}
    assert api.post("/api/jobs/submit/", body, format="json").status_code == 403
    assert ReconJob.objects.count() == 1 and sent == []
