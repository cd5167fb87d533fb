"""Data for the reader-study browser tests: a site with a coordinator, two readers, a
statistician, two protocols and two cases whose reconstructions by both protocols are
finished and stored as real DICOM instances (made without running the engine)."""

from __future__ import annotations

import pytest


@pytest.fixture
def trial_site(db, make_user):
    """Users of one institution, protocols "CS R4" and "DL R4", cases KNEE-001/002 each
    with a raw series and an imaged reconstruction per protocol."""
    from tests.factories import CaseFactory, ProtocolFactory, SeriesFactory
    from tests.studies.imaging import imaged_reconstruction

    coordinator = make_user("coordinator", username="coordinator1")
    institution = coordinator.institution
    protocols = [ProtocolFactory(name="CS R4"), ProtocolFactory(name="DL R4")]
    cases = []
    for code in ("KNEE-001", "KNEE-002"):
        case = CaseFactory(subject_code=code, institution=institution)
        raw = SeriesFactory(case=case)
        for protocol in protocols:
            imaged_reconstruction(raw, protocol, n_slices=4, size=64)
        cases.append(case)
    return {
        "coordinator": coordinator,
        "readers": [
            make_user("reader", username=f"reader{i}", institution=institution) for i in (1, 2)
        ],
        "statistician": make_user("statistician", username="stat1", institution=institution),
        "protocols": protocols,
        "cases": cases,
    }
