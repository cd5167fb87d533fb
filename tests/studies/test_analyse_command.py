"""``manage.py analyse STUDY`` writes the same report as a web run, synchronously."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from mriplatform.audit.models import AuditEvent
from studies import analysis_service
from studies.models import AnalysisRun, Study
from tests.studies.test_analysis_views import closed_study, simulated_export  # noqa: F401

pytestmark = pytest.mark.django_db


def test_command_writes_the_report_the_web_run_writes(
    closed_study,  # noqa: F811
    simulated_export,  # noqa: F811
    media_root,
    tmp_path,
    capsys,
):
    out = tmp_path / "report"
    call_command(
        "analyse",
        str(closed_study.pk),
        "--output",
        str(out),
        "--analyses",
        "likert",
        "interchangeability",
        "scan_time",
        "--seed",
        "11",
        "--n-boot",
        "200",
    )
    stdout = capsys.readouterr().out
    assert "likert: done" in stdout and f"report written to {out}" in stdout
    names = {p.name for p in out.iterdir()}
    assert {"report.html", "report.pdf", "reads.csv", "results.json", "bundle.zip"} <= names
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF-")
    results = json.loads((out / "results.json").read_text())
    assert results["parameters"]["seed"] == 11 and results["parameters"]["reference"] == "A"
    assert AuditEvent.objects.filter(action="study.analysis.command").exists()

    params = analysis_service.analysis_parameters(
        closed_study,
        {"analyses": ["likert", "interchangeability", "scan_time"], "seed": 11, "n_boot": 200},
    )
    run = AnalysisRun.objects.create(
        study=closed_study, requested_by=closed_study.coordinator, parameters=params
    )
    run = analysis_service.run_analysis(run.pk)
    assert run.status == "succeeded"
    truth = run.result.pop("reference_standard")  # the run also records the truth's digest
    assert run.result == results
    assert json.loads((out / "reference_standard.json").read_text()) == truth


def test_command_refuses_unknown_and_open_studies(closed_study, tmp_path):  # noqa: F811
    with pytest.raises(CommandError, match="no study with id 999999"):
        call_command("analyse", "999999", "--output", str(tmp_path))
    Study.objects.filter(pk=closed_study.pk).update(status=Study.Status.OPEN)
    with pytest.raises(CommandError, match="only studies closed for analysis"):
        call_command("analyse", str(closed_study.pk), "--output", str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_command_refuses_bad_parameters(closed_study, tmp_path):  # noqa: F811
    with pytest.raises(CommandError, match="n_boot must lie in"):
        call_command("analyse", str(closed_study.pk), "--n-boot", "3", "--output", str(tmp_path))


def test_command_on_the_demo_study_uses_the_real_export(media_root, tmp_path):
    from studies.demo import build_demo_analysis_study
    from studies.export import tidy_csv

    study = build_demo_analysis_study()
    out = tmp_path / "demo"
    call_command(
        "analyse",
        str(study.pk),
        "--output",
        str(out),
        "--n-boot",
        "200",
        "--analyses",
        "likert",
        "accuracy",
        "scan_time",
    )
    assert (out / "reads.csv").read_text() == tidy_csv(study)
    results = json.loads((out / "results.json").read_text())
    assert results["parameters"]["reference"] == study.reference_arm.label
    assert {s["status"] for s in results["analyses"].values()} == {"done"}
    arms = {arm.label: arm.protocol.acquisition_time_s for arm in study.arms.all()}
    scan = results["analyses"]["scan_time"]["items"][0]["result"]
    assert scan["reference_s"] == pytest.approx(arms[study.reference_arm.label])
