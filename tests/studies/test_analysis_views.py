"""The statistician's pages: who may see them (404 for everyone else), starting a run,
its progress JSON, the report, downloads with safe names, failures with their message."""

from __future__ import annotations

import json
import re
import zipfile

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.urls import reverse

from mriplatform.audit.models import AuditEvent
from studies import analysis_service
from studies.models import AnalysisRun, Question, ReferenceStandard, Study
from studies.reference import enter_consensus, reference_digest
from tests.factories import ArmFactory, StudyCaseFactory, StudyFactory, UserFactory
from tests.studies.test_report import simulated_reads

pytestmark = pytest.mark.django_db


@pytest.fixture
def closed_study(db):
    """A closed 3-arm study (labels A, B, C; A the reference) whose export is simulated."""
    study = StudyFactory(status=Study.Status.CLOSED)
    arms = [ArmFactory(study=study, label=label) for label in "ABC"]
    study.reference_arm = arms[0]
    study.save()
    return study


@pytest.fixture
def simulated_export(monkeypatch):
    """The tidy CSV of the simulated reads stands in for the study's export."""
    csv_text = simulated_reads(n_patients=8).to_csv(index=False)
    monkeypatch.setattr(analysis_service, "_tidy_csv", lambda study: csv_text)
    return csv_text


@pytest.fixture
def statistician(closed_study):
    return UserFactory(roles=("statistician",), institution=closed_study.institution)


def make_run(study, user):
    params = analysis_service.analysis_parameters(
        study, {"analyses": ["likert", "scan_time"], "n_boot": 200}
    )
    return AnalysisRun.objects.create(study=study, requested_by=user, parameters=params)


def form_data(**overrides):
    data = {
        "analyses": ["likert", "interchangeability", "scan_time"],
        "reference": "A",
        "alpha": "0.05",
        "n_boot": "200",
        "seed": "3",
        "margin": "0.05",
        "likert_threshold": "3",
        "kappa_weights": "linear",
        "roc_rating": "signed",
        "mrmc_covariance": "jackknife",
        "n_coils": "1",
    }
    data.update(overrides)
    return data


def start(client, study, django_capture_on_commit_callbacks, **overrides):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            reverse("studies:analysis-study", args=[study.pk]), form_data(**overrides)
        )
    return response, callbacks


