"""Scan-time arithmetic against hand-computed protocol times."""

from __future__ import annotations

import pytest

from recon_engine.registry import ParameterError
from recon_engine.timing import acquisition_time, time_reduction


def test_gradient_echo_2d():
    # 256 phase encodes, TR 500 ms, 1 average: 128 s
    assert acquisition_time(256, 500) == pytest.approx(128.0)
    assert acquisition_time(256, 500, nsa=2) == pytest.approx(256.0)


def test_accelerated_turbo_spin_echo():
    # T2 TSE: 320 lines, TR 4000 ms, ETL 16, GRAPPA 2 -> 320 * 4 / (2 * 16) = 40 s
    assert acquisition_time(320, 4000, acceleration=2, echo_train_length=16) == pytest.approx(40.0)


def test_3d_with_caipi_and_sms():
    # 3D MPRAGE-like: 256 x 176 partitions, TR 2.3 s per line (ETL = inversion shot of 1)
    full = acquisition_time(256, 2300, partitions=176)
    assert full == pytest.approx(256 * 176 * 2.3)
    assert acquisition_time(256, 2300, partitions=176, acceleration=4) == pytest.approx(full / 4)
    assert acquisition_time(128, 3000, sms_factor=3) == pytest.approx(128.0)


def test_time_reduction():
    ref = acquisition_time(256, 500)
    new = acquisition_time(256, 500, acceleration=4)
    assert time_reduction(new, ref) == pytest.approx(0.75)
    assert time_reduction(ref, ref) == 0.0
    assert time_reduction(2 * ref, ref) == pytest.approx(-1.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"phase_encodes": 0, "tr_ms": 500},
        {"phase_encodes": 256.5, "tr_ms": 500},
        {"phase_encodes": 256, "tr_ms": -1},
        {"phase_encodes": 256, "tr_ms": float("nan")},
        {"phase_encodes": 256, "tr_ms": 500, "acceleration": 0.5},
        {"phase_encodes": 256, "tr_ms": 500, "sms_factor": 0},
        {"phase_encodes": 256, "tr_ms": 500, "echo_train_length": 2.5},
    ],
)
def test_bad_parameters(kwargs):
    with pytest.raises(ParameterError):
        acquisition_time(**kwargs)


def test_bad_reduction():
    with pytest.raises(ParameterError):
        time_reduction(10, 0)
    with pytest.raises(ParameterError):
        time_reduction(-1, 10)
