"""A study builder: N cases x A arms with succeeded reconstructions, and R readers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.factories import (
    ArmFactory,
    ReconJobFactory,
    SeriesFactory,
    StudyCaseFactory,
    StudyFactory,
    UserFactory,
)

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
def build_study(db):
    from studies.services import add_reader

    def build(n_cases=4, n_arms=3, n_readers=2, reconstruct=True, **study_kwargs):
        study = StudyFactory(**study_kwargs)
        arms = [ArmFactory(study=study, label=chr(65 + i)) for i in range(n_arms)]
        cases = [StudyCaseFactory(study=study) for _ in range(n_cases)]
        for sc in cases:
            raw = SeriesFactory(case=sc.case)
            if reconstruct:
                for arm in arms:
                    ReconJobFactory(input_series=raw, protocol=arm.protocol)
        readers = [UserFactory(roles=("reader",)) for _ in range(n_readers)]
        for user in readers:
            add_reader(study, user, actor=study.coordinator)
        return study, arms, cases, readers

    return build


@pytest.fixture
def open_study_(build_study):
    """An opened 4-case, 3-arm, 2-reader study with 25 % repeats."""
    from studies.services import open_study

    study, arms, cases, readers = build_study(repeat_fraction=0.25)
    open_study(study, study.coordinator, now=T0)
    study.refresh_from_db()
    return study, arms, cases, readers
