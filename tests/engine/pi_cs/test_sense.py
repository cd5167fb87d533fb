"""SENSE unfolding and CG-SENSE: analytic exactness, SigPy and BART references, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import sigpy.mri as mr
import torch

from recon_engine.registry import ReconError
from recon_engine.sampling import random_mask, uniform_mask
from recon_engine.sense import cg_sense, sense_unfold, uniform_pattern

from .conftest import bart, needs_bart, readcfl, to_bart, writecfl


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_fully_sampled_reconstructs_exactly(sim8_noiseless):
    sim = sim8_noiseless
    full = torch.ones(1, 1, 1, 96)
    x = sense_unfold(sim.kspace, sim.sensitivities, full)
    assert _rel(x, sim.image) < 1e-5


@pytest.mark.parametrize("r,offset", [(2, 0), (3, 1), (4, 3)])
def test_uniform_unfolding_exact_with_true_maps(sim8_noiseless, r, offset):
    sim = sim8_noiseless
    m = uniform_mask((96, 96), r, acs_lines=12, offset=offset)
    pat = uniform_pattern(m.mask, 96)
    assert (pat.acceleration, pat.offset) == (r, offset)
    x = sense_unfold(sim.kspace * m.mask, sim.sensitivities, m.mask)
    assert _rel(x, sim.image) < 5e-4  # float32 round-off times g-factor
    # Tikhonov shrinks towards zero but stays close for a small weight
    errs = [
        _rel(sense_unfold(sim.kspace * m.mask, sim.sensitivities, m.mask, lamda=lam), sim.image)
        for lam in (1e-3, 1e-2)
    ]
    assert 1e-4 < errs[0] < errs[1]


def test_cg_sense_converges_to_exact_solution(sim8_noiseless):
    sim = sim8_noiseless
    m = uniform_mask((96, 96), 2, acs_lines=12)
    x, it = cg_sense(sim.kspace * m.mask, sim.sensitivities, m.mask, max_iter=300, tol=1e-6)
    assert _rel(x, sim.image) < 1e-3
    assert it < 300


def test_cg_sense_matches_sigpy_senserecon(sim8):
    m = random_mask((96, 96), 3, center_fraction=0.1, seed=4)
    ksp = sim8.kspace * m.mask
    maps = sim8.sensitivities
    ours, _ = cg_sense(ksp[:2], maps[:2], m.mask, lamda=0.01, max_iter=20)
    weights = np.broadcast_to(m.mask[0, 0].numpy(), (96, 96)).astype(np.float32)
    for s in range(2):
        ref = mr.app.SenseRecon(
            ksp[s].numpy(),
            maps[s].numpy(),
            lamda=0.01,
            weights=weights,
            max_iter=20,
            show_pbar=False,
        ).run()
        assert _rel(ours[s], torch.from_numpy(ref)) < 1e-3


@needs_bart
def test_cg_sense_matches_bart_pics_l2(sim8, tmp_path):
    m = random_mask((96, 96), 3, center_fraction=0.1, seed=5)
    ksp = (sim8.kspace * m.mask)[0].numpy()
    maps = sim8.sensitivities[0].numpy()
    writecfl(tmp_path / "k", to_bart(ksp))
    writecfl(tmp_path / "m", to_bart(maps))
    bart(tmp_path, "pics", "-S", "-l2", "-r0", "-i20", "k", "m", "x")
    ref = torch.from_numpy(readcfl(tmp_path / "x").reshape(96, 96))
    ours, _ = cg_sense(torch.from_numpy(ksp)[None], torch.from_numpy(maps)[None], m.mask, 0, 20)
    assert _rel(ours[0], ref) < 1e-3


def test_batch_equals_single_slices(sim8):
    m = random_mask((96, 96), 3, seed=6)
    ksp = sim8.kspace * m.mask
    batch, _ = cg_sense(ksp, sim8.sensitivities, m.mask, max_iter=10)
    one, _ = cg_sense(ksp[3:], sim8.sensitivities[3:], m.mask, max_iter=10)
    torch.testing.assert_close(batch[3:], one, rtol=1e-4, atol=1e-5)


def test_bad_inputs(sim8):
    m = uniform_mask((96, 96), 4, acs_lines=12)
    ksp = sim8.kspace * m.mask
    with pytest.raises(ReconError, match="exceeds the number of coils"):
        sense_unfold(ksp[:, :3], sim8.sensitivities[:, :3], m.mask)
    with pytest.raises(ReconError, match="not uniform"):
        rm = random_mask((96, 96), 4, seed=0)
        sense_unfold(sim8.kspace * rm.mask, sim8.sensitivities, rm.mask, acceleration=4)
    # R not dividing W is unfolded exactly (test_sense_any_fov.py), not refused
    m5 = uniform_mask((96, 95), 2, acs_lines=0)
    odd = sense_unfold(
        sim8.kspace[:1, ..., :95] * m5.mask, sim8.sensitivities[:1, ..., :95], m5.mask
    )
    assert odd.shape == (1, 96, 95) and bool(torch.isfinite(odd.abs()).all())
    with pytest.raises(ReconError, match="NaN"):
        bad = ksp.clone()
        bad[1, 2, 3, 4] = float("nan")
        cg_sense(bad, sim8.sensitivities, m.mask)
    with pytest.raises(ReconError, match="does not match"):
        cg_sense(ksp, sim8.sensitivities, torch.ones(1, 1, 1, 90))
    with pytest.raises(ReconError, match="sensitivities shape"):
        cg_sense(ksp, sim8.sensitivities[:, :4], m.mask)
    with pytest.raises(ReconError, match="1D mask"):
        sense_unfold(ksp, sim8.sensitivities, torch.ones(1, 1, 96, 96))


def test_too_few_acs_lines_for_espirit_is_refused_not_garbage():
    """8 ACS lines with a 6-wide kernel used to give NMSE > 1 silently; now a clear error."""
    import pytest
    import torch

    from recon_engine.registry import ReconError, ReconInput, get_method
    from recon_engine.sampling import uniform_mask
    from recon_engine.simulation import simulate_multicoil

    image = torch.zeros(1, 64, 64)
    image[:, 16:48, 16:48] = 1.0
    sim = simulate_multicoil(image, n_coils=8, snr=None, seed=0)
    m = uniform_mask((64, 64), 2, acs_lines=8)
    data = ReconInput(kspace=sim.kspace * m.mask, mask=m.mask, acs_mask=m.acs_mask)
    spec = get_method("cg_sense")
    with pytest.raises(ReconError, match="ACS region is .* smaller than the 12 x 12"):
        spec.run(data, spec.validate({}))