def test_statistician_starts_a_run_and_gets_the_report(
    client,
    closed_study,
    statistician,
    simulated_export,
    media_root,
    django_capture_on_commit_callbacks,
):
    client.force_login(statistician)
    index = client.get(reverse("studies:analysis-index"))
    assert index.status_code == 200 and closed_study.title in index.content.decode()
    page = client.get(reverse("studies:analysis-study", args=[closed_study.pk]))
    assert page.status_code == 200 and 'name="analyses"' in page.content.decode()

    response, callbacks = start(client, closed_study, django_capture_on_commit_callbacks)
    run = AnalysisRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("studies:analysis-run", args=[run.pk])
    assert len(callbacks) == 1  # the Celery task is queued once the run is committed
    assert run.status == "queued" and run.requested_by == statistician
    assert run.parameters["analyses"] == ["likert", "interchangeability", "scan_time"]
    assert run.parameters["n_boot"] == 200 and run.parameters["seed"] == 3
    assert set(run.parameters["scan_times_s"]) == {"A", "B", "C"}
    assert AuditEvent.objects.filter(action="study.analysis.start", actor=statistician).exists()

    status_url = reverse("studies:analysis-run-status", args=[run.pk])
    assert client.get(status_url).json()["status"] == "queued"
    analysis_service.run_analysis(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded" and run.progress == 1.0
    state = client.get(status_url).json()
    assert state == {**state, "status": "succeeded", "progress_percent": 100, "finished": True}
    assert run.result["analyses"]["likert"]["status"] == "done"
    assert run.result["analyses"]["scan_time"]["items"][0]["result"]["speedup"] == 1.0

    detail = client.get(reverse("studies:analysis-run", args=[run.pk])).content.decode()
    assert detail.count('src="data:image/svg+xml;base64,') >= 2
    assert "Interchangeability" in detail

    expected = {
        "report.pdf": b"%PDF-",
        "report.html": b"<!doctype html>",
        "reads.csv": b"reader_id,",
        "bundle.zip": b"PK",
    }
    for name, start_bytes in expected.items():
        url = reverse("studies:analysis-run-download", args=[run.pk, name])
        response = client.get(url)
        assert response.status_code == 200, name
        body = b"".join(response.streaming_content)
        assert body.startswith(start_bytes), name
        stem, ext = name.split(".")
        filename = f"study-{closed_study.pk}-analysis-{run.pk}-{stem}.{ext}"
        assert response["Content-Disposition"] == f'attachment; filename="{filename}"'
    assert body[:2] == b"PK"
    # The bundle holds the numbers, and the digest of the reference standard they used.
    truth = run.result.pop("reference_standard")
    assert truth == {"sha256": reference_digest(closed_study)["sha256"], "cells": 0}
    with default_storage.open(f"{run.output_dir}/bundle.zip") as fh, zipfile.ZipFile(fh) as zf:
        assert json.loads(zf.read("results.json")) == run.result
        assert json.loads(zf.read("reference_standard.json")) == truth
    assert truth["sha256"] in detail and 'id="reference-changed"' not in detail
    assert AuditEvent.objects.filter(action="study.analysis.download").count() == 4


@pytest.mark.parametrize("role", ["coordinator", "reader", "site_admin", "other_site"])
def test_others_get_404(client, closed_study, statistician, simulated_export, media_root, role):
    run = make_run(closed_study, statistician)
    analysis_service.run_analysis(run.pk)
    if role == "coordinator":
        user = closed_study.coordinator
    elif role == "other_site":
        user = UserFactory(roles=("statistician",))
    else:
        user = UserFactory(roles=(role,), institution=closed_study.institution)
    client.force_login(user)
    urls = [
        reverse("studies:analysis-study", args=[closed_study.pk]),
        reverse("studies:analysis-run", args=[run.pk]),
        reverse("studies:analysis-run-status", args=[run.pk]),
        reverse("studies:analysis-run-download", args=[run.pk, "report.pdf"]),
        reverse("studies:analysis-run-download", args=[run.pk, "reads.csv"]),
    ]
    if role != "other_site":
        urls.append(reverse("studies:analysis-index"))
    for url in urls:
        assert client.get(url).status_code == 404, url
    response = client.post(urls[0], form_data())
    assert response.status_code == 404
    assert AnalysisRun.objects.count() == 1


def test_anonymous_is_sent_to_login(client, closed_study):
    response = client.get(reverse("studies:analysis-study", args=[closed_study.pk]))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_studies_not_closed_cannot_be_analysed(client, closed_study, statistician):
    client.force_login(statistician)
    for status in (Study.Status.DRAFT, Study.Status.OPEN):
        Study.objects.filter(pk=closed_study.pk).update(status=status)
        url = reverse("studies:analysis-study", args=[closed_study.pk])
        assert client.get(url).status_code == 404
        assert client.post(url, form_data()).status_code == 404
    assert not AnalysisRun.objects.exists()


def test_bad_parameters_are_refused_and_nothing_is_queued(
    client, closed_study, statistician, django_capture_on_commit_callbacks
):
    client.force_login(statistician)
    response, callbacks = start(
        client, closed_study, django_capture_on_commit_callbacks, n_boot="5", analyses=[]
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert "n_boot" in errors and "analyses" in errors
    assert not callbacks and not AnalysisRun.objects.exists()


def test_unknown_download_names_are_404(
    client, closed_study, statistician, simulated_export, media_root
):
    run = make_run(closed_study, statistician)
    client.force_login(statistician)
    pdf = reverse("studies:analysis-run-download", args=[run.pk, "report.pdf"])
    assert client.get(pdf).status_code == 404  # not finished yet
    analysis_service.run_analysis(run.pk)
    assert client.get(pdf).status_code == 200
    for name in ("results.json", "report_body.html", "..%2Freads.csv", "parameters.json"):
        url = reverse("studies:analysis-run-download", args=[run.pk, "report.pdf"])
        url = url.replace("report.pdf", name)
        assert client.get(url).status_code == 404, name


def test_a_failed_run_shows_its_message(
    client, closed_study, statistician, media_root, monkeypatch
):
    header = simulated_reads(n_patients=2).head(0).to_csv(index=False)
    monkeypatch.setattr(analysis_service, "_tidy_csv", lambda study: header)
    run = make_run(closed_study, statistician)
    analysis_service.run_analysis(run.pk)
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.message == "the study has no submitted reads to analyse"
    client.force_login(statistician)
    state = client.get(reverse("studies:analysis-run-status", args=[run.pk])).json()
    assert state["status"] == "failed" and state["message"] == run.message
    page = client.get(reverse("studies:analysis-run", args=[run.pk])).content.decode()
    assert run.message in page and "report.pdf" not in page


def test_running_again_is_idempotent(closed_study, statistician, simulated_export, media_root):
    run = make_run(closed_study, statistician)
    first = analysis_service.run_analysis(run.pk)
    finished = first.finished
    again = analysis_service.run_analysis(run.pk)
    assert again.status == "succeeded" and again.finished == finished


@pytest.mark.parametrize("method", ["delay", "apply_async"])
def test_broker_down_fails_the_run_visibly_and_it_can_run_again(
    client,
    closed_study,
    statistician,
    simulated_export,
    media_root,
    monkeypatch,
    django_capture_on_commit_callbacks,
    method,
):
    from kombu.exceptions import OperationalError

    from studies import tasks

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.run_analysis, method, broker_down)
    client.force_login(statistician)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("studies:analysis-study", args=[closed_study.pk]), form_data()
        )
    failed = AnalysisRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("studies:analysis-run", args=[failed.pk])
    assert failed.status == "failed" and failed.finished is not None
    assert "could not reach the task broker" in failed.message
    assert "Connection refused" in failed.message
    page = client.get(response["Location"]).content.decode()
    again_url = reverse("studies:analysis-run-again", args=[failed.pk])
    assert failed.message in page and again_url in page

    # The broker is back: "run again" queues a new run with exactly the same parameters.
    sent = []
    monkeypatch.setattr(tasks.run_analysis, method, lambda *a, **k: sent.append((a, k)))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(again_url)
    new = AnalysisRun.objects.exclude(pk=failed.pk).get()
    assert response["Location"] == reverse("studies:analysis-run", args=[new.pk])
    assert new.status == "queued" and new.parameters == failed.parameters
    assert new.requested_by == statistician and len(sent) == 1
    failed.refresh_from_db()
    assert failed.status == "failed"  # the failed run is kept as it was
    event = AuditEvent.objects.filter(action="study.analysis.start").order_by("-id").first()
    assert event.details["run"] == new.pk and event.details["rerun_of"] == failed.pk
    analysis_service.run_analysis(new.pk)
    new.refresh_from_db()
    assert new.status == "succeeded"


