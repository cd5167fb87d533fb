"""Sampling masks: fastMRI equivalence, analytic lattices, reproducibility, bad parameters."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from recon_engine.fft import fftc, ifftc
from recon_engine.registry import ParameterError
from recon_engine.sampling import (
    PATTERNS,
    caipirinha_mask,
    equispaced_mask,
    make_mask,
    poisson_disc_mask,
    random_mask,
    sms_caipi_phases,
    uniform_mask,
    variable_density_mask,
)


def _fastmri_subsample():
    """fastMRI's ``fastmri/data/subsample.py`` loaded on its own (the package's
    ``__init__`` pulls in optional dependencies such as ``requests``)."""
    spec = importlib.util.find_spec("fastmri")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("fastmri is not installed (pip install fastmri --no-deps)")
    path = Path(spec.submodule_search_locations[0]) / "data" / "subsample.py"
    mod_spec = importlib.util.spec_from_file_location("_fastmri_subsample", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


CASES = [(w, acc, cf) for w in (64, 97, 320, 368) for acc, cf in ((4, 0.08), (8, 0.04), (3, 0.1))]


@pytest.mark.parametrize("w,acc,cf", CASES)
def test_random_and_equispaced_match_fastmri(w, acc, cf):
    fm = _fastmri_subsample()
    for seed in range(4):
        ref, n_low = fm.RandomMaskFunc([cf], [acc])((1, 12, w, 2), seed=seed)
        ours = random_mask((12, w), acc, center_fraction=cf, seed=seed)
        np.testing.assert_array_equal(ours.mask.numpy().ravel(), ref.numpy().ravel())
        assert ours.n_acs == n_low
        ref, _ = fm.EquispacedMaskFractionFunc([cf], [acc])((1, 12, w, 2), seed=seed)
        ours = equispaced_mask((12, w), acc, center_fraction=cf, seed=seed)
        np.testing.assert_array_equal(ours.mask.numpy().ravel(), ref.numpy().ravel())


def test_random_mask_probability_gives_nominal_acceleration_on_average():
    w, acc = 368, 4
    counts = [random_mask((8, w), acc, 0.08, seed=s).mask.sum().item() for s in range(300)]
    # expected count is exactly W / acc; SD of the mean ~ sqrt(W p (1-p) / 300) ~ 0.4
    assert abs(np.mean(counts) - w / acc) < 2.0


def test_equispaced_effective_acceleration_close_to_nominal():
    for acc, cf in ((4, 0.08), (8, 0.04)):
        res = equispaced_mask((16, 368), acc, cf, seed=1)
        assert res.effective_acceleration == pytest.approx(acc, rel=0.05)
        line = res.mask.numpy().ravel().astype(bool)
        outside = np.flatnonzero(line & (res.acs_mask.numpy().ravel() == 0))
        gaps = np.diff(outside)
        assert gaps.min() >= np.floor(gaps.mean()) - 1  # equispaced, not random


def test_uniform_mask_lines_and_acs():
    res = uniform_mask((64, 100), 4, acs_lines=10, offset=1)
    line = res.mask.numpy().ravel()
    acs = res.acs_mask.numpy().ravel()
    assert res.mask.shape == (1, 1, 1, 100) and res.mask.dtype == torch.float32
    assert acs.sum() == 10 and acs[50] == 1 and acs[45:55].all()
    expected = np.zeros(100)
    expected[1::4] = 1
    expected[45:55] = 1
    np.testing.assert_array_equal(line, expected)
    assert res.effective_acceleration == pytest.approx(100 / expected.sum())
    assert res.seed is None and res.pattern == "uniform"


def test_variable_density_exact_count_and_density_falls_off():
    w, acc = 256, 4
    total = np.zeros(w)
    for seed in range(60):
        res = variable_density_mask((32, w), acc, acs_lines=16, seed=seed)
        line = res.mask.numpy().ravel()
        assert line.sum() == round(w / acc)
        assert line[res.acs_mask.numpy().ravel() == 1].all()
        total += line
    k = np.abs(np.arange(w) - w // 2)
    inner = total[(k > 8) & (k < 40)].mean()
    outer = total[k > 90].mean()
    assert inner > 3 * outer


def test_poisson_disc_acceleration_calibration_and_density():
    res = poisson_disc_mask((96, 80), 6, calib=(16, 12), seed=3)
    mask = res.mask[0, 0].numpy()
    assert res.mask.shape == (1, 1, 96, 80)
    assert abs(res.effective_acceleration - 6) < 0.1
    acs = res.acs_mask[0, 0].numpy()
    assert acs.sum() == 16 * 12 and mask[acs == 1].all()
    assert mask[48, 40] == 1
    yy, xx = np.mgrid[:96, :80]
    r = np.hypot((yy - 48) / 48, (xx - 40) / 40)
    assert mask[(r > 0.25) & (r < 0.5)].mean() > 1.5 * mask[(r > 0.75) & (r < 1.0)].mean()
    # corners cropped: outside the ellipse through the edges of the calibration-shrunk grid
    ry_ = np.maximum(np.abs(yy - 48) - 8, 0) / 40
    rx_ = np.maximum(np.abs(xx - 40) - 6, 0) / 34
    assert mask[np.hypot(ry_, rx_) >= 1].sum() == 0
    # Poisson-disc samples repel: far fewer horizontally adjacent pairs in the periphery
    # than an independent random pattern of the same local density would give
    ring = (r > 0.5) & (r < 0.9)
    pairs = (mask[:, 1:] * mask[:, :-1])[ring[:, 1:] & ring[:, :-1]].sum()
    density = mask[ring].mean()
    expected_iid = density**2 * (ring[:, 1:] & ring[:, :-1]).sum()
    assert pairs < 0.25 * expected_iid


def test_caipirinha_matches_reciprocal_lattice():
    """The lattice's point-spread function peaks exactly on its reciprocal lattice:
    (u, v) with ``u rz / H`` and ``u shift / H + v ry / W`` integers."""
    h, w = 24, 24
    for ry, rz, shift in ((2, 2, 1), (3, 2, 1), (2, 3, 1), (2, 3, 2), (2, 2, 0)):
        res = caipirinha_mask((h, w), ry, rz, shift, calib=(0, 0))
        m = res.mask[0, 0].numpy()
        assert m.sum() == h * w / (ry * rz)
        psf = np.abs(np.fft.fft2(m))
        u, v = np.mgrid[:h, :w]
        a = u * rz / h
        b = u * shift / h + v * ry / w
        expected = (np.abs(a - np.round(a)) < 1e-9) & (np.abs(b - np.round(b)) < 1e-9)
        np.testing.assert_array_equal(psf > 1e-6, expected)
        assert res.acceleration == ry * rz


def test_caipirinha_shift_moves_kz_per_ky_line():
    res = caipirinha_mask((12, 12), 2, 3, 1, calib=(4, 4))
    m = res.mask[0, 0].numpy()
    lattice = m - res.acs_mask[0, 0].numpy()
    first = [np.flatnonzero(m[:, ky] * (lattice[:, ky] >= 0))[0] for ky in (0, 2, 4)]
    assert first == [0, 1, 2]
    assert m[4:8, 4:8].all()
    assert res.effective_acceleration == pytest.approx(144 / m.sum())


def test_sms_caipi_phase_is_a_circular_fov_shift():
    img = torch.randn(1, 1, 8, 30, dtype=torch.complex64)
    phases = sms_caipi_phases(3, 30, 3)
    assert phases.shape == (3, 30)
    for j in range(3):
        shifted = ifftc(fftc(img) * phases[j])
        torch.testing.assert_close(shifted, torch.roll(img, j * 10, dims=-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(sms_caipi_phases(2, 16, 1), torch.ones(2, 16, dtype=torch.complex64))


@pytest.mark.parametrize("pattern", PATTERNS)
def test_seeded_reproducibility(pattern):
    a = make_mask(pattern, (48, 64), 4, seed=5, center_fraction=0.125)
    b = make_mask(pattern, (48, 64), 4, seed=5, center_fraction=0.125)
    torch.testing.assert_close(a.mask, b.mask)
    assert a.pattern == pattern
    assert a.effective_acceleration == pytest.approx(a.mask.numel() / a.mask.sum().item())
    if pattern in ("random", "equispaced", "variable_density", "poisson"):
        c = make_mask(pattern, (48, 64), 4, seed=6, center_fraction=0.125)
        assert not torch.equal(a.mask, c.mask)
        assert a.seed == 5
    else:
        assert a.seed is None


def test_make_mask_translates_center_fraction_and_factors_caipi():
    res = make_mask("uniform", (64, 100), 4, center_fraction=0.1)
    assert res.n_acs == 10
    res = make_mask("caipirinha", (32, 32), 6, center_fraction=0.25)
    assert res.acs_mask.sum() == 8 * 8
    ry_grid = make_mask("caipirinha", (32, 32), 6, calib=(0, 0)).mask[0, 0].numpy()
    assert ry_grid[:, 1].sum() == 0 and ry_grid[:, 3].sum() > 0  # ry = 3, rz = 2
    assert ry_grid[:, 0].sum() == 16


@pytest.mark.parametrize(
    "call",
    [
        lambda: uniform_mask((32, 32), 0),
        lambda: uniform_mask((32, 32), 2.5),
        lambda: uniform_mask((32, 32), 2, acs_lines=40),
        lambda: uniform_mask((32,), 2),
        lambda: random_mask((32, 64), 0.5),
        lambda: random_mask((32, 64), 8, center_fraction=0.5),
        lambda: equispaced_mask((32, 64), 8, center_fraction=0.2),
        lambda: variable_density_mask((32, 64), 8, acs_lines=24),
        lambda: poisson_disc_mask((32, 32), 8, calib=(24, 24)),
        lambda: poisson_disc_mask((32, 32), 4, calib=(40, 4)),
        lambda: caipirinha_mask((32, 32), 0, 2),
        lambda: caipirinha_mask((32, 32), 2, 2, shift=-1),
        lambda: make_mask("spiral", (32, 32), 4),
        lambda: make_mask("caipirinha", (32, 32), 4, ry=3, rz=2),
        lambda: make_mask("random", (32, 32), 4, acs_lines=4),
        lambda: sms_caipi_phases(0, 32, 2),
    ],
)
def test_bad_parameters_raise(call):
    with pytest.raises(ParameterError):
        call()
