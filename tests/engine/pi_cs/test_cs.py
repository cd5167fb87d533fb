"""Compressed sensing: wavelet vs PyWavelets, L1-wavelet / TV vs SigPy and BART, analytic limits."""

from __future__ import annotations

import numpy as np
import pytest
import pywt
import sigpy.mri as mr
import torch

from recon_engine.cs import Wavelet2D, data_scale, l1_wavelet_sense, soft_threshold, tv_sense
from recon_engine.operators import SenseOperator
from recon_engine.registry import ParameterError, ReconError
from recon_engine.sampling import poisson_disc_mask, random_mask
from recon_engine.sense import cg_sense

from .conftest import bart, needs_bart, nrmse, readcfl, to_bart, writecfl


@pytest.mark.parametrize("wavelet,levels", [("db4", 2), ("haar", 4), ("sym4", 2), ("db2", 1)])
def test_wavelet_matches_pywavelets_periodization(wavelet, levels):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 64, 48, generator=g, dtype=torch.complex64)
    coeffs = Wavelet2D((64, 48), wavelet, levels).forward(x)
    for s in range(2):
        for part in (np.real, np.imag):
            ref, _ = pywt.coeffs_to_array(
                pywt.wavedec2(part(x[s].numpy()), wavelet, mode="periodization", level=levels)
            )
            np.testing.assert_allclose(part(coeffs[s].numpy()), ref, atol=2e-5)


def test_wavelet_rejects_bad_settings():
    with pytest.raises(ParameterError):
        Wavelet2D((64, 64), "bior2.2")
    with pytest.raises(ParameterError):
        Wavelet2D((64, 64), "nonexistent")
    with pytest.raises(ReconError):
        Wavelet2D((15, 15), "db4")


def test_soft_threshold_is_complex_shrinkage():
    x = torch.tensor([3 + 4j, 0.3 + 0.4j, 0j], dtype=torch.complex64)
    out = soft_threshold(x, 1.0)
    torch.testing.assert_close(out, torch.tensor([2.4 + 3.2j, 0, 0], dtype=torch.complex64))


@pytest.fixture(scope="module")
def poisson_case(sim8):
    m = poisson_disc_mask((96, 96), 3, calib=(24, 24), seed=1)
    ksp = sim8.kspace[:1] * m.mask
    maps = sim8.sensitivities[:1]
    scale = float(data_scale(SenseOperator(maps, m.mask).adjoint(ksp))[0])
    weights = np.broadcast_to(m.mask[0, 0].numpy(), (96, 96)).astype(np.float32)
    return ksp, maps, m.mask, scale, weights, sim8.image[:1].numpy()


def test_l1_wavelet_vs_sigpy(poisson_case):
    ksp, maps, mask, scale, weights, gt = poisson_case
    lam = 0.003 * scale
    ours = l1_wavelet_sense(ksp, maps, mask, lam, 50, cycle_spinning=False)[0].numpy()
    ref = mr.app.L1WaveletRecon(
        ksp[0].numpy(), maps[0].numpy(), lam, weights=weights, max_iter=50, show_pbar=False
    ).run()
    # same objective up to the wavelet's boundary handling (SigPy zero-pads, thresholds
    # the approximation band): similar error to the truth, close images
    assert nrmse(ours, gt[0]) < 1.1 * nrmse(ref, gt[0])
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 0.1
    spun = l1_wavelet_sense(ksp, maps, mask, lam, 50)[0].numpy()
    assert nrmse(spun, gt[0]) < nrmse(ref, gt[0])


def test_tv_vs_sigpy(poisson_case):
    ksp, maps, mask, scale, weights, gt = poisson_case
    lam = 0.003 * scale
    ours = tv_sense(ksp, maps, mask, lam, 50)[0].numpy()
    ref = mr.app.TotalVariationRecon(
        ksp[0].numpy(), maps[0].numpy(), lam, weights=weights, max_iter=50, show_pbar=False
    ).run()
    # isotropic (ours) vs anisotropic (SigPy) TV: same error range, close images
    assert nrmse(ours, gt[0]) < 1.1 * nrmse(ref, gt[0])
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 0.1


@needs_bart
@pytest.mark.parametrize("reg", ["W:3:0:0.005", "T:3:0:0.005"])
def test_cs_vs_bart_pics(poisson_case, tmp_path, reg):
    ksp, maps, mask, scale, _, gt = poisson_case
    writecfl(tmp_path / "k", to_bart(ksp[0].numpy()))
    writecfl(tmp_path / "m", to_bart(maps[0].numpy()))
    bart(tmp_path, "pics", "-S", "-i50", "-R", reg, "k", "m", "x")
    ref = readcfl(tmp_path / "x").reshape(96, 96)
    fn = l1_wavelet_sense if reg.startswith("W") else tv_sense
    ours = fn(ksp, maps, mask, 0.003 * scale, 50)[0].numpy()
    assert nrmse(ours, gt[0]) < 1.15 * nrmse(ref, gt[0])
    assert np.linalg.norm(np.abs(ours) - np.abs(ref)) / np.linalg.norm(ref) < 0.15


def test_zero_lambda_converges_to_least_squares(sim8):
    """With lamda = 0 both solvers minimise ||Ax - y||^2: residual reaches the CG optimum."""
    m = random_mask((96, 96), 2, center_fraction=0.1, seed=2)
    ksp, maps = sim8.kspace[:1] * m.mask, sim8.sensitivities[:1]
    op = SenseOperator(maps, m.mask)
    ls, _ = cg_sense(ksp, maps, m.mask, 0.0, 300, tol=1e-7)
    best = float((op.forward(ls) - ksp).norm())
    start = float(ksp.norm())
    for fn in (l1_wavelet_sense, tv_sense):
        x = fn(ksp, maps, m.mask, 0.0, 200)
        resid = float((op.forward(x) - ksp).norm())
        assert (resid - best) < 0.01 * (start - best)


def test_larger_lambda_gives_sparser_solution(poisson_case):
    ksp, maps, mask, scale, _, _ = poisson_case
    wav = Wavelet2D((96, 96), "db4", 4)

    def l1(x):
        return float((wav.forward(x).abs() * wav.detail_weights).sum())

    small = l1_wavelet_sense(ksp, maps, mask, 0.001 * scale, 40, cycle_spinning=False)
    large = l1_wavelet_sense(ksp, maps, mask, 0.05 * scale, 40, cycle_spinning=False)
    assert l1(large) < 0.7 * l1(small)


def test_batch_equals_single_slices(sim8):
    m = random_mask((96, 96), 3, seed=3)
    ksp = sim8.kspace * m.mask
    for fn in (l1_wavelet_sense, tv_sense):
        batch = fn(ksp, sim8.sensitivities, m.mask, 1e-3, 10)
        one = fn(ksp[1:2], sim8.sensitivities[1:2], m.mask, 1e-3, 10)
        torch.testing.assert_close(batch[1:2], one, rtol=1e-4, atol=1e-5)


def test_bad_inputs(poisson_case):
    ksp, maps, mask, *_ = poisson_case
    bad = ksp.clone()
    bad[0, 0, 1, 1] = float("nan")
    with pytest.raises(ReconError, match="NaN"):
        l1_wavelet_sense(bad, maps, mask, 0.01)
    with pytest.raises(ReconError, match="does not match"):
        tv_sense(ksp, maps, mask[..., :90], 0.01)
    with pytest.raises(ParameterError):
        tv_sense(ksp, maps, mask, 0.01, max_iter=0)
