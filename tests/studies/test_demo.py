"""Demo studies: the simulated analysis study (documented reader model, analysable data)
and the knee study that opens itself once the demo reconstructions are done."""

from __future__ import annotations

import io
import json

import pytest

from mriplatform.audit.models import AuditEvent
from studies import demo, report
from studies.analysis_service import analysis_parameters
from studies.export import analysis_table, tidy_csv, tidy_reads
from studies.models import ReadingSession, ReadItem, ReferenceStandard, Study
from studies.question_templates import TEMPLATES
from studies.tasks import open_when_reconstructed as open_task
from tests.factories import CaseFactory, InstitutionFactory, ReconJobFactory, SeriesFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def simulated():
    return demo.build_demo_analysis_study(n_cases=12, n_readers=2, seed=11)


def test_simulated_study_is_closed_with_truth_and_every_read(simulated):
    study = simulated
    assert study.status == Study.Status.CLOSED
    assert "simulated" in study.title.lower()
    assert [a.label for a in study.arms.all()] == ["A", "B"]
    assert study.reference_arm.label == "A"
    assert study.study_cases.count() == 12
    assert len({sc.case_id for sc in study.study_cases.all()}) == 12
    items = ReadItem.objects.filter(session__study=study)
    assert items.filter(submitted_at__isnull=True).count() == 0
    repeats = round(0.25 * 12 * 2)
    assert items.count() == 2 * (12 * 2 + repeats)
    assert ReferenceStandard.objects.filter(study_case__study=study).count() == 12 * 5
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"study.simulate_reads", "study.close_for_analysis"} <= actions
    again = demo.build_demo_analysis_study(n_cases=12, n_readers=2, seed=11)
    assert again.pk == study.pk  # once per site


def test_exported_values_are_those_of_the_documented_reader_model(simulated):
    study = simulated
    df = tidy_reads(study)
    assert len(df) == ReadItem.objects.filter(session__study=study).count() * len(
        demo.SIMULATED_KEYS
    )
    cases = {str(sc.pk): i for i, sc in enumerate(study.study_cases.order_by("pk"))}
    for _, row in df[df["read_index"] == 2].head(3).iterrows():
        reader = int(row["reader_id"][1:]) - 1
        arm = 0 if row["modality_id"] == "A" else 1
        expected = demo.simulate_read(11, reader, cases[row["case_id"]], arm, 1)
        value, confidence = expected[row["question"]]
        if row["question_kind"] == "roi":
            assert row["value_numeric"] == pytest.approx(value["mean"])
        else:
            assert row["value"] == value
    assert demo.simulate_read(11, 0, 3, 1, 0) == demo.simulate_read(11, 0, 3, 1, 0)
    assert demo.simulate_read(11, 0, 3, 1, 0) != demo.simulate_read(12, 0, 3, 1, 0)


def test_simulated_effects_are_recoverable(simulated):
    study = simulated
    quality = analysis_table(study, "noise")
    means = quality.groupby("modality_id")["value"].mean()
    assert means["B"] < means["A"]  # the accelerated arm is noisier by construction
    tears = analysis_table(study, "meniscal_tear")
    assert tears["truth"].notna().all()
    assert (tears["value"] == tears["truth"]).mean() > 0.7
    df = tidy_reads(study)
    background = df[df["question"] == "roi_background"]
    sd = background["value"].map(lambda v: json.loads(v)["sd"])
    sigma = sd / demo.RAYLEIGH_SD
    by_arm = sigma.groupby(background["modality_id"]).mean()
    assert by_arm["A"] == pytest.approx(8.0, rel=0.1)
    assert by_arm["B"] == pytest.approx(12.0, rel=0.1)


def test_report_runs_on_the_simulated_study(simulated):
    study = simulated
    params = analysis_parameters(
        study,
        {
            "analyses": ["likert", "interchangeability", "accuracy", "image_quality"],
            "n_boot": 200,
        },
    )
    results = report.compute_results(report.load_reads(io.StringIO(tidy_csv(study))), params)
    for name in ("likert", "interchangeability", "accuracy", "image_quality"):
        section = results["analyses"][name]
        assert section["status"] == "done", (name, section.get("reason"))


@pytest.fixture
def knee_setup():
    site = InstitutionFactory()
    cases = [CaseFactory(institution=site) for _ in range(2)]
    raws = [SeriesFactory(case=case) for case in cases]
    return site, cases, raws


def _succeed(raw, protocol, status="succeeded"):
    return ReconJobFactory(input_series=raw, protocol=protocol, status=status)


def test_knee_study_opens_once_reconstructed(knee_setup, django_capture_on_commit_callbacks):
    site, cases, raws = knee_setup
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        knee, analysis = demo.create_demo_studies(site, cases)
    assert len(callbacks) == 1  # the opening task, sent after commit
    assert knee.status == Study.Status.DRAFT and analysis.status == Study.Status.CLOSED
    assert knee.questions.count() == len(TEMPLATES["knee"]["items"])
    readers = sorted(knee.study_readers.values_list("reader__username", flat=True))
    assert readers == ["reader1", "reader2"]
    assert all(r.reader.has_role("reader") for r in knee.study_readers.all())
    coordinator = knee.coordinator
    arms = {a.label: a for a in knee.arms.all()}
    assert arms["A"].protocol.name == demo.KNEE_ARMS[0] == knee.reference_arm.protocol.name

    assert demo.open_when_reconstructed(knee, coordinator) == "waiting"
    assert not AuditEvent.objects.filter(action="study.auto_open_failed").exists()
    for raw in raws:
        _succeed(raw, arms["A"].protocol)
    failed = _succeed(raws[1], arms["B"].protocol, status="failed")
    _succeed(raws[0], arms["B"].protocol)
    assert demo.open_when_reconstructed(knee, coordinator) == "failed"
    event = AuditEvent.objects.get(action="study.auto_open_failed")
    assert "failed" in event.details["reason"]
    failed.status = "succeeded"
    failed.save()
    assert demo.open_when_reconstructed(knee, coordinator) == "opened"
    knee.refresh_from_db()
    assert knee.status == Study.Status.OPEN
    assert ReadingSession.objects.filter(study=knee).count() == 2 * 2
    assert demo.open_when_reconstructed(knee, coordinator) == "not a draft"

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        again = demo.create_demo_studies(site, cases)
    assert [s.pk for s in again] == [knee.pk, analysis.pk] and callbacks == []


def test_opening_task_retries_then_gives_up(knee_setup, monkeypatch):
    site, cases, _ = knee_setup
    with_no_jobs = demo.create_knee_demo_study(
        site, demo._coordinator(site), cases, [demo.demo_reader("reader1", site)]
    )
    monkeypatch.setattr(demo, "OPEN_MAX_TRIES", 3)
    monkeypatch.setattr(demo, "OPEN_RETRY_S", 0)
    result = open_task.apply(args=[with_no_jobs.pk, with_no_jobs.coordinator_id])
    assert result.get() == "failed"
    event = AuditEvent.objects.get(action="study.auto_open_failed")
    assert "gave up" in event.details["reason"]
    with_no_jobs.refresh_from_db()
    assert with_no_jobs.status == Study.Status.DRAFT