def test_only_failed_runs_run_again(client, closed_study, statistician, media_root):
    run = make_run(closed_study, statistician)
    client.force_login(statistician)
    url = reverse("studies:analysis-run-again", args=[run.pk])
    assert client.get(url).status_code == 405
    response = client.post(url, follow=True)
    assert any("only a failed run" in str(m) for m in response.context["messages"])
    assert AnalysisRun.objects.count() == 1
    other = UserFactory(roles=("statistician",))  # another site's statistician
    AnalysisRun.objects.filter(pk=run.pk).update(status=AnalysisRun.Status.FAILED)
    client.force_login(other)
    assert client.post(url).status_code == 404
    assert AnalysisRun.objects.count() == 1


def test_report_shows_when_the_reference_standard_changed_since_the_run(
    client, closed_study, statistician, simulated_export, media_root
):
    """A truth completed after a run (allowed once closed) makes that run visibly stale."""
    Question.objects.create(
        study=closed_study, key="tear", kind="finding", label="Tear", choices=["no", "yes"]
    )
    case = StudyCaseFactory(study=closed_study)
    run = make_run(closed_study, statistician)
    analysis_service.run_analysis(run.pk)
    run.refresh_from_db()
    used = run.result["reference_standard"]
    client.force_login(statistician)
    url = reverse("studies:analysis-run", args=[run.pk])
    assert 'id="reference-changed"' not in client.get(url).content.decode()
    # completing a missing truth after closing is allowed, and shows on the run's page
    enter_consensus(case, "tear", "yes", closed_study.coordinator)
    assert ReferenceStandard.objects.get().value == "yes"
    page = client.get(url).content.decode()
    assert 'id="reference-changed"' in page
    assert used["sha256"] in page and reference_digest(closed_study)["sha256"] in page


# Reports go through the storage API (local disk or S3), never through a path: the web
# serves what a worker on another machine stored, a redelivered run replaces what an
# interrupted one left, and a run that fails while storing leaves nothing behind (the
# multi-process S3 check is tests/deploy/test_s3_deployment.py).

STORED_REPORT = set(analysis_service.REPORT_FILES) | {"report_body.html"}


def stored_names(folder: str) -> set[str]:
    dirs, files = default_storage.listdir(folder)
    names = set(files)
    for sub in dirs:
        names |= {f"{sub}/{name}" for name in stored_names(f"{folder}/{sub}")}
    return names


@pytest.fixture
def storage_elsewhere(settings, tmp_path):
    """The default storage in one folder, MEDIA_ROOT an empty other one (as on a web server
    whose files live in S3)."""
    settings.MEDIA_ROOT = tmp_path / "media-of-this-machine"
    settings.MEDIA_ROOT.mkdir()
    location = tmp_path / "shared-storage"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {"location": str(location)}},
    }
    return location


