"""Answer validation per question kind, required questions, locking and templates."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError

from studies.models import Answer, Question, ReadingSession, ReadItem, ReferenceStandard
from studies.question_templates import TEMPLATES, apply_template, template_choices
from studies.questions import (
    ensure_editable,
    missing_required,
    questions_for,
    validate_answer,
)
from studies.services import StudyError, open_study, save_answer, submit_read
from tests.factories import QuestionFactory
from tests.studies.conftest import T0

pytestmark = pytest.mark.django_db

VIEWER_ROI = {
    "uid": "m-1",
    "type": "ellipse",
    "viewport": 0,
    "slice_index": 5,
    "points": [[64.0, 52.0], [64.0, 76.0], [48.0, 64.0], [80.0, 64.0]],
    "mean": 1101.3,
    "sd": 49.6,
    "pixel_count": 1192,
    "area_mm2": 150.8,
    "length_mm": None,
}


def q(kind, **kw):
    return Question(kind=kind, key=kw.pop("key", kind), label=kw.pop("label", kind.title()), **kw)


def test_likert_within_configured_scale():
    likert = q("likert", scale_min=1, scale_max=4)
    assert validate_answer(likert, 4) == (4, None)
    assert validate_answer(likert, "3") == (3, None)
    assert validate_answer(likert, 2.0) == (2, None)
    for bad in (0, 5, 2.5, "good", True, [3]):
        with pytest.raises(ValidationError):
            validate_answer(likert, bad)
    with pytest.raises(ValidationError, match="between 1 and 4"):
        validate_answer(likert, 5)


def test_finding_choice_and_confidence_for_roc(build_study):
    finding = q("finding", choices=["absent", "present"], with_confidence=True)
    assert validate_answer(finding, "present", 4) == ("present", 4)
    assert validate_answer(finding, "Present", "5") == ("present", 5)
    with pytest.raises(ValidationError, match="not one of absent, present"):
        validate_answer(finding, "maybe", 3)
    for bad in (0, 6, "high"):
        with pytest.raises(ValidationError, match="confidence"):
            validate_answer(finding, "absent", bad)
    # A reader's answer needs the ROC confidence; a reference value does not carry one.
    item = ReadItem(second_arm_id=None)
    with pytest.raises(ValidationError, match="confidence"):
        validate_answer(finding, "absent", None, item=item)
    assert validate_answer(finding, "absent") == ("absent", None)
    graded = q(
        "finding",
        choices=[["0", "none"], ["1", "partial thickness"], ["2", "full thickness"]],
    )
    assert validate_answer(graded, "full thickness") == ("2", None)
    assert validate_answer(graded, "1") == ("1", None)


def test_number_text_choice_preference():
    number = q("number", unit="mm")
    assert validate_answer(number, "2.5") == (2.5, None)
    for bad in ("nan", "inf", float("nan"), "thick", True, [2.5]):
        with pytest.raises(ValidationError):
            validate_answer(number, bad)
    text = q("text")
    assert validate_answer(text, "  small effusion ") == ("small effusion", None)
    with pytest.raises(ValidationError, match="5000 characters"):
        validate_answer(text, "x" * 5001)
    with pytest.raises(ValidationError, match="text"):
        validate_answer(text, 12)
    choice = q("choice", choices=["T1", "PD", "T2"])
    assert validate_answer(choice, "pd") == ("PD", None)
    with pytest.raises(ValidationError):
        validate_answer(choice, "FLAIR")
    pref = q("preference")
    assert validate_answer(pref, "Left") == ("left", None)
    with pytest.raises(ValidationError):
        validate_answer(pref, "both")
    with pytest.raises(ValidationError, match="side-by-side"):
        validate_answer(pref, "left", item=ReadItem(second_arm_id=None))
    assert validate_answer(pref, "equal", item=ReadItem(second_arm_id=7)) == ("equal", None)


def test_none_clears_any_answer():
    for kind in ("likert", "finding", "number", "text", "choice", "roi", "preference"):
        assert validate_answer(q(kind, choices=["a"]), None, 3) == (None, None)


def test_roi_from_viewer_measurement_json():
    roi = q("roi")
    value, conf = validate_answer(roi, VIEWER_ROI)
    assert conf is None
    assert value["shape"] == "ellipse"
    assert (value["mean"], value["sd"], value["area_mm2"]) == (1101.3, 49.6, 150.8)
    assert value["pixel_count"] == 1192 and value["slice_index"] == 5
    assert "length_mm" not in value
    no_spacing = {**VIEWER_ROI, "area_mm2": None}
    assert validate_answer(roi, no_spacing)[0]["area_mm2"] is None
    bad_values = [
        {**VIEWER_ROI, "type": "length"},
        {**VIEWER_ROI, "mean": "nan"},
        {**VIEWER_ROI, "sd": -1},
        {k: v for k, v in VIEWER_ROI.items() if k != "sd"},
        {**VIEWER_ROI, "area_mm2": None, "pixel_count": 0},
        {**VIEWER_ROI, "points": [[1, 2, 3]]},
        1101.3,
        "ellipse",
    ]
    for bad in bad_values:
        with pytest.raises(ValidationError):
            validate_answer(roi, bad)


@pytest.fixture
def paired_study(build_study):
    study, arms, cases, readers = build_study(n_cases=2, n_arms=2, n_readers=1, paired_reads=True)
    QuestionFactory(study=study, key="quality", kind="likert", order=0)
    QuestionFactory(
        study=study,
        key="tear",
        kind="finding",
        choices=["absent", "present"],
        with_confidence=True,
        order=1,
    )
    QuestionFactory(study=study, key="comment", kind="text", required=False, order=2)
    QuestionFactory(study=study, key="prefer", kind="preference", order=3)
    open_study(study, study.coordinator, now=T0)
    return study, readers[0]


def test_questions_for_independent_and_paired_reads(paired_study):
    study, reader = paired_study
    single = ReadItem.objects.filter(session__study=study, second_arm__isnull=True).first()
    paired = ReadItem.objects.filter(session__study=study, second_arm__isnull=False).first()
    assert [x.key for x in questions_for(single)] == ["quality", "tear", "comment"]
    assert [x.key for x in questions_for(paired)] == ["prefer"]
    assert [x.key for x in missing_required(single)] == ["quality", "tear"]


def test_save_answer_validates_and_submit_needs_required(paired_study):
    study, reader = paired_study
    item = ReadItem.objects.filter(session__study=study, session__index=0).first()
    with pytest.raises(ValidationError, match="no question"):
        save_answer(item, "nonexistent", 3, None, reader, now=T0)
    with pytest.raises(ValidationError, match="no question"):
        save_answer(item, "prefer", "left", None, reader, now=T0)
    with pytest.raises(ValidationError, match="between 1 and 5"):
        save_answer(item, "quality", 9, None, reader, now=T0)
    with pytest.raises(ValidationError, match="confidence"):
        save_answer(item, "tear", "present", None, reader, now=T0)
    assert not Answer.objects.filter(read_item=item).exists()
    save_answer(item, "quality", "4", None, reader, now=T0)
    assert Answer.objects.get(read_item=item, question="quality").value == 4
    with pytest.raises(StudyError, match="Tear"):
        submit_read(item, reader, now=T0 + timedelta(seconds=30))
    item.refresh_from_db()
    assert item.submitted_at is None
    save_answer(item, "tear", "present", 5, reader, now=T0)
    save_answer(item, "quality", None, None, reader, now=T0)  # clearing
    with pytest.raises(StudyError, match="Quality"):
        submit_read(item, reader, now=T0 + timedelta(seconds=30))
    save_answer(item, "quality", 3, None, reader, now=T0)
    submitted = submit_read(item, reader, now=T0 + timedelta(seconds=30))
    assert submitted.submitted_at is not None


def test_paired_read_asks_preference_only(paired_study):
    study, reader = paired_study
    paired = ReadItem.objects.filter(session__study=study, second_arm__isnull=False).first()
    session = paired.session
    ReadingSession.objects.filter(pk=session.pk).update(available_from=T0)
    with pytest.raises(ValidationError, match="no question"):
        save_answer(paired, "quality", 3, None, reader, now=T0)
    with pytest.raises(StudyError, match="Prefer"):
        submit_read(paired, reader, now=T0)
    save_answer(paired, "prefer", "right", None, reader, now=T0)
    assert submit_read(paired, reader, now=T0).submitted_at is not None


def test_question_locks_once_answered(paired_study):
    study, reader = paired_study
    quality = Question.objects.get(study=study, key="quality")
    comment = Question.objects.get(study=study, key="comment")
    quality.label = "Overall image quality"
    quality.save()  # no answers yet: editable
    item = ReadItem.objects.filter(session__study=study, session__index=0).first()
    save_answer(item, "quality", 4, None, reader, now=T0)
    quality.scale_max = 10
    with pytest.raises(ValidationError, match="locked"):
        quality.save()
    with pytest.raises(ValidationError, match="locked"):
        quality.delete()
    with pytest.raises(ValidationError, match="locked"):
        ensure_editable(quality)
    assert Question.objects.get(pk=quality.pk).scale_max == 5
    comment.label = "Remarks"
    comment.save()  # an unanswered question of the same study stays editable
    comment.delete()
    assert not Question.objects.filter(key="comment").exists()


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_templates_apply_idempotently_with_valid_questions(build_study, name):
    study, *_ = build_study(n_cases=1, n_arms=2, n_readers=1)
    created = apply_template(study, name)
    keys = list(study.questions.values_list("key", flat=True))
    assert len(created) == len(keys) == len(set(keys)) >= 15
    assert apply_template(study, name) == []  # idempotent by key
    assert study.questions.count() == len(keys)
    kinds = set(study.questions.values_list("kind", flat=True))
    assert {"likert", "finding", "roi", "number"} <= kinds
    for question in study.questions.all():
        question.full_clean()
        if question.kind == "likert":
            lo, hi = question.scale_min, question.scale_max
            assert set(question.anchors) == {str(v) for v in range(lo, hi + 1)}
            assert validate_answer(question, hi) == (hi, None)
        if question.kind == "finding":
            assert question.with_confidence and len(question.choices) >= 2
            assert validate_answer(question, question.choices[-1], 3)[0] == question.choices[-1]
    rois = study.questions.filter(kind="roi")
    assert rois.filter(structure="background").exists()
    assert rois.exclude(structure="background").exists()
    assert any(c[0] == name for c in template_choices())


def test_template_only_on_draft_study(open_study_):
    study, *_ = open_study_
    with pytest.raises(StudyError, match="draft"):
        apply_template(study, "knee")
    assert not study.questions.exists()


def test_unknown_template_refused(build_study):
    study, *_ = build_study(n_cases=1, n_arms=1, n_readers=1)
    with pytest.raises(ValidationError, match="no template"):
        apply_template(study, "elbow")


def test_question_locks_once_a_reference_value_exists(paired_study):
    study, _ = paired_study
    tear = Question.objects.get(study=study, key="tear")
    ReferenceStandard.objects.create(
        study_case=study.study_cases.first(),
        question="tear",
        value="present",
        source="consensus",
        entered_by=study.coordinator,
    )
    tear.choices = ["no", "yes"]
    with pytest.raises(ValidationError, match="reference"):
        tear.save()
    assert Question.objects.get(pk=tear.pk).choices == ["absent", "present"]


@pytest.mark.parametrize("bad", ["²", "٣", "9" * 5000, "1" * 10, "+-1", " "])
def test_whole_numbers_refuse_unicode_digits_and_huge_strings(bad):
    """Strings that ``str.isdigit`` accepts but ``int`` cannot parse, or absurdly long ones,
    give a ValidationError (400), never a ValueError (500)."""
    with pytest.raises(ValidationError, match="whole number"):
        validate_answer(q("likert", scale_min=1, scale_max=5), bad)
    with pytest.raises(ValidationError, match="whole number"):
        validate_answer(q("finding", choices=["absent"], with_confidence=True), "absent", bad)


@pytest.mark.parametrize(
    ("question", "value"),
    [
        (q("text"), "left\x00knee"),
        (q("choice", choices=["a\x00", "b"]), "a\x00"),
        (q("preference"), "equal\x00"),
        (q("roi"), {**VIEWER_ROI, "uid": "m\x00-1"}),
        (q("roi"), {**VIEWER_ROI, "note\x00": 1}),
        (q("roi"), {**VIEWER_ROI, "points": [[1.0, 2.0], ["3\x00", 4.0]]}),
    ],
)
def test_nul_characters_are_refused_anywhere_in_a_value(question, value):
    """PostgreSQL jsonb cannot store U+0000: refused up front with a clear message."""
    with pytest.raises(ValidationError, match="NUL"):
        validate_answer(question, value)
