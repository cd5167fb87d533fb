"""Shared engine fixtures: small simulated multi-coil cases from the sample brains in data/mri.

Built with :mod:`recon_engine.simulation`; session scoped so every engine test folder can
reuse them cheaply. Tests must not modify the returned tensors (clone first).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recon_engine.simulation import SimulatedData, load_slices, simulate_multicoil

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "mri"
BRAIN = DATA_DIR / "colin27_t1_1mm.nii.gz"


@pytest.fixture(scope="session")
def brain_slices() -> torch.Tensor:
    """Four contiguous central axial slices of the Colin27 T1 brain, 96x96, in [0, 1]."""
    return load_slices(BRAIN, 4, size=(96, 96))


@pytest.fixture(scope="session")
def sim8(brain_slices) -> SimulatedData:
    """8 birdcage coils, smooth phase, SNR 30 (mean object signal / noise SD), seed 0:
    ``kspace`` (4, 8, 96, 96) complex64 fully sampled."""
    return simulate_multicoil(brain_slices, n_coils=8, coil_kind="birdcage", snr=30.0, seed=0)


@pytest.fixture(scope="session")
def sim8_noiseless(brain_slices) -> SimulatedData:
    """As ``sim8`` without noise (exact inverse problems)."""
    return simulate_multicoil(brain_slices, n_coils=8, coil_kind="birdcage", snr=None, seed=0)
