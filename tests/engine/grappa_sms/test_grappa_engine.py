"""GRAPPA engine: analytic checks, an explicit least-squares reference, and pygrappa."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pygrappa import mdgrappa

from recon_engine.fft import ifftc, rss
from recon_engine.grappa import coil_combine, find_acs, grappa_kspace
from recon_engine.registry import ParameterError, ReconError

from .conftest import line_mask, make_data, nrmse, random_line_mask


def _rss(k: torch.Tensor) -> torch.Tensor:
    return rss(ifftc(k), coil_dim=1)


def test_fully_sampled_input_is_unchanged(brain8):
    k = brain8["kspace"]
    ones = torch.ones(1, 1, 1, k.shape[-1])
    res = grappa_kspace(k, ones)
    assert torch.equal(res.kspace, k)
    res2d = grappa_kspace(k, torch.ones(1, 1, *k.shape[-2:]))
    assert torch.equal(res2d.kspace, k)


@pytest.mark.parametrize("mask_kind", ["uniform", "random"])
def test_acquired_samples_are_kept_exactly(brain8, mask_kind):
    k = brain8["kspace"]
    w = k.shape[-1]
    mask = line_mask(w, 3, 16) if mask_kind == "uniform" else random_line_mask(w, 3, 16, seed=3)
    res = grappa_kspace(k * mask, mask, kernel_ry=2)
    keep = mask.bool().expand_as(k)
    assert torch.equal(res.kspace[keep], k[keep])
    missing = ~keep
    filled = (res.kspace.abs() > 0).any(dim=(0, 1, 2)).numpy()
    line = mask.reshape(-1).bool().numpy()
    acquired = np.flatnonzero(line)
    distance = np.abs(np.arange(w)[:, None] - acquired[None, :]).min(axis=1)
    # lines with an acquired neighbour within the reach (2 for non-uniform masks) are filled
    assert np.array_equal(filled, distance <= res.info["reach"])
    assert res.info["unfilled_lines"] == int((distance > res.info["reach"]).sum())
    assert missing.any()


def test_noiseless_uniform_r2_recovers_smooth_object():
    data = make_data(1, 96, 8, smooth=True)
    k = data["kspace"]
    mask = line_mask(96, 2, 32)
    res = grappa_kspace(k * mask, mask, kernel_ry=2, kernel_rx=5, lamda=1e-6, pad_acs=False)
    missing = k * (1 - mask)  # error relative to the energy that had to be recovered
    err = float(torch.linalg.norm(res.kspace - k) / torch.linalg.norm(missing))
    assert err < 0.1, err  # zero filling: 1.0
    assert nrmse(res.kspace, k) < 3e-4
    assert nrmse(_rss(res.kspace), data["rss"]) < 1e-3


def _explicit_line_kernel(
    calib: np.ndarray, offsets: list[int], rx: int, lamda: float, pad: bool
) -> np.ndarray:
    """Weights (n_src, C) from the calibration matrix built row by row (reference).

    pad: every ACS point is a target and sources outside the ACS are zero; otherwise only
    positions where the whole kernel lies inside the ACS are used.
    """
    c, hc, na = calib.shape
    p = max(abs(d) for d in offsets)
    padded = np.pad(calib, ((0, 0), (rx // 2, rx - 1 - rx // 2), (p, p)))
    rows, targets = [], []
    for t in range(na):
        if not pad and not all(0 <= t + d < na for d in offsets):
            continue
        for h in range(hc) if pad else range(rx // 2, hc - rx + 1 + rx // 2):
            window = [padded[:, h : h + rx, p + t + d] for d in offsets]
            rows.append(np.concatenate([x.reshape(-1) for x in window]))
            targets.append(calib[:, h, t])
    a = np.array(rows, dtype=np.complex128)
    b = np.array(targets, dtype=np.complex128)
    gram = a.conj().T @ a
    lam = lamda * np.linalg.norm(gram) / gram.shape[0]
    return np.linalg.solve(gram + lam * np.eye(gram.shape[0]), a.conj().T @ b)


@pytest.mark.parametrize("pad", [True, False])
def test_kernels_match_explicit_least_squares_on_random_mask(brain8, pad):
    """The prefix-sum calibration equals the textbook per-geometry least-squares solve."""
    k = brain8["kspace"][0].numpy()
    w, rx, lamda = k.shape[-1], 3, 0.01
    mask = random_line_mask(w, 3, 16, seed=5)
    res = grappa_kspace(
        brain8["kspace"] * mask,
        mask,
        kernel_ry=2,
        kernel_rx=rx,
        lamda=lamda,
        max_reach=4,
        pad_acs=pad,
    )
    line = mask.numpy().reshape(-1).astype(bool)
    acs = find_acs(torch.from_numpy(np.broadcast_to(line, (k.shape[1], w)).copy()))[1]
    calib = k[:, :, acs]
    sampled = np.flatnonzero(line)
    checked = 0
    for t in np.flatnonzero(~line)[::3]:  # every third missing line keeps the test quick
        prev, nxt = sampled[sampled < t], sampled[sampled > t]
        offsets = [int(prev[-1] - t)] if prev.size and t - prev[-1] <= 4 else []
        offsets += [int(nxt[0] - t)] if nxt.size and nxt[0] - t <= 4 else []
        if not offsets:
            assert not res.kspace[0, :, :, t].any()  # nothing within reach: left unfilled
            continue
        wts = _explicit_line_kernel(calib, offsets, rx, lamda, pad)
        kp = np.pad(k, ((0, 0), (rx // 2, rx // 2), (0, 0)))
        src = np.stack(
            [
                np.concatenate([kp[:, h : h + rx, t + d].reshape(-1) for d in offsets])
                for h in range(k.shape[1])
            ]
        )
        expected = src @ wts  # (H, C)
        got = res.kspace[0, :, :, t].numpy().T
        assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < 1e-3
        checked += 1
    assert checked > 8


def _mdgrappa(kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """pygrappa's mdgrappa (5x5 window, lamda 0.01) on slice 0 with the same ACS block."""
    ku = (kspace * mask)[0].permute(1, 2, 0).numpy().astype(np.complex128)
    rows, cols = find_acs(mask[0, 0].expand(kspace.shape[-2], -1))
    calib = np.ascontiguousarray(ku[rows, cols])
    out = mdgrappa(ku, calib, kernel_size=(5, 5), coil_axis=-1, lamda=0.01)
    return torch.from_numpy(out).permute(2, 0, 1)[None].to(torch.complex64)


