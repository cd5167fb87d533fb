"""Cartesian SENSE when R does not divide the phase-encode count (R = 3 on 256 lines).

References: the unregularised SENSE solution is the least-squares solution of the
encoding model, so SigPy's ``SenseRecon`` (CG on the same model, run to convergence) is an
independent reference; the analytic g-factor is checked against pseudo multiple replicas
(Robson et al., MRM 2008) and, where R divides W, against the R x R unfolding
(Pruessmann et al., MRM 1999).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sigpy.mri as mr
import torch

from recon_engine.fft import fftc
from recon_engine.gfactor import _exact_gfactor, pseudo_replica_gfactor, sense_gfactor
from recon_engine.registry import ReconInput, get_method
from recon_engine.sampling import uniform_mask
from recon_engine.sense import UniformPattern, cg_sense, sense_unfold, sense_unfold_exact
from recon_engine.simulation import load_slices, simulate_multicoil

BRAIN = Path(__file__).resolve().parents[3] / "data" / "mri" / "colin27_t1_1mm.nii.gz"


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def brain256():
    """One 256x256 brain slice, 8 birdcage coils, SNR 30."""
    return simulate_multicoil(load_slices(BRAIN, 1, size=(256, 256)), n_coils=8, snr=30.0)


@pytest.mark.parametrize("r", [2, 3, 4])
def test_exact_operator_equals_pixelwise_unfolding_when_r_divides_w(sim8_noiseless, r):
    sim = sim8_noiseless
    m = uniform_mask((96, 96), r, acs_lines=0).mask
    fast = sense_unfold(sim.kspace * m, sim.sensitivities, m, r, lamda=0.01)
    exact = sense_unfold_exact(sim.kspace * m, sim.sensitivities, UniformPattern(r, 0), 0.01)
    assert _rel(exact, fast) < 1e-4
    g_fast = sense_gfactor(sim.sensitivities, r, lamda=0.01)
    g_exact = _exact_gfactor(sim.sensitivities, UniformPattern(r, 0), 0.01)
    assert _rel(g_exact, g_fast) < 1e-5


def test_r3_on_256_lines_matches_sigpy_sense(brain256):
    """Every 3rd of 256 lines (86 lines), noisy data, no regularisation: the same
    least-squares image as SigPy's SenseRecon run to convergence."""
    sim = brain256
    m = uniform_mask((256, 256), 3, acs_lines=0).mask
    ksp = sim.kspace * m
    ours = sense_unfold(ksp, sim.sensitivities, m)
    weights = np.broadcast_to(m[0, 0].numpy(), (256, 256)).astype(np.float32)
    ref = mr.app.SenseRecon(
        ksp[0].numpy(),
        sim.sensitivities[0].numpy(),
        lamda=0.0,
        weights=weights,
        max_iter=300,
        show_pbar=False,
    ).run()
    assert _rel(ours[0], torch.from_numpy(np.asarray(ref))) < 2e-3
    # noiseless, true maps: the object itself
    clean = fftc(sim.sensitivities * sim.image[:, None])
    assert _rel(sense_unfold(clean * m, sim.sensitivities, m), sim.image) < 1e-3


def test_sense_method_runs_r3_on_256_lines_with_g_factor(brain256):
    """The registered method (ESPIRiT maps from 24 ACS lines) gives CG-SENSE's image for
    the same maps and lattice, and a g-factor map >= 1."""
    sim = brain256
    mask = uniform_mask((256, 256), 3, acs_lines=24)
    spec = get_method("sense")
    data = ReconInput(kspace=sim.kspace * mask.mask, mask=mask.mask, acs_mask=mask.acs_mask)
    out = spec.run(data, spec.validate({}))
    assert out.info["acceleration"] == 3 and out.info["unfolding"].startswith("exact")
    lattice = uniform_mask((256, 256), 3, acs_lines=0).mask
    maps = out.maps["sensitivities"]
    reference, _ = cg_sense(sim.kspace * lattice, maps, lattice, max_iter=300)
    assert _rel(out.image, reference) < 5e-3
    assert _rel(out.image.abs(), sim.image.abs()) < 0.2  # SNR 30 data, g up to ~5
    g = out.maps["g_factor"]
    covered = g > 0
    assert float(covered.float().mean()) > 0.3
    assert float(g[covered].min()) > 0.99 and float(g[covered].mean()) > 1.05


def test_g_factor_when_r_does_not_divide_w_matches_pseudo_replicas():
    """R=3 on 64 lines (22 lines sampled): analytic vs 200 pseudo replicas."""
    img = load_slices(BRAIN, 1, size=(64, 64))
    sim = simulate_multicoil(img, n_coils=8, snr=None)
    m = uniform_mask((64, 64), 3, acs_lines=0)
    res = pseudo_replica_gfactor(
        "sense",
        sim.kspace,
        m.mask,
        noise_std=0.01,
        params={"g_factor": False},
        sensitivities=sim.sensitivities,
        n_replicas=200,
        seed=2,
        batch=50,
    )
    assert res.acceleration == pytest.approx(64 / 22)
    analytic = sense_gfactor(sim.sensitivities, 3)
    obj = sim.image.abs() > 0.1
    ratio = res.g[obj] / analytic[obj]
    assert abs(float(ratio.median()) - 1) < 0.03
    assert float(((ratio - 1).abs() < 0.2).float().mean()) > 0.99
