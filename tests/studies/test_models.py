"""Study set-up: seed, readers and their object permission, opening checks, progress."""

import pytest
from guardian.shortcuts import get_perms

from studies.models import ReadingSession, ReadItem, Study
from studies.services import StudyError, add_reader, open_study, study_progress
from tests.factories import ReconJobFactory, SeriesFactory, UserFactory
from tests.studies.conftest import T0

pytestmark = pytest.mark.django_db


def test_seed_is_random_and_stored(build_study):
    a, *_ = build_study(n_cases=1, n_arms=1, n_readers=1)
    b, *_ = build_study(n_cases=1, n_arms=1, n_readers=1)
    assert a.seed != b.seed
    assert 0 <= a.seed < 2**63
    assert Study.objects.get(pk=a.pk).seed == a.seed


def test_readers_get_the_object_permission_only_on_their_study(build_study):
    study, _, _, (reader, _) = build_study(n_cases=1, n_arms=1)
    other, *_ = build_study(n_cases=1, n_arms=1, n_readers=0)
    assert "read_study" in get_perms(reader, study)
    assert reader.has_perm("studies.read_study", study)
    assert not reader.has_perm("studies.read_study", other)


def test_only_reader_role_can_be_added(build_study):
    study, *_ = build_study(n_cases=1, n_arms=1, n_readers=0)
    with pytest.raises(StudyError, match="reader role"):
        add_reader(study, UserFactory(roles=("coordinator",)))


def test_open_refuses_missing_reconstructions_and_lists_them(build_study):
    study, arms, cases, _ = build_study(n_cases=2, n_arms=2, reconstruct=False)
    raw = SeriesFactory(case=cases[0].case)
    ReconJobFactory(input_series=raw, protocol=arms[0].protocol)
    # a failed job does not count as a reconstruction
    ReconJobFactory(input_series=raw, protocol=arms[1].protocol, status="failed")
    with pytest.raises(StudyError) as err:
        open_study(study, study.coordinator, now=T0)
    message = str(err.value)
    assert f"{cases[0].case.subject_code} / arm B" in message
    assert f"{cases[1].case.subject_code} / arm A" in message
    assert f"{cases[1].case.subject_code} / arm B" in message
    assert f"{cases[0].case.subject_code} / arm A" not in message
    study.refresh_from_db()
    assert study.status == Study.Status.DRAFT
    assert not ReadingSession.objects.filter(study=study).exists()


def test_open_twice_refused(open_study_):
    study, *_ = open_study_
    with pytest.raises(StudyError, match="not a draft"):
        open_study(study, study.coordinator, now=T0)


def test_progress_reports_counts_only(open_study_):
    study, _, _, readers = open_study_
    rows = study_progress(study)
    per_reader = ReadItem.objects.filter(reader=readers[0]).count()
    assert sum(r["reads"] for r in rows if r["reader"] == readers[0].username) == per_reader
    assert all(r["submitted"] == 0 for r in rows)
    allowed = {"reader", "session", "kind", "reads", "submitted", "available_from", "completed"}
    assert all(set(r) == allowed for r in rows)