def _masks(w: int) -> dict:
    return {
        "uniform R=2": line_mask(w, 2, 16),
        "uniform R=3": line_mask(w, 3, 16),
        "random R=3": random_line_mask(w, 3, 16, seed=1),
    }


@pytest.mark.parametrize("name", ["uniform R=2", "uniform R=3", "random R=3"])
def test_same_geometry_as_mdgrappa_gives_the_same_kspace(brain8, name):
    """With mdgrappa's geometry (every acquired line within +-2, zero-padded ACS, same
    lambda scaling) the result equals pygrappa's away from the two readout edge rows,
    where mdgrappa's window patterns are cut by its zero padding."""
    k = brain8["kspace"]
    mask = _masks(k.shape[-1])[name]
    ours = grappa_kspace(k * mask, mask, kernel_ry=4, max_reach=2).kspace
    theirs = _mdgrappa(k, mask)
    inner = slice(2, -2)
    assert nrmse(ours[..., inner, :], theirs[..., inner, :]) < 1e-4
    assert nrmse(_rss(ours), brain8["rss"]) <= 1.01 * nrmse(_rss(theirs), brain8["rss"])


@pytest.mark.parametrize("name", ["uniform R=2", "uniform R=3", "random R=3"])
def test_defaults_at_least_as_accurate_as_mdgrappa(brain8, name):
    k, gt = brain8["kspace"], brain8["rss"]
    mask = _masks(k.shape[-1])[name]
    ours = nrmse(_rss(grappa_kspace(k * mask, mask).kspace), gt)
    theirs = nrmse(_rss(_mdgrappa(k, mask)), gt)
    assert ours <= 1.02 * theirs, (ours, theirs)
    assert ours < 0.75 * nrmse(_rss(k * mask), gt)


