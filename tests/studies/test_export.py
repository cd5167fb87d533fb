"""The tidy reads export of a closed study, checked row by row against the answers given,
and accepted by the statistics library."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from studies import analysis as sa
from studies.export import COLUMNS, analysis_table, tidy_csv, tidy_reads
from studies.models import ReadingSession, ReadItem, ReferenceStandard, StudyReader
from studies.services import StudyError, close_study, open_study, save_answer, submit_read
from tests.factories import QuestionFactory
from tests.studies.conftest import T0

pytestmark = pytest.mark.django_db

GRADES = ["ICRS 0", "ICRS 1", "ICRS 2"]


def quality(reader_no: int, case_no: int, arm: str) -> int:
    return 1 + (reader_no + 2 * case_no + (1 if arm == "A" else 0)) % 5


def tear(reader_no: int, case_no: int) -> str:
    return "present" if (case_no + reader_no) % 3 else "absent"


def roi(mean: float, sd: float) -> dict:
    return {"type": "ellipse", "mean": mean, "sd": sd, "pixel_count": 40, "area_mm2": 12.5}


@pytest.fixture
def closed_study(build_study):
    """6 cases x 2 arms x 2 readers, 50 % repeats; every read answered as the functions
    above say, then closed. Truth for the tear on every case but the last."""
    study, arms, cases, readers = build_study(n_cases=6, n_arms=2, n_readers=2, repeat_fraction=0.5)
    QuestionFactory(study=study, key="quality", kind="likert", order=0, criterion="overall")
    QuestionFactory(
        study=study,
        key="tear",
        kind="finding",
        order=1,
        choices=["absent", "present"],
        with_confidence=True,
        structure="meniscus",
    )
    QuestionFactory(study=study, key="cartilage", kind="finding", order=2, choices=GRADES)
    QuestionFactory(study=study, key="thickness", kind="number", order=3, unit="mm")
    QuestionFactory(study=study, key="roi_muscle", kind="roi", order=4, structure="muscle")
    QuestionFactory(study=study, key="roi_background", kind="roi", order=5, structure="background")
    QuestionFactory(study=study, key="comment", kind="text", order=6, required=False)
    open_study(study, study.coordinator, now=T0)
    reader_no = {r.pk: i for i, r in enumerate(readers, start=1)}
    case_no = {sc.pk: i for i, sc in enumerate(cases)}
    now = T0
    for session in ReadingSession.objects.filter(study=study).order_by("reader", "index"):
        ReadingSession.objects.filter(pk=session.pk).update(available_from=T0)
        for item in session.items.select_related("arm"):
            r, c, arm = reader_no[item.reader_id], case_no[item.study_case_id], item.arm.label
            user = item.reader
            now += timedelta(seconds=1)
            save_answer(item, "quality", quality(r, c, arm), None, user, now=now)
            save_answer(item, "tear", tear(r, c), 1 + (c % 5), user, now=now)
            save_answer(item, "cartilage", GRADES[c % 3], None, user, now=now)
            save_answer(item, "thickness", 2.0 + c / 10, None, user, now=now)
            save_answer(item, "roi_muscle", roi(100.0 + c, 5.0), None, user, now=now)
            save_answer(item, "roi_background", roi(3.0, 2.0), None, user, now=now)
            if c == 0:
                save_answer(item, "comment", "motion at the end", None, user, now=now)
            submit_read(item, user, now=now + timedelta(seconds=42))
    for sc in cases[:-1]:
        ReferenceStandard.objects.create(
            study_case=sc,
            question="tear",
            value="present" if case_no[sc.pk] % 2 else "absent",
            source="consensus",
            entered_by=study.coordinator,
        )
    return study, arms, cases, readers, reader_no, case_no


def _close(study):
    close_study(study, study.coordinator, reason="reading complete")
    study.refresh_from_db()
    return study


def test_export_refused_before_close(closed_study):
    study = closed_study[0]
    with pytest.raises(StudyError, match="closed"):
        tidy_reads(study)
    with pytest.raises(StudyError, match="closed"):
        tidy_csv(study)


def test_rows_columns_and_values_match_the_answers(closed_study):
    study, arms, cases, readers, reader_no, case_no = closed_study
    _close(study)
    df = tidy_reads(study)
    assert tuple(df.columns) == COLUMNS
    items = ReadItem.objects.filter(session__study=study)
    n_reads = items.count()
    assert n_reads == 2 * (6 * 2 + 6)  # 12 first reads + 6 repeats per reader
    per_read = 6  # six required questions; the comment only on case 0
    n_comment = items.filter(study_case=cases[0]).count()
    assert len(df) == n_reads * per_read + n_comment
    order = list(StudyReader.objects.filter(study=study).order_by("pk"))
    pseudonym = {sr.reader_id: f"R{i}" for i, sr in enumerate(order, start=1)}
    assert set(df["reader_id"]) == {"R1", "R2"}
    for item in items.select_related("arm__protocol", "study_case__case", "session"):
        rows = df[
            (df["reader_id"] == pseudonym[item.reader_id])
            & (df["case_id"] == str(item.study_case_id))
            & (df["modality_id"] == item.arm.label)
            & (df["read_index"] == item.read_index + 1)
        ]
        r, c = reader_no[item.reader_id], case_no[item.study_case_id]
        by_q = rows.set_index("question")
        assert by_q.loc["quality", "value"] == quality(r, c, item.arm.label)
        assert by_q.loc["quality", "value_numeric"] == quality(r, c, item.arm.label)
        assert by_q.loc["tear", "value"] == tear(r, c)
        assert by_q.loc["tear", "value_numeric"] == (1.0 if tear(r, c) == "present" else 0.0)
        assert by_q.loc["tear", "confidence"] == 1 + c % 5
        assert by_q.loc["cartilage", "value"] == GRADES[c % 3]
        assert by_q.loc["cartilage", "value_numeric"] == c % 3
        assert by_q.loc["thickness", "value"] == pytest.approx(2.0 + c / 10)
        assert by_q.loc["roi_muscle", "value_numeric"] == 100.0 + c
        assert json.loads(by_q.loc["roi_muscle", "value"])["sd"] == 5.0
        first = by_q.iloc[0]
        assert first["patient_id"] == item.study_case.case.subject_code
        assert first["session"] == item.session.index + 1
        assert first["read_kind"] == item.kind
        assert first["arm_protocol"] == (f"{item.arm.protocol.name} v{item.arm.protocol.version}")
        assert first["time_on_case_s"] == pytest.approx(42.0)
        if c == len(cases) - 1:
            assert pd.isna(by_q.loc["tear", "truth"])
        else:
            expected = "present" if c % 2 else "absent"
            assert by_q.loc["tear", "truth"] == expected
            assert by_q.loc["tear", "truth_numeric"] == (1.0 if c % 2 else 0.0)
        assert pd.isna(by_q.loc["quality", "truth"])
    assert set(df["read_index"]) == {1, 2}
    # ordered by reader, session, reading order, then the form's question order
    r1 = df[df["reader_id"] == "R1"]
    assert r1["session"].is_monotonic_increasing
    first_read = r1.head(6)
    assert first_read["case_id"].nunique() == 1
    assert list(first_read["question"]) == [
        "quality",
        "tear",
        "cartilage",
        "thickness",
        "roi_muscle",
        "roi_background",
    ]


def test_unsubmitted_reads_are_not_exported(closed_study):
    study, arms, cases, readers, *_ = closed_study
    item = ReadItem.objects.filter(session__study=study).first()
    ReadItem.objects.filter(pk=item.pk).update(submitted_at=None)
    _close(study)
    df = tidy_reads(study)
    assert not (
        (df["case_id"] == str(item.study_case_id))
        & (df["modality_id"] == item.arm.label)
        & (df["session"] == item.session.index + 1)
        & (df["reader_id"] == "R1" if item.reader_id == readers[0].pk else df["reader_id"] == "R2")
    ).any()


def test_csv_round_trips_through_the_report_loader(closed_study):
    from studies import report

    study = _close(closed_study[0])
    text = tidy_csv(study)
    assert text.splitlines()[0] == ",".join(COLUMNS)
    loaded = report.load_reads(io.StringIO(text))
    df = tidy_reads(study)
    assert len(loaded) == len(df)
    assert list(loaded["value_numeric"].fillna(-1)) == list(df["value_numeric"].fillna(-1))
    assert "motion at the end" in set(loaded["value"])


def test_analysis_tables_feed_the_statistics(closed_study):
    study = _close(closed_study[0])
    likert = analysis_table(study, "quality")
    assert list(likert.columns[:5]) == [
        "reader_id",
        "case_id",
        "patient_id",
        "modality_id",
        "value",
    ]
    assert len(likert) == 2 * 6 * 2 and (likert["read_index"] == 1).all()
    result = sa.likert_comparison(likert, "A", "B", n_boot=200, seed=1)
    assert [e.details["reader_id"] for e in result.per_reader] == ["R1", "R2"]
    assert np.isfinite(result.pooled.p_value)
    wide = likert.pivot_table(index=["reader_id", "case_id"], columns="modality_id", values="value")
    expected_diff = [quality(r, c, "B") - quality(r, c, "A") for r in (1, 2) for c in range(6)]
    assert sorted(wide["B"] - wide["A"]) == sorted(expected_diff)
    # Cohen's kappa of the two readers on arm A equals the kappa of the raw labels
    tears = analysis_table(study, "tear")
    arm_a = tears[tears["modality_id"] == "A"].pivot(
        index="case_id", columns="reader_id", values="value"
    )
    kappa = sa.cohen_kappa(arm_a["R1"], arm_a["R2"], [0.0, 1.0])
    expected = sa.cohen_kappa(
        [tear(1, c) for c in range(6)], [tear(2, c) for c in range(6)], ["absent", "present"]
    )
    assert kappa.estimate == pytest.approx(expected.estimate)
    # accuracy on the cases with truth
    with_truth = tears.dropna(subset=["truth"])
    accuracy = sa.diagnostic_accuracy(with_truth, n_boot=200)
    assert accuracy.to_dict()["method"]
    mrmc = sa.mrmc_or(with_truth, rating="rating")
    assert mrmc.to_dict()["method"]
    signed = with_truth["rating"] == np.where(
        with_truth["value"] == 1, 5 + with_truth["confidence"], 6 - with_truth["confidence"]
    )
    assert signed.all()
    graded = analysis_table(study, "cartilage", binary=True)
    assert set(graded["value"]) == {0.0, 1.0}
    repeats = analysis_table(study, "quality", repeats=True)
    assert set(repeats["read_index"]) == {1, 2}
    with pytest.raises(StudyError, match="no submitted reads"):
        analysis_table(study, "nonexistent")
