"""g-factor: analytic SENSE formula vs pseudo multiple replica, and basic properties."""

from __future__ import annotations

import pytest
import torch

from recon_engine.gfactor import pseudo_replica_gfactor, sense_gfactor
from recon_engine.registry import ParameterError
from recon_engine.sampling import uniform_mask


def test_analytic_gfactor_properties(sim8):
    sens = sim8.sensitivities
    g1 = sense_gfactor(sens, 1)
    support = (sens.abs() ** 2).sum(1) > 1e-6
    torch.testing.assert_close(g1[support], torch.ones(int(support.sum())), rtol=1e-4, atol=0)
    g2, g3 = sense_gfactor(sens, 2), sense_gfactor(sens, 3)
    assert bool((g2[support] >= 1 - 1e-4).all())
    assert bool((g3[support] >= 1 - 1e-4).all())
    assert g3[support].mean() > g2[support].mean()  # more acceleration, more noise
    # Tikhonov regularisation can only lower the noise amplification
    assert bool((sense_gfactor(sens, 3, lamda=0.1) <= g3 + 1e-4).all())


def test_pseudo_replica_matches_analytic_uniform_r2(sim8_noiseless):
    """Uniform R=2 without ACS, known coils: both g-factors within a few percent."""
    sim = sim8_noiseless
    m = uniform_mask((96, 96), 2, acs_lines=0)
    res = pseudo_replica_gfactor(
        "sense",
        sim.kspace[:1],
        m.mask,
        noise_std=0.01,
        params={"g_factor": False},
        sensitivities=sim.sensitivities[:1],
        n_replicas=200,
        seed=1,
        batch=50,
    )
    assert res.acceleration == pytest.approx(2.0)
    analytic = sense_gfactor(sim.sensitivities[:1], 2)
    obj = sim.image[:1].abs() > 0.1
    ratio = res.g[obj] / analytic[obj]
    assert abs(float(ratio.mean()) - 1) < 0.03
    assert abs(float(ratio.median()) - 1) < 0.03
    # per pixel the replica SD has ~5% sampling error at 200 replicas
    assert float(((ratio - 1).abs() < 0.2).float().mean()) > 0.99
    assert float(res.g[obj].min()) > 0.8


def test_pseudo_replica_any_method(sim8_noiseless):
    """CG-SENSE (registry method) at R=2: g near the SENSE g-factor, >= ~1."""
    sim = sim8_noiseless
    m = uniform_mask((96, 96), 2, acs_lines=0)
    res = pseudo_replica_gfactor(
        "cg_sense",
        sim.kspace[:1],
        m.mask,
        noise_std=0.01,
        params={"iterations": 50},
        sensitivities=sim.sensitivities[:1],
        n_replicas=40,
    )
    obj = sim.image[:1].abs() > 0.1
    analytic = sense_gfactor(sim.sensitivities[:1], 2)
    assert abs(float((res.g[obj] / analytic[obj]).median()) - 1) < 0.1


def test_bad_parameters(sim8):
    m = uniform_mask((96, 96), 2)
    with pytest.raises(ParameterError):
        pseudo_replica_gfactor("sense", sim8.kspace, m.mask, noise_std=0.0)
    with pytest.raises(ParameterError):
        pseudo_replica_gfactor("sense", sim8.kspace, m.mask, noise_std=1.0, n_replicas=1)
    with pytest.raises(KeyError):
        pseudo_replica_gfactor("no_such_method", sim8.kspace, m.mask, noise_std=1.0)
