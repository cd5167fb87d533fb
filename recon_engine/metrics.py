"""Image-quality metrics exactly as fastMRI's ``fastmri/evaluate.py``, plus step timing.

All metrics are volume level on magnitude images ``(S, H, W)`` (numpy or torch):

* ``nmse = ||gt - pred||^2 / ||gt||^2`` over the whole volume;
* ``psnr = 10 log10(maxval^2 / MSE)`` with ``maxval = gt.max()`` of the volume
  (skimage's ``peak_signal_noise_ratio``, as fastMRI);
* ``ssim`` = mean over slices of skimage's ``structural_similarity`` (7x7 uniform window,
  ``K1 = 0.01``, ``K2 = 0.03``, sample covariance, ``data_range = maxval`` where
  ``maxval = gt.max()`` of the volume), averaged over the window positions that lie
  fully inside the image.

SSIM is re-implemented vectorised over slices (skimage works one slice at a time): one
box filter over all slices and moments (scipy on CPU, torch pooling for CUDA tensors);
it matches skimage to 1e-6.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from recon_engine.registry import ReconError

__all__ = ["nmse", "psnr", "ssim", "evaluate", "Timer"]


def _pair(gt, pred, need_3d: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    gt_t = torch.as_tensor(np.asarray(gt) if not isinstance(gt, torch.Tensor) else gt)
    pred_t = torch.as_tensor(np.asarray(pred) if not isinstance(pred, torch.Tensor) else pred)
    if gt_t.is_complex() or pred_t.is_complex():
        raise ReconError("metrics need magnitude (real) images; take .abs() first")
    if need_3d and gt_t.ndim != 3:
        raise ReconError(f"ground truth must be a volume (S, H, W), got shape {tuple(gt_t.shape)}")
    if gt_t.shape != pred_t.shape:
        raise ReconError(
            f"shape mismatch: ground truth {tuple(gt_t.shape)} vs prediction {tuple(pred_t.shape)}"
        )
    if gt_t.numel() == 0:
        raise ReconError("empty images")
    for name, t in (("ground truth", gt_t), ("prediction", pred_t)):
        if not torch.isfinite(t).all():
            raise ReconError(f"{name} contains NaN or infinite values")
    return gt_t.to(torch.float64), pred_t.to(device=gt_t.device, dtype=torch.float64)


def nmse(gt, pred) -> float:
    """Normalised mean squared error ``||gt - pred||^2 / ||gt||^2`` over the volume."""
    g, p = _pair(gt, pred)
    denom = float(torch.sum(g**2))
    if denom == 0:
        raise ReconError("NMSE undefined: the ground truth is all zero")
    return float(torch.sum((g - p) ** 2)) / denom


def psnr(gt, pred, maxval: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(maxval^2 / MSE)``, ``maxval = gt.max()``
    by default (fastMRI; computed by ``skimage.metrics.peak_signal_noise_ratio``)."""
    from skimage.metrics import peak_signal_noise_ratio

    g, p = _pair(gt, pred)
    maxval = float(g.max()) if maxval is None else float(maxval)
    if bool(torch.equal(g, p)):
        return math.inf  # identical images (skimage would divide by zero and warn)
    return float(peak_signal_noise_ratio(g.cpu().numpy(), p.cpu().numpy(), data_range=maxval))


def ssim(gt, pred, maxval: float | None = None, win_size: int = 7) -> float:
    """Structural similarity: mean over slices of skimage's ``structural_similarity``
    (module doc) with ``data_range = maxval`` (default ``gt.max()`` of the volume)."""
    g, p = _pair(gt, pred)
    _, h, w = g.shape
    if win_size % 2 != 1 or win_size < 3:
        raise ReconError(f"win_size must be an odd integer >= 3, got {win_size}")
    if min(h, w) < win_size:
        raise ReconError(f"images {h}x{w} are smaller than the SSIM window {win_size}")
    maxval = float(g.max()) if maxval is None else float(maxval)
    c1 = (0.01 * maxval) ** 2
    c2 = (0.03 * maxval) ** 2
    n = win_size**2
    cov_norm = n / (n - 1)
    # skimage filters with reflect padding and then discards a (win_size - 1) / 2 border,
    # i.e. it averages only windows fully inside the image: a "valid" box filter, done
    # here for all slices and all five moments in one call.
    stack = torch.stack([g, p, g * g, p * p, g * p], dim=1)  # (S, 5, H, W)
    if stack.is_cuda:
        means = F.avg_pool2d(stack, win_size, stride=1)
    else:  # scipy's running-sum box filter beats a dense 7x7 pooling on CPU
        from scipy.ndimage import uniform_filter

        pad = (win_size - 1) // 2
        filtered = uniform_filter(stack.numpy(), size=(1, 1, win_size, win_size), mode="reflect")
        means = torch.from_numpy(filtered[..., pad : h - pad, pad : w - pad])
    mu_x, mu_y, xx, yy, xy = means.unbind(dim=1)
    vx = cov_norm * (xx - mu_x * mu_x)
    vy = cov_norm * (yy - mu_y * mu_y)
    vxy = cov_norm * (xy - mu_x * mu_y)
    num = (2 * mu_x * mu_y + c1) * (2 * vxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (vx + vy + c2)
    per_slice = (num / den).mean(dim=(-2, -1))
    return float(per_slice.mean())


def evaluate(gt, pred, maxval: float | None = None) -> dict[str, float]:
    """``{"nmse", "psnr", "ssim"}`` for one volume (fastMRI's per-volume metrics)."""
    return {"nmse": nmse(gt, pred), "psnr": psnr(gt, pred, maxval), "ssim": ssim(gt, pred, maxval)}


class Timer:
    """Wall-clock seconds per named step, for :class:`~recon_engine.registry.ReconOutput`.

    ``with timer("calibrate"): ...`` adds the elapsed time to ``timer.timings["calibrate"]``
    (repeated steps accumulate). With a CUDA ``device`` the GPU is synchronised before
    reading the clock so asynchronous kernels are counted in the right step.
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.timings: dict[str, float] = {}
        self._cuda = device is not None and torch.device(device).type == "cuda"

    def _sync(self) -> None:
        if self._cuda:
            torch.cuda.synchronize()

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start

    @property
    def total(self) -> float:
        """Sum of all recorded steps (seconds)."""
        return sum(self.timings.values())
