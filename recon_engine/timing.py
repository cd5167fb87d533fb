"""Scan-time arithmetic for protocols (how much time an accelerated protocol saves)."""

from __future__ import annotations

import math

from recon_engine.registry import ParameterError

__all__ = ["acquisition_time", "time_reduction"]


def _positive(name: str, value: float, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ParameterError(f"{name} must be a finite number, got {value!r}")
    if value <= 0:
        raise ParameterError(f"{name} must be > 0, got {value}")
    if integer and int(value) != value:
        raise ParameterError(f"{name} must be an integer, got {value}")


def acquisition_time(
    phase_encodes: int,
    tr_ms: float,
    nsa: float = 1,
    acceleration: float = 1,
    sms_factor: int = 1,
    partitions: int = 1,
    echo_train_length: int = 1,
) -> float:
    """Cartesian acquisition time in seconds:

        T = phase_encodes * partitions * TR * NSA / (acceleration * sms_factor * ETL)

    ``phase_encodes``: in-plane phase-encode lines of the full matrix; ``tr_ms``:
    repetition time in milliseconds; ``nsa``: signal averages (NEX); ``acceleration``:
    total parallel-imaging / compressed-sensing undersampling factor; ``sms_factor``:
    slices excited simultaneously (multiband); ``partitions``: 3D slice-encode steps (1
    for 2D); ``echo_train_length``: echoes per TR (turbo factor; 1 for gradient/spin
    echo). Multi-slice 2D sequences acquire their slices within the TR, so slices do not
    appear (fold them into ``partitions`` for sequential-slice protocols).
    """
    _positive("phase_encodes", phase_encodes, integer=True)
    _positive("tr_ms", tr_ms)
    _positive("nsa", nsa)
    _positive("sms_factor", sms_factor, integer=True)
    _positive("partitions", partitions, integer=True)
    _positive("echo_train_length", echo_train_length, integer=True)
    _positive("acceleration", acceleration)
    if acceleration < 1:
        raise ParameterError(f"acceleration must be >= 1, got {acceleration}")
    return (
        phase_encodes
        * partitions
        * (tr_ms / 1000.0)
        * nsa
        / (acceleration * sms_factor * echo_train_length)
    )


def time_reduction(new_s: float, reference_s: float) -> float:
    """Fraction of scan time saved, ``1 - new / reference`` (0.75 = 75 % shorter; negative
    if the new protocol is longer). Both times in the same unit (seconds)."""
    _positive("reference_s", reference_s)
    if isinstance(new_s, bool) or not math.isfinite(new_s) or new_s < 0:
        raise ParameterError(f"new_s must be a finite time >= 0, got {new_s!r}")
    return 1.0 - new_s / reference_s