def test_the_report_is_served_from_storage_not_from_media_root(
    client, settings, closed_study, statistician, simulated_export, storage_elsewhere
):
    run = analysis_service.run_analysis(make_run(closed_study, statistician).pk)
    assert run.status == AnalysisRun.Status.SUCCEEDED and run.output_dir == f"analysis/{run.pk}"
    assert not [p for p in settings.MEDIA_ROOT.rglob("*") if p.is_file()]
    assert STORED_REPORT <= stored_names(run.output_dir)
    client.force_login(statistician)
    detail = client.get(reverse("studies:analysis-run", args=[run.pk])).content.decode()
    with default_storage.open(f"{run.output_dir}/report_body.html") as fh:
        assert fh.read().decode() in detail
    for name in analysis_service.REPORT_FILES:
        url = reverse("studies:analysis-run-download", args=[run.pk, name])
        response = client.get(url)
        assert response.status_code == 200, name
        with default_storage.open(f"{run.output_dir}/{name}") as fh:
            assert b"".join(response.streaming_content) == fh.read()


def test_a_redelivered_run_replaces_what_the_interrupted_attempt_stored(
    closed_study, statistician, simulated_export, media_root
):
    run = make_run(closed_study, statistician)
    folder = analysis_service.run_folder(run)
    default_storage.save(f"{folder}/report.html", ContentFile(b"half-written"))
    default_storage.save(f"{folder}/figures/stale.svg", ContentFile(b"<svg/>"))
    AnalysisRun.objects.filter(pk=run.pk).update(status=AnalysisRun.Status.RUNNING)

    run = analysis_service.run_analysis(run.pk)
    assert run.status == AnalysisRun.Status.SUCCEEDED, run.message
    names = stored_names(folder)
    assert STORED_REPORT <= names and "figures/stale.svg" not in names
    # No copies renamed by the storage (report_AbC1234.html) next to the real files.
    assert not [n for n in names if re.search(r"_[A-Za-z0-9]{7}\.\w+$", n)], names
    with default_storage.open(f"{folder}/report.html") as fh:
        assert fh.read() != b"half-written"


def test_a_run_that_fails_while_storing_leaves_nothing_stored(
    closed_study, statistician, simulated_export, media_root, monkeypatch
):
    real_save = FileSystemStorage._save
    calls = []

    def save_then_fail(self, name, content):
        calls.append(name)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_save(self, name, content)

    monkeypatch.setattr(FileSystemStorage, "_save", save_then_fail)
    run = analysis_service.run_analysis(make_run(closed_study, statistician).pk)
    assert run.status == AnalysisRun.Status.FAILED
    assert "No space left on device" in run.message
    assert len(calls) == 3
    assert stored_names(analysis_service.run_folder(run)) == set()
    assert analysis_service.run_file(run, "report.pdf") is None


def test_noninferiority_margin_is_optional_and_checked(
    client, closed_study, simulated_export, django_capture_on_commit_callbacks
):
    """Blank keeps the report's default (0.10); a margin outside (0.01, 0.5) is a 400."""
    statistician = UserFactory(roles=("statistician",), institution=closed_study.institution)
    client.force_login(statistician)
    response, _ = start(client, closed_study, django_capture_on_commit_callbacks)
    assert response.status_code == 302
    run = AnalysisRun.objects.get(study=closed_study)
    assert run.parameters["noninferiority_margin"] == 0.10
    response, _ = start(
        client, closed_study, django_capture_on_commit_callbacks, noninferiority_margin="0.9"
    )
    assert response.status_code == 400


def test_a_storage_outage_still_fails_the_run_visibly(
    closed_study, statistician, simulated_export, media_root, monkeypatch
):
    """The storage goes away after two report files: neither the save nor the clean-up
    works, and the run is still marked failed with the reason."""
    real_save = FileSystemStorage._save
    saved = []

    def save_until_outage(self, name, content):
        if len(saved) == 2:
            raise OSError(113, "No route to host")
        saved.append(name)
        return real_save(self, name, content)

    def unreachable(self, name):
        raise OSError(113, "No route to host")

    monkeypatch.setattr(FileSystemStorage, "_save", save_until_outage)
    monkeypatch.setattr(FileSystemStorage, "delete", unreachable)
    run = analysis_service.run_analysis(make_run(closed_study, statistician).pk)
    assert run.status == AnalysisRun.Status.FAILED and run.finished is not None
    assert "No route to host" in run.message
    assert len(stored_names(analysis_service.run_folder(run))) == 2  # the next attempt's job
