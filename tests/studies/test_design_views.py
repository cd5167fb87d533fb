"""The coordinator's design pages: create, edit, arms/cases/readers/panel/questions, open,
progress (counts, never answers), early release and closing, each audited; validation
errors come back as messages and nothing stored is lost."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from guardian.shortcuts import get_perms

from mriplatform.audit.models import AuditEvent
from mriplatform.audit.services import history
from studies.models import (
    Answer,
    Arm,
    Question,
    ReadingSession,
    ReadItem,
    Study,
    StudyCase,
    StudyReader,
)
from studies.services import save_answer, submit_read
from tests.factories import (
    ArmFactory,
    CaseFactory,
    ProtocolFactory,
    ReconJobFactory,
    SeriesFactory,
    StudyFactory,
    UserFactory,
)


def _client(user, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def _actions(study: Study) -> list[str]:
    return list(history(study).values_list("action", flat=True))


@pytest.fixture
def coordinator(make_user):
    return make_user("coordinator")


@pytest.fixture
def draft(coordinator):
    return StudyFactory(coordinator=coordinator, title="Knee CS vs DL")


def test_create_study_sets_institution_and_audits(coordinator):
    client = _client(coordinator)
    assert client.get(reverse("studies:create")).status_code == 200
    response = client.post(
        reverse("studies:create"),
        {
            "title": "Knee trial",
            "washout_days": 21,
            "paired_reads": "on",
            "repeat_fraction": "0.2",
            "repeat_washout_days": 14,
            "template": "",
        },
    )
    study = Study.objects.get(title="Knee trial")
    assert response.status_code == 302 and response["Location"] == reverse(
        "studies:detail", args=[study.pk]
    )
    assert study.coordinator == coordinator
    assert study.institution == coordinator.institution
    assert study.status == Study.Status.DRAFT
    assert (study.washout_days, study.paired_reads, study.repeat_fraction) == (21, True, 0.2)
    event = history(study).get(action="study.create")
    assert event.actor == coordinator
    assert event.changes["washout_days"] == [None, 21]


def test_create_with_template_adds_its_questions(coordinator):
    from studies.question_templates import template_choices

    name = list(template_choices())[0][0]
    _client(coordinator).post(
        reverse("studies:create"),
        {
            "title": "Templated",
            "washout_days": 28,
            "repeat_fraction": "0",
            "repeat_washout_days": 28,
            "template": name,
        },
    )
    study = Study.objects.get(title="Templated")
    assert study.questions.count() > 0
    assert "study.apply_template" in _actions(study)


@pytest.mark.parametrize(
    "field,value,error",
    [
        ("repeat_fraction", "1.5", "between 0 and 1"),
        ("washout_days", "-3", ""),
        ("title", "", "required"),
        ("window_presets", '{"T3": [{"name": "x", "width": 9, "center": 4}]}', "unknown sequence"),
        ("window_presets", '{"PD": [{"name": "x", "width": 0, "center": 4}]}', "width must be"),
        ("window_presets", "not json", ""),
    ],
)
def test_create_refuses_bad_input_and_stores_nothing(coordinator, field, value, error):
    data = {"title": "Bad", "washout_days": 28, "repeat_fraction": "0", "repeat_washout_days": 28}
    data[field] = value
    response = _client(coordinator).post(reverse("studies:create"), data)
    assert response.status_code == 200
    assert response.context["form"].errors[field]
    assert error in " ".join(response.context["form"].errors[field])
    assert not Study.objects.exists()


def test_window_presets_are_saved_per_sequence_type(draft, coordinator):
    presets = {"PD": [{"name": "Cartilage", "width": 1800, "center": 1100}]}
    response = _client(coordinator).post(
        reverse("studies:edit", args=[draft.pk]),
        {
            "title": draft.title,
            "washout_days": 28,
            "repeat_fraction": "0",
            "repeat_washout_days": 28,
            "window_presets": json.dumps(presets),
        },
    )
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.window_presets == presets


def test_edit_settings_audits_old_and_new(draft, coordinator):
    response = _client(coordinator).post(
        reverse("studies:edit", args=[draft.pk]),
        {
            "title": draft.title,
            "washout_days": 7,
            "repeat_fraction": "0.1",
            "repeat_washout_days": 28,
        },
    )
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.washout_days == 7 and draft.repeat_fraction == 0.1
    event = history(draft).get(action="study.update")
    assert event.changes == {"washout_days": [28, 7], "repeat_fraction": [0.0, 0.1]}


def test_arms_cases_readers_and_panel_through_the_page(draft, coordinator, make_user):
    client = _client(coordinator)
    p1, p2 = ProtocolFactory(name="CS R4"), ProtocolFactory(name="DL R4")
    detail = reverse("studies:detail", args=[draft.pk])
    page = client.get(detail)
    assert page.context["arm_form"].initial["label"] == "A"

    client.post(
        reverse("studies:arm-add", args=[draft.pk]),
        {"protocol": p1.pk, "label": "A", "reference": "on"},
    )
    client.post(reverse("studies:arm-add", args=[draft.pk]), {"protocol": p2.pk, "label": "B"})
    draft.refresh_from_db()
    a, b = draft.arms.order_by("label")
    assert (a.protocol, b.protocol, draft.reference_arm) == (p1, p2, a)
    # same label twice: refused with a message, nothing stored
    response = client.post(
        reverse("studies:arm-add", args=[draft.pk]),
        {"protocol": ProtocolFactory().pk, "label": "B"},
        follow=True,
    )
    assert any("already exists" in m for m in _messages(response))
    assert draft.arms.count() == 2

    case = CaseFactory(subject_code="KNEE-01")
    raw = SeriesFactory(case=case)
    client.post(reverse("studies:case-add", args=[draft.pk]), {"case": case.pk})
    sc = StudyCase.objects.get(study=draft)
    assert sc.case == case and sc.raw_series is None
    # a case with two raw series needs the chosen one
    twice = CaseFactory(subject_code="KNEE-02")
    SeriesFactory(case=twice)
    second_raw = SeriesFactory(case=twice)
    response = client.post(
        reverse("studies:case-add", args=[draft.pk]), {"case": twice.pk}, follow=True
    )
    assert any("2 raw series" in m for m in _messages(response))
    client.post(
        reverse("studies:case-add", args=[draft.pk]),
        {"case": twice.pk, "raw_series": second_raw.pk},
    )
    assert draft.study_cases.get(case=twice).raw_series == second_raw

    reader = make_user("reader")
    client.post(reverse("studies:reader-add", args=[draft.pk]), {"reader": reader.pk})
    assert StudyReader.objects.filter(study=draft, reader=reader).exists()
    assert "read_study" in get_perms(reader, draft)
    # a statistician is not offered as a reader
    statistician = make_user("statistician")
    response = client.post(
        reverse("studies:reader-add", args=[draft.pk]), {"reader": statistician.pk}, follow=True
    )
    assert _messages(response) and not StudyReader.objects.filter(reader=statistician).exists()

    panel = make_user("reader")
    client.post(
        reverse("studies:panel-add", args=[draft.pk]), {"member": panel.pk, "part": "reference"}
    )
    client.post(
        reverse("studies:panel-add", args=[draft.pk]), {"member": panel.pk, "part": "adjudicator"}
    )
    assert {"reference_study", "adjudicate_study"} <= set(get_perms(panel, draft))
    client.post(reverse("studies:panel-remove", args=[draft.pk, panel.pk, "adjudicator"]))
    assert "adjudicate_study" not in get_perms(panel, draft)

    page = client.get(detail)
    # missing reconstructions are listed, per (case, arm)
    assert ("KNEE-01", "A") in page.context["missing"]
    ReconJobFactory(input_series=raw, protocol=p1)
    assert ("KNEE-01", "A") not in client.get(detail).context["missing"]

    client.post(reverse("studies:reader-remove", args=[draft.pk, reader.pk]))
    assert not StudyReader.objects.filter(study=draft, reader=reader).exists()
    assert "read_study" not in get_perms(reader, draft)
    client.post(reverse("studies:arm-remove", args=[draft.pk, a.pk]))
    draft.refresh_from_db()
    assert draft.reference_arm is None and list(draft.arms.all()) == [b]
    client.post(reverse("studies:case-remove", args=[draft.pk, sc.pk]))
    assert not draft.study_cases.filter(case=case).exists()

    actions = _actions(draft)
    for action in (
        "study.add_arm",
        "study.set_reference_arm",
        "study.add_case",
        "study.add_reader",
        "study.grant_panel",
        "study.revoke_panel",
        "study.remove_reader",
        "study.remove_arm",
        "study.remove_case",
    ):
        assert action in actions, action
    removed = history(draft).filter(action="study.remove_arm").first()
    assert removed.changes == {"arm A": [f"{p1.name} v1", None]}


def test_questions_add_edit_validate_delete(draft, coordinator):
    client = _client(coordinator)
    url = reverse("studies:question-add", args=[draft.pk])
    assert client.get(url).status_code == 200
    bad = client.post(
        url,
        {
            "key": "quality",
            "order": 1,
            "kind": "likert",
            "label": "Quality",
            "scale_min": 5,
            "scale_max": 1,
            "anchors": "{}",
            "choices": "[]",
        },
    )
    assert bad.status_code == 200 and "scale_max" in bad.context["form"].errors
    assert not draft.questions.exists()
    client.post(
        url,
        {
            "key": "quality",
            "order": 1,
            "kind": "likert",
            "label": "Quality",
            "scale_min": 1,
            "scale_max": 5,
            "anchors": '{"1": "non-diagnostic"}',
            "choices": "[]",
            "required": "on",
        },
    )
    question = draft.questions.get(key="quality")
    assert question.anchors == {"1": "non-diagnostic"}
    finding = client.post(
        url,
        {
            "key": "tear",
            "order": 2,
            "kind": "finding",
            "label": "Tear",
            "anchors": "{}",
            "choices": '["absent"]',
        },
    )
    assert "choices" in finding.context["form"].errors
    duplicate = client.post(
        url,
        {
            "key": "quality",
            "order": 3,
            "kind": "text",
            "label": "x",
            "anchors": "{}",
            "choices": "[]",
        },
    )
    assert "key" in duplicate.context["form"].errors

    client.post(
        reverse("studies:question-edit", args=[draft.pk, question.pk]),
        {
            "key": "quality",
            "order": 1,
            "kind": "likert",
            "label": "Overall quality",
            "scale_min": 1,
            "scale_max": 4,
            "anchors": "{}",
            "choices": "[]",
            "required": "on",
        },
    )
    question.refresh_from_db()
    assert (question.label, question.scale_max) == ("Overall quality", 4)
    change = history(draft).get(action="study.change_question")
    assert change.changes["label"] == ["Quality", "Overall quality"]
    assert change.changes["scale_max"] == [5, 4]
    client.post(reverse("studies:question-delete", args=[draft.pk, question.pk]))
    assert not draft.questions.exists()
    assert "study.delete_question" in _actions(draft)


def test_design_is_frozen_once_open(open_study_):
    study, arms, cases, readers = open_study_
    client = _client(study.coordinator)
    arm_count = study.arms.count()
    response = client.post(
        reverse("studies:arm-add", args=[study.pk]),
        {"protocol": ProtocolFactory().pk, "label": "Z"},
        follow=True,
    )
    assert any("draft" in m for m in _messages(response))
    assert study.arms.count() == arm_count
    client.post(reverse("studies:arm-remove", args=[study.pk, arms[0].pk]))
    client.post(reverse("studies:case-remove", args=[study.pk, cases[0].pk]))
    client.post(reverse("studies:reader-remove", args=[study.pk, readers[0].pk]))
    assert Arm.objects.filter(pk=arms[0].pk).exists()
    assert StudyCase.objects.filter(pk=cases[0].pk).exists()
    assert StudyReader.objects.filter(study=study, reader=readers[0]).exists()
    assert client.get(reverse("studies:edit", args=[study.pk])).status_code == 302


def test_open_shows_refusal_then_opens(build_study):
    study, arms, cases, readers = build_study(n_cases=2, n_arms=2, n_readers=1, reconstruct=False)
    client = _client(study.coordinator)
    response = client.post(reverse("studies:open", args=[study.pk]), follow=True)
    assert any("missing finished reconstructions" in m for m in _messages(response))
    study.refresh_from_db()
    assert study.status == Study.Status.DRAFT and not ReadingSession.objects.exists()
    for sc in cases:
        raw = SeriesFactory(case=sc.case)
        for arm in arms:
            ReconJobFactory(input_series=raw, protocol=arm.protocol)
    response = client.post(reverse("studies:open", args=[study.pk]), follow=True)
    study.refresh_from_db()
    assert study.status == Study.Status.OPEN
    assert "study.open" in _actions(study)
    assert "progress" in response.context


def _answer_everything(study, value=4):
    """Every first-session read of every reader answered with ``value`` and submitted."""
    Question.objects.get_or_create(
        study=study,
        key="quality",
        defaults={"kind": "likert", "label": "Quality", "scale_min": 1, "scale_max": 5},
    )
    items = ReadItem.objects.filter(session__study=study, session__index=0)
    for item in items:
        save_answer(item, "quality", value, None, item.reader)
        submit_read(item, item.reader)
    return items


def test_progress_shows_counts_never_answers(open_study_):
    study, arms, cases, readers = open_study_
    Question.objects.create(
        study=study, key="comment", kind="text", label="Comment", required=False
    )
    item = ReadItem.objects.filter(session__study=study, session__index=0).first()
    secret = "tear-visible-zebra-42"
    save_answer(item, "comment", secret, None, item.reader)
    _answer_everything(study, value=4)
    response = _client(study.coordinator).get(reverse("studies:detail", args=[study.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert secret not in html
    assert Answer.objects.filter(value=secret).exists()
    per_reader = 4  # 4 cases in the first session
    rows = [r for r in response.context["progress"] if r["session"] == 1]
    assert [r["submitted"] for r in rows] == [per_reader, per_reader]
    assert response.context["submitted"] == 2 * per_reader
    assert "arm" not in " ".join(str(r) for r in rows).lower()
    listing = _client(study.coordinator).get(reverse("studies:list")).content.decode()
    assert f"{2 * per_reader} / {response.context['total']}" in listing
    assert secret not in listing


def test_release_needs_a_reason_and_is_audited(open_study_):
    study, arms, cases, readers = open_study_
    client = _client(study.coordinator)
    waiting = ReadingSession.objects.get(study=study, reader=readers[0], index=1)
    url = reverse("studies:session-release", args=[study.pk, waiting.pk])
    response = client.post(url, {"reason": "  "}, follow=True)
    assert any("reason" in m for m in _messages(response))
    waiting.refresh_from_db()
    assert waiting.available_from is None
    before = timezone.now()
    client.post(url, {"reason": "reader travels next month"})
    waiting.refresh_from_db()
    assert waiting.available_from >= before - timedelta(seconds=1)
    assert waiting.released_by == study.coordinator
    event = AuditEvent.objects.get(action="study.release_session")
    assert event.details["reason"] == "reader travels next month"
    assert event.actor == study.coordinator


def test_close_needs_reason_then_unblinds_with_export_link(open_study_):
    study, arms, cases, readers = open_study_
    client = _client(study.coordinator)
    response = client.post(reverse("studies:close", args=[study.pk]), {"reason": ""}, follow=True)
    assert any("reason" in m for m in _messages(response))
    study.refresh_from_db()
    assert study.status == Study.Status.OPEN
    client.post(reverse("studies:close", args=[study.pk]), {"reason": "all reads in"})
    study.refresh_from_db()
    assert study.status == Study.Status.CLOSED and study.closed_by == study.coordinator
    event = history(study).get(action="study.close_for_analysis")
    assert event.details["reason"] == "all reads in"
    page = client.get(reverse("studies:detail", args=[study.pk])).content.decode()
    assert "all reads in" in page
    assert f"/api/studies/{study.pk}/reads.csv" in page
    assert arms[0].protocol.name in page  # unblinded after closing
    # a second close is refused with a message
    response = client.post(
        reverse("studies:close", args=[study.pk]), {"reason": "again"}, follow=True
    )
    assert any("not open" in m for m in _messages(response))


def test_other_coordinator_gets_404_and_list_is_own(draft, make_user):
    other = make_user("coordinator")
    client = _client(other)
    assert client.get(reverse("studies:detail", args=[draft.pk])).status_code == 404
    assert client.post(reverse("studies:open", args=[draft.pk])).status_code == 404
    assert draft.title not in client.get(reverse("studies:list")).content.decode()


def test_posts_need_csrf(draft, coordinator):
    client = _client(coordinator, csrf=True)
    response = client.post(reverse("studies:close", args=[draft.pk]), {"reason": "x"})
    assert response.status_code == 403
    response = client.post(
        reverse("studies:create"),
        {"title": "x", "washout_days": 1, "repeat_fraction": "0", "repeat_washout_days": 1},
    )
    assert response.status_code == 403 and not Study.objects.filter(title="x").exists()


def test_get_on_post_only_endpoints_is_405(draft, coordinator):
    response = _client(coordinator).get(reverse("studies:open", args=[draft.pk]))
    assert response.status_code == 405
    assert draft.arms.count() == 0 and ArmFactory._meta.model.objects.count() == 0


def test_reader_cannot_be_panel_without_reader_role(draft, coordinator, make_user):
    outsider = UserFactory(roles=("statistician",))
    response = _client(coordinator).post(
        reverse("studies:panel-add", args=[draft.pk]),
        {"member": outsider.pk, "part": "reference"},
        follow=True,
    )
    assert _messages(response)
    assert "reference_study" not in get_perms(outsider, draft)


@pytest.mark.parametrize(
    ("roles", "superuser", "refusal"),
    [
        (("reader", "coordinator"), False, "also a coordinator"),
        (("reader", "site_admin"), False, "also a site administrator"),
        (("reader", "statistician"), False, "also a statistician"),
        (("reader",), True, "superuser"),
    ],
)
def test_reader_holding_another_role_is_refused(draft, coordinator, roles, superuser, refusal):
    """Blinding: coordinators and site admins see every case, job and protocol,
    statisticians the unblinded results; none of them may read."""
    user = UserFactory(roles=roles, is_superuser=superuser)
    response = _client(coordinator).post(
        reverse("studies:reader-add", args=[draft.pk]), {"reader": user.pk}, follow=True
    )
    assert any(refusal in m and "blinded" in m for m in _messages(response))
    assert not StudyReader.objects.filter(study=draft, reader=user).exists()
    assert superuser or "read_study" not in get_perms(user, draft)
    assert "study.add_reader" not in _actions(draft)


def test_study_coordinator_cannot_read_own_study(draft):
    from studies.services import StudyError, add_reader

    draft.coordinator.groups.add(*UserFactory(roles=("reader",)).groups.all())
    with pytest.raises(StudyError, match="coordinates this study"):
        add_reader(draft, draft.coordinator)
    assert not StudyReader.objects.filter(study=draft).exists()


def test_readers_and_reference_panel_are_kept_apart(draft, coordinator, make_user):
    client = _client(coordinator)
    reader, panel = make_user("reader"), make_user("reader")
    client.post(reverse("studies:reader-add", args=[draft.pk]), {"reader": reader.pk})
    assert StudyReader.objects.filter(study=draft, reader=reader).exists()
    for part in ("reference", "adjudicator"):
        response = client.post(
            reverse("studies:panel-add", args=[draft.pk]),
            {"member": reader.pk, "part": part},
            follow=True,
        )
        assert any("reads this study" in m for m in _messages(response))
    assert not {"reference_study", "adjudicate_study"} & set(get_perms(reader, draft))

    client.post(
        reverse("studies:panel-add", args=[draft.pk]), {"member": panel.pk, "part": "adjudicator"}
    )
    assert "adjudicate_study" in get_perms(panel, draft)
    response = client.post(
        reverse("studies:reader-add", args=[draft.pk]), {"reader": panel.pk}, follow=True
    )
    assert any("reference panel" in m for m in _messages(response))
    assert not StudyReader.objects.filter(study=draft, reader=panel).exists()
    assert "read_study" not in get_perms(panel, draft)
    # the same radiologist may read another study
    other = StudyFactory(coordinator=coordinator)
    client.post(reverse("studies:reader-add", args=[other.pk]), {"reader": panel.pk})
    assert StudyReader.objects.filter(study=other, reader=panel).exists()


def test_questions_change_only_while_draft(open_study_):
    study, arms, cases, readers = open_study_
    Question.objects.create(study=study, key="quality", kind="likert", label="Quality")
    question = study.questions.get(key="quality")
    before = list(study.questions.values())
    client = _client(study.coordinator)
    add = reverse("studies:question-add", args=[study.pk])
    edit = reverse("studies:question-edit", args=[study.pk, question.pk])
    data = {
        "key": "extra",
        "order": 9,
        "kind": "text",
        "label": "Extra",
        "anchors": "{}",
        "choices": "[]",
    }
    for url, posted in ((add, data), (edit, {**data, "key": "quality", "kind": "likert"})):
        assert client.get(url).status_code == 302
        response = client.post(url, posted, follow=True)
        assert any("only while the study is a draft" in m for m in _messages(response))
    response = client.post(
        reverse("studies:question-delete", args=[study.pk, question.pk]), follow=True
    )
    assert any("draft" in m for m in _messages(response))
    assert list(study.questions.values()) == before
    actions = _actions(study)
    assert not {"study.add_question", "study.change_question", "study.delete_question"} & set(
        actions
    )
    page = client.get(reverse("studies:detail", args=[study.pk])).content.decode()
    assert add not in page and edit not in page and 'id="questions-frozen"' in page


def test_reference_arm_with_a_bad_arm_is_a_message(draft, coordinator):
    arm = ArmFactory(study=draft, label="A")
    foreign = ArmFactory(study=StudyFactory(), label="A")
    client = _client(coordinator)
    url = reverse("studies:reference-arm", args=[draft.pk])
    for bad in ("abc", "1.5", "٣", "-1", str(foreign.pk), "99999999999999999999"):
        response = client.post(url, {"arm": bad}, follow=True)
        assert response.status_code == 200, bad
        assert any("Choose one of the study's arms" in m for m in _messages(response)), bad
    draft.refresh_from_db()
    assert draft.reference_arm is None
    client.post(url, {"arm": arm.pk})
    draft.refresh_from_db()
    assert draft.reference_arm == arm
    client.post(url, {"arm": ""})
    draft.refresh_from_db()
    assert draft.reference_arm is None


def test_design_page_warns_that_geometry_is_not_normalised(draft, coordinator):
    page = _client(coordinator).get(reverse("studies:detail", args=[draft.pk])).content.decode()
    assert 'id="geometry-caveat"' in page
    assert "matrix" in page and "pixel spacing" in page and "super-resolution" in page
