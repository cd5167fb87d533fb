"""Reference standard services: consensus, two panel reads with agreement or adjudication,
CSV import (all or nothing), blinding of readers and audit."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from guardian.shortcuts import assign_perm

from mriplatform.audit.models import AuditEvent
from studies import reference as ref
from studies.models import Question, ReferenceRead, ReferenceStandard
from studies.services import StudyError
from tests.factories import CaseFactory, InstitutionFactory, StudyCaseFactory, UserFactory


@pytest.fixture
def ref_study(build_study):
    """A 3-case study with a finding, a measurement and a Likert question, its reader, two
    panel members, a third member, an adjudicator and an unrelated coordinator."""
    study, arms, cases, readers = build_study(n_cases=3, n_arms=2, n_readers=1)
    Question.objects.create(
        study=study,
        key="tear",
        kind=Question.Kind.FINDING,
        label="Meniscal tear",
        choices=["absent", "present"],
        order=1,
    )
    Question.objects.create(
        study=study,
        key="thickness",
        kind=Question.Kind.NUMBER,
        label="Cartilage thickness",
        unit="mm",
        order=2,
    )
    Question.objects.create(
        study=study,
        key="quality",
        kind=Question.Kind.LIKERT,
        label="Overall quality",
        scale_min=1,
        scale_max=5,
        order=0,
    )
    panel = [UserFactory(roles=("reader",)) for _ in range(3)]
    for user in panel:
        assign_perm("studies.reference_study", user, study)
    adjudicator = UserFactory(roles=("reader",))
    assign_perm("studies.adjudicate_study", adjudicator, study)
    return {
        "study": study,
        "cases": cases,
        "reader": readers[0],
        "p1": panel[0],
        "p2": panel[1],
        "p3": panel[2],
        "adjudicator": adjudicator,
        "outsider": UserFactory(roles=("coordinator",)),
    }


def _events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_roles_per_user_and_readers_excluded(ref_study):
    s = ref_study
    study = s["study"]
    assert ref.reference_roles(study.coordinator, study) == {ref.COORDINATOR}
    assert ref.reference_roles(s["p1"], study) == {ref.PANEL}
    assert ref.reference_roles(s["adjudicator"], study) == {ref.ADJUDICATOR}
    assert ref.reference_roles(s["outsider"], study) == frozenset()
    # A reader of the study given the panel permission by mistake still gets nothing.
    assign_perm("studies.reference_study", s["reader"], study)
    assert ref.reference_roles(s["reader"], study) == frozenset()
    with pytest.raises(StudyError):
        ref.enter_reference_read(s["cases"][0], "tear", "present", s["reader"])
    with pytest.raises(StudyError):
        ref.reference_status(study, viewer=s["reader"])
    assert not ReferenceRead.objects.exists()


def test_only_findings_and_measurements_take_a_reference(ref_study):
    s = ref_study
    assert [q.key for q in ref.reference_questions(s["study"])] == ["tear", "thickness"]
    with pytest.raises(ValidationError, match="only findings and measurements"):
        ref.enter_consensus(s["cases"][0], "quality", 4, s["study"].coordinator)
    with pytest.raises(ValidationError, match="no question"):
        ref.enter_consensus(s["cases"][0], "nope", 4, s["study"].coordinator)


def test_two_agreeing_reads_make_the_final_value(ref_study):
    s = ref_study
    case = s["cases"][0]
    ref.enter_reference_read(case, "tear", "present", s["p1"])
    assert not ReferenceStandard.objects.exists()
    ref.enter_reference_read(case, "tear", "present", s["p2"])
    truth = ReferenceStandard.objects.get(study_case=case, question="tear")
    assert truth.value == "present"
    assert truth.source == ReferenceStandard.Source.AGREEMENT
    assert [e.details["value"] for e in _events("study.reference.read")] == ["present"] * 2
    (agreement,) = _events("study.reference.agreement")
    assert agreement.details["readers"] == [s["p1"].username, s["p2"].username]
    assert agreement.actor == s["p2"]


def test_measurements_agree_by_value(ref_study):
    s = ref_study
    case = s["cases"][1]
    ref.enter_reference_read(case, "thickness", 3, s["p1"])
    ref.enter_reference_read(case, "thickness", 3.0, s["p2"])
    truth = ReferenceStandard.objects.get(study_case=case, question="thickness")
    assert truth.source == ReferenceStandard.Source.AGREEMENT
    assert float(truth.value) == 3.0


def test_disagreement_goes_to_the_adjudicator(ref_study):
    s = ref_study
    case = s["cases"][0]
    ref.enter_reference_read(case, "tear", "present", s["p1"])
    ref.enter_reference_read(case, "tear", "absent", s["p2"])
    assert not ReferenceStandard.objects.exists()
    queue = ref.adjudication_queue(s["study"])
    assert [(c.study_case, c.question.key) for c in queue] == [(case, "tear")]
    assert sorted(v for _, v in queue[0].reads) == ["absent", "present"]
    status = ref.reference_status(s["study"], viewer=s["adjudicator"])
    cell = status["rows"][[r["study_case"] for r in status["rows"]].index(case)]["cells"][0]
    assert cell.needs_adjudication and cell.agreement is False
    assert status["counts"]["adjudication"] == 1

    truth = ref.adjudicate(case, "tear", "present", s["adjudicator"], note="tear at the root")
    assert truth.source == ReferenceStandard.Source.ADJUDICATED
    assert truth.value == "present" and truth.entered_by == s["adjudicator"]
    assert ref.adjudication_queue(s["study"]) == []
    (event,) = _events("study.reference.adjudicate")
    assert event.details["reads"] == {s["p1"].username: "present", s["p2"].username: "absent"}
    assert event.details["note"] == "tear at the root"
    with pytest.raises(StudyError, match="no disagreement|already"):
        ref.adjudicate(case, "tear", "absent", s["adjudicator"])
    assert ReferenceStandard.objects.get(study_case=case, question="tear").value == "present"


def test_adjudication_refusals(ref_study):
    s = ref_study
    case = s["cases"][0]
    ref.enter_reference_read(case, "tear", "present", s["p1"])
    with pytest.raises(StudyError, match="no disagreement"):
        ref.adjudicate(case, "tear", "present", s["adjudicator"])
    ref.enter_reference_read(case, "tear", "absent", s["p2"])
    # Not an adjudicator: a panel member, the coordinator.
    for user in (s["p3"], s["study"].coordinator):
        with pytest.raises(StudyError):
            ref.adjudicate(case, "tear", "present", user)
    # An adjudicator who read the case does not decide it.
    assign_perm("studies.adjudicate_study", s["p1"], s["study"])
    with pytest.raises(StudyError, match="another adjudicator"):
        ref.adjudicate(case, "tear", "present", s["p1"])
    with pytest.raises(ValidationError):
        ref.adjudicate(case, "tear", "maybe", s["adjudicator"])
    # Reads that agree are not adjudicated.
    other = s["cases"][1]
    ref.enter_reference_read(other, "tear", "absent", s["p1"])
    ref.enter_reference_read(other, "tear", "absent", s["p2"])
    with pytest.raises(StudyError, match="no disagreement"):
        ref.adjudicate(other, "tear", "present", s["adjudicator"])
    assert not ReferenceStandard.objects.filter(source="adjudicated").exists()
    assert not _events("study.reference.adjudicate")


def test_exactly_two_panel_reads_count(ref_study):
    s = ref_study
    case = s["cases"][0]
    ref.enter_reference_read(case, "tear", "present", s["p1"])
    ref.enter_reference_read(case, "tear", "absent", s["p2"])
    with pytest.raises(StudyError, match="already has its 2 reference reads"):
        ref.enter_reference_read(case, "tear", "present", s["p3"])
    assert ReferenceRead.objects.filter(study_case=case).count() == 2


def test_own_read_changes_only_until_the_other_is_in(ref_study):
    s = ref_study
    case = s["cases"][0]
    ref.enter_reference_read(case, "tear", "present", s["p1"])
    ref.enter_reference_read(case, "tear", "absent", s["p1"])
    assert ReferenceRead.objects.get(study_case=case, user=s["p1"]).value == "absent"
    (change,) = _events("study.reference.read_change")
    assert change.changes == {"value": ["present", "absent"]}
    ref.enter_reference_read(case, "tear", "absent", s["p2"])
    with pytest.raises(StudyError, match="can no longer change"):
        ref.enter_reference_read(case, "tear", "present", s["p1"])
    assert ReferenceRead.objects.get(study_case=case, user=s["p1"]).value == "absent"
    assert ReferenceStandard.objects.get(study_case=case, question="tear").source == "agreement"


def test_panel_member_sees_the_other_read_only_after_their_own(ref_study):
    s = ref_study
    case = s["cases"][0]
    ref.enter_reference_read(case, "tear", "present", s["p1"])

    def tear_cell(viewer):
        status = ref.reference_status(s["study"], viewer=viewer, study_case=case)
        return status["rows"][0]["cells"][0]

    assert tear_cell(s["p2"]).reads == [(s["p1"].username, None)]
    assert tear_cell(s["p1"]).reads == [(s["p1"].username, "present")]
    assert tear_cell(s["study"].coordinator).reads == [(s["p1"].username, "present")]
    ref.enter_reference_read(case, "tear", "absent", s["p2"])
    assert tear_cell(s["p2"]).reads == [(s["p1"].username, "present"), (s["p2"].username, "absent")]
    # The third member cannot read the cell any more, so nothing is hidden from them.
    assert tear_cell(s["p3"]).read_refusal() == "already read by two members"


def test_consensus_by_coordinator_or_panel_and_audited_overwrite(ref_study):
    s = ref_study
    case, coordinator = s["cases"][0], s["study"].coordinator
    truth = ref.enter_consensus(case, "thickness", 2.5, coordinator, note="panel of 3")
    assert truth.source == ReferenceStandard.Source.CONSENSUS and truth.value == 2.5
    (event,) = _events("study.reference.consensus")
    assert event.details == {
        "case": case.case.subject_code,
        "question": "thickness",
        "value": 2.5,
        "note": "panel of 3",
    }
    with pytest.raises(ValidationError, match="give the reason"):
        ref.enter_consensus(case, "thickness", 3.0, s["p1"])
    assert ReferenceStandard.objects.get(pk=truth.pk).value == 2.5
    ref.enter_consensus(case, "thickness", 3.0, s["p1"], note="re-measured on the sagittal")
    truth.refresh_from_db()
    assert truth.value == 3.0 and truth.entered_by == s["p1"]
    (change,) = _events("study.reference.consensus_change")
    assert change.changes == {"value": [2.5, 3.0], "source": ["consensus", "consensus"]}
    assert change.details["reason"] == "re-measured on the sagittal"
    # Panel reads of a cell decided by consensus are refused.
    with pytest.raises(StudyError, match="no panel read is needed"):
        ref.enter_reference_read(case, "thickness", 3.0, s["p2"])


def test_consensus_refused_to_others(ref_study):
    s = ref_study
    case = s["cases"][0]
    for user in (s["adjudicator"], s["outsider"], s["reader"]):
        with pytest.raises(StudyError):
            ref.enter_consensus(case, "tear", "present", user)
    with pytest.raises(ValidationError):
        ref.enter_consensus(case, "tear", "maybe", s["study"].coordinator)
    assert not ReferenceStandard.objects.exists()
    assert not _events("study.reference.consensus")


def test_batch_entry_is_all_or_nothing(ref_study):
    s = ref_study
    case = s["cases"][0]
    with pytest.raises(ValidationError) as info:
        ref.enter_reference_reads(case, {"tear": "present", "thickness": "thick"}, s["p1"])
    assert set(info.value.message_dict) == {"thickness"}
    assert not ReferenceRead.objects.exists()
    ref.enter_reference_reads(case, {"tear": "present", "thickness": 2.0}, s["p1"])
    assert ReferenceRead.objects.filter(user=s["p1"]).count() == 2


# ----------------------------------------------------------------------------- CSV import


def _codes(s):
    return [sc.case.subject_code for sc in s["cases"]]


def test_import_good_file(ref_study):
    s = ref_study
    a, b, c = _codes(s)
    text = (
        "Case;Question;Value;Note\r\n"
        f"{a};tear;Present;arthroscopy\r\n"
        f"{b};tear;absent;\r\n"
        f"{c};thickness;2,5;\r\n"
        ";;;\r\n"
    )
    result = ref.import_reference_csv(s["study"], text.encode("utf-8-sig"), s["study"].coordinator)
    assert (result.created, result.unchanged) == (3, 0)
    truths = {
        (t.study_case.case.subject_code, t.question): t
        for t in ReferenceStandard.objects.select_related("study_case__case")
    }
    assert truths[(a, "tear")].value == "present"
    assert truths[(a, "tear")].note == "arthroscopy"
    assert truths[(b, "tear")].note == "imported from CSV"
    assert truths[(c, "thickness")].value == 2.5
    assert {t.source for t in truths.values()} == {"import"}
    (event,) = _events("study.reference.import")
    assert event.details["created"] == 3 and len(event.details["cells"]) == 3
    # Importing the same file again changes nothing; panel reads of imported cells refused.
    again = ref.import_reference_csv(s["study"], text.encode("utf-8"), s["study"].coordinator)
    assert (again.created, again.unchanged) == (0, 3)
    assert ReferenceStandard.objects.count() == 3
    with pytest.raises(StudyError, match="imported"):
        ref.enter_reference_read(s["cases"][0], "tear", "present", s["p1"])


def test_import_bad_rows_store_nothing(ref_study):
    s = ref_study
    a, b, c = _codes(s)
    ref.enter_consensus(s["cases"][2], "tear", "absent", s["study"].coordinator)
    text = (
        "case,question,value\n"
        f"{a},tear,present\n"  # row 2: good
        "NOPE-1,tear,present\n"  # row 3
        f"{a},quality,4\n"  # row 4
        f"{b},tear,maybe\n"  # row 5
        f"{b},thickness,thin\n"  # row 6
        f"{a},tear,present\n"  # row 7: duplicate of row 2
        f"{c},tear,present\n"  # row 8: differs from the stored consensus
        f"{b},missing,1\n"  # row 9
    )
    with pytest.raises(ValidationError) as info:
        ref.import_reference_csv(s["study"], text.encode(), s["study"].coordinator)
    messages = info.value.messages
    assert messages[0] == "Nothing was imported."
    by_row = {m.split(":", 1)[0]: m for m in messages[1:]}
    assert set(by_row) == {f"row {n}" for n in (3, 4, 5, 6, 7, 8, 9)}
    assert "no case “NOPE-1”" in by_row["row 3"]
    assert "only findings and measurements" in by_row["row 4"]
    assert "is not one of absent, present" in by_row["row 5"]
    assert "not a number" in by_row["row 6"]
    assert "already given on row 2" in by_row["row 7"]
    assert "already has the reference value" in by_row["row 8"]
    assert "no question “missing”" in by_row["row 9"]
    assert ReferenceStandard.objects.count() == 1
    assert ReferenceStandard.objects.get().source == "consensus"
    assert not _events("study.reference.import")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"case,value\nX,1\n", "missing: question"),
        (b"case,question,value\n", "no rows"),
        (b"\xff\xfe\x00\xd8", "not text"),
        (b"case,question,value\n" + b"x" * (2 * 1024 * 1024), "larger than 2 MB"),
    ],
)
def test_import_refuses_bad_files(ref_study, data, message):
    s = ref_study
    with pytest.raises(ValidationError, match=message):
        ref.import_reference_csv(s["study"], data, s["study"].coordinator)
    assert not ReferenceStandard.objects.exists()


def test_import_encodings(ref_study):
    s = ref_study
    a, b, _ = _codes(s)
    utf16 = f"case\tquestion\tvalue\n{a}\ttear\tabsent\n".encode("utf-16")
    assert ref.import_reference_csv(s["study"], utf16, s["study"].coordinator).created == 1
    cp1252 = f"case,question,value,note\n{b},tear,present,Déjà vu – arthroscopy\n".encode("cp1252")
    assert ref.import_reference_csv(s["study"], cp1252, s["study"].coordinator).created == 1
    assert ReferenceStandard.objects.get(study_case=s["cases"][1]).note == "Déjà vu – arthroscopy"


def test_import_ambiguous_subject_code_needs_the_site(ref_study):
    s = ref_study
    study = s["study"]
    shared = s["cases"][0].case.subject_code
    other_site = InstitutionFactory(code="north")
    twin = StudyCaseFactory(
        study=study, case=CaseFactory(institution=other_site, subject_code=shared)
    )
    text = f"case,question,value\n{shared},tear,present\n"
    with pytest.raises(ValidationError, match="ambiguous: write one of"):
        ref.import_reference_csv(study, text.encode(), study.coordinator)
    text = f"case,question,value\nnorth:{shared},tear,present\n"
    ref.import_reference_csv(study, text.encode(), study.coordinator)
    assert ReferenceStandard.objects.get().study_case == twin


def test_import_only_by_coordinators(ref_study):
    s = ref_study
    text = f"case,question,value\n{_codes(s)[0]},tear,present\n".encode()
    for user in (s["p1"], s["adjudicator"], s["outsider"], s["reader"]):
        with pytest.raises(StudyError):
            ref.import_reference_csv(s["study"], text, user)
    assert not ReferenceStandard.objects.exists()


def _close(study):
    type(study).objects.filter(pk=study.pk).update(status="closed_for_analysis")
    study.refresh_from_db()


def _truths():
    return {
        (t.study_case.case.subject_code, t.question): (t.value, t.source)
        for t in ReferenceStandard.objects.select_related("study_case__case")
    }


def test_after_close_missing_truths_complete_but_stored_ones_never_change(ref_study):
    """Once unblinded, the truth must not move under known results; the reference may
    still arrive after reading (e.g. arthroscopy) for cells that have none."""
    s = ref_study
    study, (a, b, c) = s["study"], s["cases"]
    coordinator = study.coordinator
    ref.enter_consensus(a, "tear", "present", coordinator)
    ref.enter_reference_read(b, "tear", "present", s["p1"])
    ref.enter_reference_read(b, "tear", "absent", s["p2"])
    _close(study)
    stored = _truths()
    n_events = AuditEvent.objects.count()

    with pytest.raises(StudyError, match="closed for analysis"):
        ref.enter_consensus(a, "tear", "absent", coordinator, note="second opinion")
    with pytest.raises(StudyError, match="closed for analysis"):
        ref.enter_consensus(a, "tear", "absent", s["p1"], note="second opinion")
    with pytest.raises(ValidationError, match="closed for analysis"):
        ref.import_reference_csv(
            study, f"case,question,value\n{a.case.subject_code},tear,absent\n".encode(), coordinator
        )
    # Entering the stored value again changes nothing (no new source, no audit event).
    assert ref.enter_consensus(a, "tear", "present", coordinator, note="same").source == (
        "consensus"
    )
    assert _truths() == stored and AuditEvent.objects.count() == n_events

    # Missing values: consensus, import and adjudication complete them (audited).
    ref.enter_consensus(a, "thickness", 2.0, coordinator)
    result = ref.import_reference_csv(
        study,
        (
            "case,question,value\n"
            f"{a.case.subject_code},tear,present\n"
            f"{c.case.subject_code},tear,absent\n"
        ).encode(),
        coordinator,
    )
    assert (result.created, result.unchanged) == (1, 1)
    ref.adjudicate(b, "tear", "absent", s["adjudicator"])
    truths = _truths()
    code = {sc: sc.case.subject_code for sc in (a, b, c)}
    assert truths[(code[a], "thickness")] == (2.0, "consensus")
    assert truths[(code[c], "tear")] == ("absent", "import")
    assert truths[(code[b], "tear")] == ("absent", "adjudicated")
    assert truths[(code[a], "tear")] == stored[(code[a], "tear")]
    with pytest.raises(StudyError, match="closed for analysis"):
        ref.adjudicate(b, "tear", "present", s["adjudicator"])
    assert _truths()[(code[b], "tear")] == ("absent", "adjudicated")


def test_consensus_change_with_a_reason_is_allowed_while_open(ref_study):
    s = ref_study
    case, coordinator = s["cases"][0], s["study"].coordinator
    ref.enter_consensus(case, "tear", "present", coordinator)
    changed = ref.enter_consensus(case, "tear", "absent", coordinator, note="re-read")
    assert changed.value == "absent"
    assert _events("study.reference.consensus_change")[0].changes == {
        "value": ["present", "absent"],
        "source": ["consensus", "consensus"],
    }


def test_reference_digest_is_sha256_of_sorted_rows(ref_study):
    import hashlib
    import json

    s = ref_study
    study, (a, b, _) = s["study"], s["cases"]
    empty = ref.reference_digest(study)
    assert empty == {"sha256": hashlib.sha256(b"[]").hexdigest(), "cells": 0}
    ref.enter_consensus(b, "thickness", 2.5, study.coordinator)
    ref.enter_consensus(a, "tear", "present", study.coordinator)
    rows = sorted(
        [[a.case.subject_code, "tear", "present"], [b.case.subject_code, "thickness", 2.5]]
    )
    expected = hashlib.sha256(
        json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    digest = ref.reference_digest(study)
    assert digest == {"sha256": expected, "cells": 2}
    ref.enter_consensus(b, "thickness", 2.6, study.coordinator, note="re-measured")
    assert ref.reference_digest(study)["sha256"] != expected