def caipi_mask(h: int, w: int, ry: int, rz: int, shift: int, calib: int) -> torch.Tensor:
    m = torch.zeros(h, w)
    for row in range(0, h, ry):
        m[row, ((row // ry) * shift) % rz :: rz] = 1
    c0h, c0w = h // 2 - calib // 2, w // 2 - calib // 2
    m[c0h : c0h + calib, c0w : c0w + calib] = 1
    return m[None, None]


@pytest.mark.parametrize(("rz", "shift"), [(2, 1), (3, 1), (3, 2)])
def test_2d_caipirinha_mask_matches_pygrappa_mdgrappa(rz, shift):
    """2D (ky x kz) undersampling: same window geometry as mdgrappa, same k-space."""
    data = make_data(1, 48, 8, noise=0.02)
    k, gt = data["kspace"], data["rss"]
    mask = caipi_mask(48, 48, 2, rz, shift, 16)
    res = grappa_kspace(k * mask, mask, window=(5, 5), lamda=0.01)
    assert res.info["geometry"] == "2d" and res.info["unfilled_points"] == 0
    assert torch.equal(res.kspace[mask.bool().expand_as(k)], k[mask.bool().expand_as(k)])
    ku = (k * mask)[0].permute(1, 2, 0).numpy().astype(np.complex128)
    rows, cols = find_acs(mask[0, 0])
    ref = mdgrappa(ku, np.ascontiguousarray(ku[rows, cols]), kernel_size=(5, 5), lamda=0.01)
    ref_k = torch.from_numpy(ref).permute(2, 0, 1)[None].to(torch.complex64)
    assert nrmse(res.kspace, ref_k) < 1e-4
    assert nrmse(_rss(res.kspace), gt) < 0.6 * nrmse(_rss(k * mask), gt)


def test_batch_equals_per_slice_and_per_slice_masks():
    data = make_data(3, 48, 8, noise=0.02)
    k = data["kspace"]
    mask = line_mask(48, 2, 16)
    batch = grappa_kspace(k * mask, mask, kernel_ry=2).kspace
    for i in range(3):
        single = grappa_kspace(k[i : i + 1] * mask, mask, kernel_ry=2).kspace
        assert torch.allclose(batch[i : i + 1], single, rtol=1e-4, atol=1e-5 * k.abs().max())
    masks = torch.cat([line_mask(48, 2, 16), line_mask(48, 3, 16, 1), line_mask(48, 2, 16)])
    per = grappa_kspace(k * masks, masks, kernel_ry=2)
    assert per.info["mask_groups"] == 2
    other = grappa_kspace(k[1:2] * masks[1:2], masks[1:2], kernel_ry=2).kspace
    assert torch.allclose(per.kspace[1:2], other, rtol=1e-4, atol=1e-5 * k.abs().max())


def test_separate_calibration_scan_is_used():
    data = make_data(2, 48, 8, noise=0.02)
    k = data["kspace"]
    mask = torch.zeros(1, 1, 1, 48)
    mask[..., ::2] = 1  # no ACS in the data at all
    with pytest.raises(ReconError):
        grappa_kspace(k * mask, mask)
    calib = k[..., 12:36]
    res = grappa_kspace(k * mask, mask, calib=calib, kernel_ry=2)
    assert nrmse(_rss(res.kspace), data["rss"]) < 0.5 * nrmse(_rss(k * mask), data["rss"])


def test_sensitivity_weighted_combination_returns_the_object(brain8):
    image = coil_combine(brain8["kspace"], None)
    assert torch.allclose(image, brain8["rss"])
    clean = make_data(1, 64, 8)
    combined = coil_combine(clean["kspace"], clean["maps"])
    assert nrmse(combined, clean["image"]) < 1e-5


def test_bad_input_raises_clear_errors(brain8):
    k = brain8["kspace"]
    w = k.shape[-1]
    mask = line_mask(w, 4, 8)
    with pytest.raises(ReconError, match="ACS too small"):
        grappa_kspace(k * mask, mask, kernel_ry=4)  # 4 lines at R=4 span 13 > 8 ACS lines
    with pytest.raises(ParameterError, match="kernel_rx"):
        grappa_kspace(k * line_mask(w, 2, 16), line_mask(w, 2, 16), kernel_rx=999)
    few = k[:, :3]
    with pytest.raises(ReconError, match="exceeds the number of coils"):
        grappa_kspace(few * line_mask(w, 4, 24), line_mask(w, 4, 24), kernel_ry=2)
    with pytest.raises(ReconError, match=r"\(S, C, H, W\)"):
        grappa_kspace(k[0], mask)
    bad = k.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ReconError, match="NaN"):
        grappa_kspace(bad, mask)
    with pytest.raises(ReconError, match="does not match"):
        grappa_kspace(k, torch.ones(1, 1, 1, 32))
    with pytest.raises(ReconError, match="only 0 and 1"):
        grappa_kspace(k, mask * 0.5)
    with pytest.raises(ParameterError, match="lamda"):
        grappa_kspace(k * mask, mask, lamda=-1.0)
    with pytest.raises(ReconError, match="all zero"):
        grappa_kspace(k * 0, torch.zeros(1, 1, 1, w))
    with pytest.raises(ReconError, match="no acquired lines"):
        grappa_kspace(k, torch.zeros(1, 1, 1, w))
    twod = caipi_mask(w, w, 2, 2, 1, 4)
    with pytest.raises(ReconError, match="ACS too small"):
        grappa_kspace(k * twod, twod, window=(5, 5))


def test_irregular_2d_mask_is_refused_with_a_reason(brain8):
    k = brain8["kspace"]
    rng = np.random.default_rng(0)
    m = torch.from_numpy((rng.random((96, 96)) < 0.35).astype(np.float32))
    m[40:56, 40:56] = 1
    m = m[None, None]
    with pytest.raises(ReconError, match="distinct kernel geometries"):
        grappa_kspace(k * m, m, window=(5, 5), max_geometries=200)
