"""SMS simulation (CAIPI collapse) and slice-GRAPPA separation."""

from __future__ import annotations

import numpy as np
import pygrappa
import pytest
import torch

from recon_engine.fft import ifftc, rss
from recon_engine.registry import ParameterError, ReconError
from recon_engine.sampling import sms_caipi_phases
from recon_engine.sms import (
    acquired_lattice,
    caipi_phase,
    calibrate_slice_grappa,
    collapse_sms,
    sense_sms,
    separate_slices,
    slice_groups,
    slice_leakage,
)

from .conftest import make_data, nrmse


@pytest.fixture(scope="module")
def six():
    """Six 8-coil 64x64 brain slices whose coil profiles change along the slab."""
    return make_data(6, 64, 8, noise=0.01)


def _ref(k: torch.Tensor, n: int = 24) -> tuple[torch.Tensor, np.ndarray]:
    w = k.shape[-1]
    lines = np.arange(w // 2 - n // 2, w // 2 + n // 2)
    return k[..., lines], lines


def test_slice_groups_are_spread_over_the_slab():
    assert slice_groups(6, 2).tolist() == [[0, 3], [1, 4], [2, 5]]
    assert slice_groups(6, 3).tolist() == [[0, 2, 4], [1, 3, 5]]
    assert slice_groups(4, 1).tolist() == [[0], [1], [2], [3]]


def test_collapse_is_a_caipi_shifted_sum(six):
    k = six["kspace"]
    assert torch.equal(collapse_sms(k, 1, 1), k)
    groups = slice_groups(6, 3)
    col = collapse_sms(k, 3, 4)  # FOV/4 shifts: 0, 16, 32 pixels
    images = ifftc(k)
    expected = sum(torch.roll(images[groups[:, j]], 16 * j, dims=-1) for j in range(3))
    assert torch.allclose(ifftc(col), expected, atol=1e-5 * float(images.abs().max()))


def test_caipi_phase_is_unit_modulus_and_matches_the_sampling_module():
    ph = caipi_phase(np.arange(10), 10, 3, 3)
    assert torch.allclose(ph.abs(), torch.ones_like(ph.abs()))
    assert torch.allclose(ph[0], torch.ones(10, dtype=torch.complex64))
    assert torch.allclose(ph, sms_caipi_phases(3, 10, 3))  # one convention platform-wide


@pytest.mark.parametrize(("mb", "max_err", "max_leak"), [(2, 0.03, 0.002), (3, 0.05, 0.005)])
def test_split_slice_grappa_separates_slices(six, mb, max_err, max_leak):
    k, gt = six["kspace"], six["rss"]
    ref, lines = _ref(k)
    kern = calibrate_slice_grappa(ref, lines, 64, mb, mb, (5, 5), 0.01, split=True)
    sep = separate_slices(collapse_sms(k, mb, mb), kern)
    for i in range(6):
        assert nrmse(rss(ifftc(sep[i : i + 1]), 1), gt[i : i + 1]) < max_err
    leak = slice_leakage(k, kern)
    eye = torch.eye(mb, dtype=torch.bool)
    assert float(leak[:, ~eye].max()) < max_leak
    assert float(leak[:, eye].min()) > 0.95


def test_split_slice_grappa_leaks_less_than_slice_grappa(six):
    k = six["kspace"]
    ref, lines = _ref(k)
    eye = torch.eye(3, dtype=torch.bool)
    leaks = {}
    for split in (False, True):
        kern = calibrate_slice_grappa(ref, lines, 64, 3, 3, (5, 5), 0.01, split=split)
        leaks[split] = float(slice_leakage(k, kern)[:, ~eye].mean())
    assert leaks[True] < 0.2 * leaks[False]


def test_caipi_shift_is_what_makes_mb3_separable(six):
    k, gt = six["kspace"], six["rss"]
    ref, lines = _ref(k)
    errs = {}
    for fov_shift in (1, 3):
        kern = calibrate_slice_grappa(ref, lines, 64, 3, fov_shift, (5, 5), 0.01, split=True)
        errs[fov_shift] = nrmse(
            rss(ifftc(separate_slices(collapse_sms(k, 3, fov_shift), kern)), 1), gt
        )
    assert errs[3] < 0.5 * errs[1]


@pytest.mark.parametrize("split", [False, True])
def test_matches_pygrappa_slicegrappa(six, split):
    """One MB=2 group separated by pygrappa's (split-)slice-GRAPPA on the same inputs."""
    k = six["kspace"]
    mb, fov_shift = 2, 2
    ref, lines = _ref(k)
    kern = calibrate_slice_grappa(ref, lines, 64, mb, fov_shift, (5, 5), 0.01, split=split)
    col = collapse_sms(k, mb, fov_shift)
    ours = separate_slices(col, kern)
    groups = slice_groups(6, mb)
    phase = caipi_phase(np.arange(64), 64, mb, fov_shift)
    g = 1
    calib = (k[groups[g]] * phase[:, None, None, :])[..., lines]  # CAIPI-shifted reference
    theirs = pygrappa.slicegrappa(
        col[g].permute(1, 2, 0).numpy()[..., None],
        calib.permute(2, 3, 1, 0).numpy(),
        kernel_size=(5, 5),
        prior="sim",
        lamda=0.01,
        split=split,
    )
    for j in range(mb):
        ref_j = torch.from_numpy(theirs[..., 0, j]).permute(2, 0, 1) * phase[j].conj()
        assert nrmse(ours[groups[g, j]], ref_j.to(torch.complex64)) < 1e-3


def test_inplane_lattice_detection():
    line = np.zeros(32, dtype=bool)
    line[1::3] = True
    line[12:20] = True
    assert acquired_lattice(line, (12, 20)) == (3, 1)
    assert acquired_lattice(np.ones(8, dtype=bool), (0, 8)) == (1, 0)
    line[5] = True  # an extra line off the lattice
    with pytest.raises(ReconError, match="uniform lattice"):
        acquired_lattice(line, (12, 20))


def test_bad_input_raises_clear_errors(six):
    k = six["kspace"]
    ref, lines = _ref(k)
    with pytest.raises(ParameterError, match="divisible"):
        collapse_sms(k, 4, 2)
    with pytest.raises(ParameterError, match="divisible"):
        calibrate_slice_grappa(ref, lines, 64, 4, 2)
    with pytest.raises(ParameterError, match="fov_shift"):
        collapse_sms(k, 2, 0)
    with pytest.raises(ReconError, match="too small"):
        calibrate_slice_grappa(ref[..., :4], lines[:4], 64, 2, 2, (5, 5))
    with pytest.raises(ReconError, match=r"\(S, C, H, W\)"):
        collapse_sms(k[0], 2, 2)
    kern = calibrate_slice_grappa(ref, lines, 64, 2, 2)
    with pytest.raises(ReconError, match="calibrated for"):
        separate_slices(collapse_sms(k[:4], 2, 2), kern)


def test_sense_sms_matches_pixelwise_unfolding(six):
    """CG-SENSE equals the direct per-pixel SENSE solve (integer CAIPI shifts, R=1)."""
    k, maps = six["kspace"], six["maps"]
    mb, fov_shift, lamda = 3, 4, 1e-3
    col = collapse_sms(k, mb, fov_shift)
    ours, info = sense_sms(col, torch.ones(64), maps, mb, fov_shift, 200, lamda, tol=1e-7)
    assert info["relative_residual"] < 1e-5
    lam = info["lambda_eff"]
    groups = slice_groups(6, mb)
    y = ifftc(col).numpy()  # (G, C, H, W): coil images of the collapsed data
    expected = np.zeros((6, 64, 64), dtype=np.complex128)
    for g in range(groups.shape[0]):
        shifts = [16 * j for j in range(mb)]
        # E[x, c, j] = S_j,c(x - shift_j) for every pixel x
        e = np.stack(
            [np.roll(maps[groups[g, j]].numpy(), shifts[j], axis=-1) for j in range(mb)], -1
        ).transpose(1, 2, 0, 3)  # (H, W, C, MB)
        eh = e.conj().swapaxes(-1, -2)
        u = np.linalg.solve(eh @ e + lam * np.eye(mb), eh @ y[g].transpose(1, 2, 0)[..., None])[
            ..., 0
        ]  # (H, W, MB) = rho_j(x - shift_j)
        for j in range(mb):
            expected[groups[g, j]] = np.roll(u[..., j], -shifts[j], axis=-1)
    assert nrmse(ours, torch.from_numpy(expected).to(torch.complex64)) < 1e-3
    assert nrmse(ours, six["image"]) < 0.1


def test_sense_sms_with_inplane_undersampling(six):
    k, maps = six["kspace"], six["maps"]
    mask = torch.zeros(64)
    mask[::2] = 1
    no_caipi, _ = sense_sms(collapse_sms(k * mask, 2, 1), mask, maps, 2, 1, 50)
    caipi, _ = sense_sms(collapse_sms(k * mask, 2, 4), mask, maps, 2, 4, 50)
    assert nrmse(caipi, six["image"]) < 0.08
    assert nrmse(caipi, six["image"]) < nrmse(no_caipi, six["image"])
    with pytest.raises(ReconError, match="sensitivities"):
        sense_sms(collapse_sms(k, 2, 2), torch.ones(64), maps[:4], 2, 2)
