"""Metrics against skimage exactly as fastMRI's evaluate.py calls it, and analytic values."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from recon_engine.metrics import Timer, evaluate, nmse, psnr, ssim
from recon_engine.registry import ReconError


def fastmri_ssim(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> float:
    """fastMRI ``evaluate.ssim``: per-slice skimage SSIM, averaged over slices."""
    maxval = gt.max() if maxval is None else maxval
    total = 0.0
    for i in range(gt.shape[0]):
        total += structural_similarity(gt[i], pred[i], data_range=maxval)
    return total / gt.shape[0]


@pytest.fixture(scope="module")
def pair(brain_slices):
    gt = brain_slices.numpy().astype(np.float64)
    rng = np.random.default_rng(0)
    pred = np.abs(gt + 0.05 * rng.standard_normal(gt.shape))
    return gt, pred


def test_ssim_equals_skimage(pair):
    gt, pred = pair
    assert abs(ssim(gt, pred) - fastmri_ssim(gt, pred)) < 1e-6
    assert abs(ssim(gt, pred, maxval=2.0) - fastmri_ssim(gt, pred, 2.0)) < 1e-6
    assert abs(ssim(gt, gt) - 1.0) < 1e-12


def test_ssim_float32_and_torch_inputs(pair):
    gt, pred = (a.astype(np.float32) for a in pair)
    assert abs(ssim(gt, pred) - fastmri_ssim(gt, pred)) < 1e-5
    assert ssim(torch.from_numpy(gt), torch.from_numpy(pred)) == pytest.approx(ssim(gt, pred))


def test_ssim_nonsquare_and_other_window():
    rng = np.random.default_rng(1)
    gt = rng.random((3, 40, 23))
    pred = gt + 0.2 * rng.random((3, 40, 23))
    ref = np.mean(
        [structural_similarity(g, p, data_range=gt.max(), win_size=11) for g, p in zip(gt, pred)]
    )
    assert abs(ssim(gt, pred, win_size=11) - ref) < 1e-6


def test_psnr_and_nmse(pair):
    gt, pred = pair
    assert psnr(gt, pred) == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=gt.max()))
    mse = np.mean((gt - pred) ** 2)
    assert psnr(gt, pred) == pytest.approx(10 * np.log10(gt.max() ** 2 / mse))
    assert nmse(gt, pred) == pytest.approx(np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2)
    assert nmse(gt, gt) == 0.0
    assert nmse(gt, 0.5 * gt) == pytest.approx(0.25)
    out = evaluate(gt, pred)
    assert set(out) == {"nmse", "psnr", "ssim"}


@pytest.mark.parametrize(
    "gt,pred",
    [
        (np.ones((4, 4)), np.ones((4, 4))),
        (np.ones((2, 8, 8)), np.ones((2, 8, 9))),
        (np.ones((2, 8, 8)), np.full((2, 8, 8), np.nan)),
        (np.ones((2, 8, 8)), np.ones((2, 8, 8), dtype=np.complex64)),
    ],
)
def test_bad_input(gt, pred):
    with pytest.raises(ReconError):
        evaluate(gt, pred)


def test_ssim_window_larger_than_image():
    with pytest.raises(ReconError):
        ssim(np.ones((1, 5, 5)), np.ones((1, 5, 5)))


def test_timer_accumulates_named_steps():
    timer = Timer()
    with timer("a"):
        time.sleep(0.01)
    with timer("a"):
        time.sleep(0.01)
    with timer("b"):
        pass
    assert set(timer.timings) == {"a", "b"}
    assert timer.timings["a"] >= 0.02
    assert timer.total == pytest.approx(sum(timer.timings.values()))
    with pytest.raises(RuntimeError), timer("c"):
        raise RuntimeError("boom")
    assert "c" in timer.timings
