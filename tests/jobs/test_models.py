"""ReconJob model rules: one job per (series, protocol) and the progress users see."""

from __future__ import annotations

import pytest
from django.db import IntegrityError

from mriplatform.jobs.models import ReconJob
from tests.factories import CaseFactory, ProtocolFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def series():
    from mriplatform.cases.models import Series

    return Series.objects.create(case=CaseFactory(), kind=Series.Kind.FASTMRI, n_slices=4)


def test_one_job_per_series_and_protocol(series):
    protocol = ProtocolFactory()
    ReconJob.objects.create(input_series=series, protocol=protocol)
    ReconJob.objects.create(input_series=series, protocol=ProtocolFactory())
    with pytest.raises(IntegrityError):
        ReconJob.objects.create(input_series=series, protocol=protocol)


@pytest.mark.parametrize(
    "status, done, total, percent",
    [
        ("pending", 0, 0, 0),
        ("running", 0, 4, 0),
        ("running", 3, 4, 75),
        ("running", 2, 3, 66),
        ("failed", 2, 4, 50),
        ("succeeded", 0, 0, 100),
    ],
)
def test_progress_percent(series, status, done, total, percent):
    job = ReconJob(
        input_series=series,
        protocol=ProtocolFactory(),
        status=status,
        progress_done=done,
        progress_total=total,
    )
    assert job.progress_percent == percent


def test_str_and_case(series):
    protocol = ProtocolFactory(name="GRAPPA R2")
    job = ReconJob.objects.create(input_series=series, protocol=protocol)
    assert str(job) == f"GRAPPA R2 v1 on {series}"
    assert job.case == series.case
    assert job.status == ReconJob.Status.PENDING and job.attempts == 0
