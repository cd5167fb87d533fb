"""ESPIRiT and ACS sensitivity estimates against SigPy, BART, the exact eigensolver and truth."""

from __future__ import annotations

import numpy as np
import pytest
import sigpy.mri as mr
import torch

from recon_engine import espirit as esp
from recon_engine.registry import ReconError
from recon_engine.sampling import poisson_disc_mask, uniform_mask

from .conftest import bart, from_bart, map_correlation, needs_bart, readcfl, to_bart, writecfl


@pytest.fixture(scope="module")
def case(sim8):
    m = uniform_mask((96, 96), 3, acs_lines=24)
    return sim8.kspace * m.mask, m


def test_matches_sigpy_espiritcalib(case):
    ksp, m = case
    ours = esp.espirit_maps(
        ksp[1:2], m.mask, m.acs_mask, threshold=0.02, crop=0.95, keep_signal=0.0
    )
    for s in range(1):
        ref = mr.app.EspiritCalib(
            ksp[1 + s].numpy(),
            calib_width=24,
            thresh=0.02,
            kernel_width=6,
            crop=0.95,
            show_pbar=False,
        ).run()
        mine = ours.maps[s].numpy()
        corr = map_correlation(mine, ref)
        assert corr.mean() > 0.999
        assert np.quantile(corr, 0.99) > 0.995
        support_ours = np.abs(mine).sum(0) > 0
        support_ref = np.abs(ref).sum(0) > 0
        assert (support_ours != support_ref).mean() < 0.005


@needs_bart
def test_matches_bart_ecalib(case, tmp_path):
    ksp, m = case
    k = ksp[0].numpy()
    writecfl(tmp_path / "k", to_bart(k))
    # BART thresholds squared singular values: -t 0.001 == our threshold sqrt(0.001)
    bart(tmp_path, "ecalib", "-m1", "-k6", "-r24", "-c0.95", "-t0.001", "k", "s")
    ref = from_bart(readcfl(tmp_path / "s"), 8)
    # BART's -c is the plain eigenvalue crop: compare like with like (keep_signal=0)
    mine = esp.espirit_maps(
        ksp[:1], m.mask, m.acs_mask, threshold=np.sqrt(0.001), keep_signal=0.0
    ).maps[0]
    corr = map_correlation(mine.numpy(), ref)
    assert corr.mean() > 0.998
    support = (np.abs(mine.numpy()).sum(0) > 0) != (np.abs(ref).sum(0) > 0)
    assert support.mean() < 0.01


def test_fast_path_matches_exact_eigendecomposition(case):
    """Coarse grid + refinement + eigh fix-up vs full-resolution torch.linalg.eigh."""
    ksp, m = case
    cal = esp.extract_calibration(ksp[:1], m.mask, m.acs_mask, 24, min_size=7)
    kernels, _ = esp._signal_kernels(cal, 6, 0.02)
    coef = esp._kernel_correlations(kernels)
    mfull = esp._evaluate(coef, (torch.arange(96), torch.arange(96)), (96, 96))
    evals, evecs = torch.linalg.eigh(mfull.permute(0, 3, 4, 1, 2))
    exact = evecs[..., -1].permute(0, 3, 1, 2)
    fast = esp.espirit_maps(ksp[:1], m.mask, m.acs_mask)
    inside = (evals[..., -1] > 0.95)[0].numpy()
    corr = map_correlation(fast.maps[0].numpy(), exact[0].numpy(), inside)
    assert corr.mean() > 0.9999
    assert np.quantile(corr, 0.999) > 0.999
    torch.testing.assert_close(fast.eigenvalues, evals[..., -1], rtol=0, atol=2e-3)


def test_band_limited_matrix_equals_sigpy_construction(case):
    """M(r) from kernel cross-correlations equals SigPy's full-resolution kernel images."""
    ksp, m = case
    cal = esp.extract_calibration(ksp[:1], m.mask, m.acs_mask, 24, min_size=7)
    kernels, _ = esp._signal_kernels(cal, 6, 0.02)
    coef = esp._kernel_correlations(kernels)
    mfast = esp._evaluate(coef, (torch.arange(96), torch.arange(96)), (96, 96))[0]
    g = esp.ifftc(esp.resize_centered(kernels[0], (96, 96)))  # (J, C, H, W)
    mref = torch.einsum("jcxy,jdxy->cdxy", g, g.conj()) * (96 * 96 / 36)
    torch.testing.assert_close(mfast, mref, rtol=1e-3, atol=1e-4)


def test_maps_agree_with_true_sensitivities_and_batch(sim8):
    m = poisson_disc_mask((96, 96), 3, calib=(24, 24), seed=1)
    ksp = sim8.kspace * m.mask
    res = esp.espirit_maps(ksp, m.mask, m.acs_mask)
    obj = (sim8.image.abs() > 0.1 * sim8.image.abs().amax()).numpy()
    corr = map_correlation(res.maps.numpy(), sim8.sensitivities.numpy(), obj)
    assert corr.mean() > 0.99
    single = esp.espirit_maps(ksp[2:3], m.mask, m.acs_mask)
    torch.testing.assert_close(single.maps, res.maps[2:3], rtol=1e-4, atol=1e-4)


def test_acs_sensitivities_close_to_truth(sim8):
    m = uniform_mask((96, 96), 2, acs_lines=32)
    sens = esp.acs_sensitivities(sim8.kspace * m.mask, m.mask, m.acs_mask)
    obj = (sim8.image.abs() > 0.2 * sim8.image.abs().amax()).numpy()
    corr = map_correlation(sens.numpy(), sim8.sensitivities.numpy(), obj)
    assert corr.mean() > 0.98
    rss = (sens.abs() ** 2).sum(1)
    assert torch.allclose(rss[rss > 0], torch.ones(()), atol=1e-4)


def test_bad_inputs(case):
    ksp, m = case
    with pytest.raises(ReconError, match="NaN"):
        bad = ksp.clone()
        bad[0, 0, 0, 0] = float("nan")
        esp.espirit_maps(bad, m.mask, m.acs_mask)
    with pytest.raises(ReconError, match="samples nothing"):
        esp.espirit_maps(ksp, m.mask, torch.zeros_like(m.acs_mask))
    small = uniform_mask((96, 96), 3, acs_lines=4)
    with pytest.raises(ReconError, match="smaller than"):
        esp.espirit_maps(ksp * small.mask, small.mask, small.acs_mask, kernel_size=6)
    with pytest.raises(ReconError, match="does not match"):
        esp.espirit_maps(ksp, torch.ones(1, 1, 1, 95))
    with pytest.raises(ReconError, match="no signal"):
        esp.espirit_maps(torch.zeros_like(ksp), m.mask, m.acs_mask)
    with pytest.raises(ReconError, match="4 dimensions"):
        esp.espirit_maps(ksp[0], m.mask, m.acs_mask)
