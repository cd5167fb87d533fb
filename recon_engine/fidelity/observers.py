"""Model observers for a signal known exactly: d' and AUC over noise realisations.

Inputs are two stacks of reconstructed magnitude images, lesion-absent ``g0`` and
lesion-present ``g1``, each ``(N, H, W)`` (N noise realisations), and a region of
interest around the finding. Two observers (Barrett & Myers, *Foundations of Image
Science*, 2004, ch. 13; definitions in the project's fidelity-lab design note):

- non-prewhitening matched filter (NPW): template ``w = mean(g1) - mean(g0)``, statistic
  ``t = w . g``;
- channelized Hotelling (CHO): Laguerre-Gauss channels ``U`` centred on the finding,
  ``v = U^T g``, ``w = S^-1 (mean(v1) - mean(v0))`` with ``S`` the mean of the two channel
  covariances.

For both, ``d' = (mean(t1) - mean(t0)) / sqrt((var(t1) + var(t0)) / 2)`` and
``AUC = Phi(d' / sqrt(2))`` (Gaussian statistics); the empirical AUC (Mann-Whitney) of
the test statistics is reported beside it. With ``split=True`` (default) the template is
learnt on the first half of the realisations and applied to the second half, so d' is
not inflated by fitting the template to the noise it is tested on. ``estimator="loo"``
(leave-one-out) instead learns, for each realisation pair ``i``, the template on the other
``N - 1`` pairs and applies it to pair ``i``: every realisation is a test case and the
template is still never tested on its own noise (the same pair is left out of both classes,
so twins sharing a noise draw do not leak) and is applied to images minus the mean image of
those ``N - 1`` pairs (a template that changes with ``i`` must not pick up the large
common background). With a few hundred realisations or fewer it
cuts the spread of the CHO's d' by about a third against a half split (measured in
the tests: 40 realisations, SD 0.29 vs 0.42 at d' 1.8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import eval_laguerre
from scipy.stats import mannwhitneyu, norm

from recon_engine.registry import ParameterError


@dataclass(frozen=True)
class ObserverResult:
    """d' and AUC of one observer on one (method, acceleration, finding)."""

    observer: str
    d_prime: float
    auc: float
    auc_empirical: float
    n_train: int
    n_test: int

    def to_dict(self) -> dict:
        return {
            "observer": self.observer,
            "d_prime": self.d_prime,
            "auc": self.auc,
            "auc_empirical": self.auc_empirical,
            "n_train": self.n_train,
            "n_test": self.n_test,
        }


def auc_from_d_prime(d_prime: float) -> float:
    """AUC of an observer with Gaussian statistics of equal variance: ``Phi(d' / sqrt 2)``."""
    return float(norm.cdf(d_prime / math.sqrt(2)))


def _stacks(absent, present, roi) -> tuple[np.ndarray, np.ndarray]:
    g0 = np.asarray(torch.as_tensor(absent).abs() if torch.is_tensor(absent) else absent)
    g1 = np.asarray(torch.as_tensor(present).abs() if torch.is_tensor(present) else present)
    g0, g1 = np.abs(g0).astype(np.float64), np.abs(g1).astype(np.float64)
    if g0.ndim != 3 or g0.shape != g1.shape:
        raise ParameterError(
            f"absent and present must both be (N, H, W), got {g0.shape} and {g1.shape}"
        )
    if g0.shape[0] < 4:
        raise ParameterError(f"need at least 4 noise realisations, got {g0.shape[0]}")
    if roi is not None:
        roi = np.asarray(roi, dtype=bool)
        if roi.shape != g0.shape[1:] or not roi.any():
            raise ParameterError("roi must be a non-empty (H, W) boolean mask")
        return g0[:, roi], g1[:, roi]
    return g0.reshape(g0.shape[0], -1), g1.reshape(g1.shape[0], -1)


ESTIMATORS = ("split", "loo", "resubstitution")


def _estimator(split: bool, estimator: str | None) -> str:
    estimator = estimator or ("split" if split else "resubstitution")
    if estimator not in ESTIMATORS:
        raise ParameterError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    return estimator


def _split(n: int, split: bool) -> tuple[slice, slice]:
    if not split:
        return slice(None), slice(None)
    half = n // 2
    return slice(0, half), slice(half, None)


def _result(name: str, t0: np.ndarray, t1: np.ndarray, n_train: int) -> ObserverResult:
    pooled = math.sqrt((t0.var(ddof=1) + t1.var(ddof=1)) / 2)
    d_prime = float((t1.mean() - t0.mean()) / pooled) if pooled > 0 else math.inf
    u = mannwhitneyu(t1, t0, alternative="two-sided").statistic
    return ObserverResult(
        observer=name,
        d_prime=d_prime,
        auc=auc_from_d_prime(d_prime) if math.isfinite(d_prime) else 1.0,
        auc_empirical=float(u / (len(t0) * len(t1))),
        n_train=n_train,
        n_test=len(t0),
    )


def npw_observer(
    absent, present, roi=None, split: bool = True, estimator: str | None = None
) -> ObserverResult:
    """Non-prewhitening matched filter on ``(N, H, W)`` stacks (module doc)."""
    g0, g1 = _stacks(absent, present, roi)
    if _estimator(split, estimator) == "loo":
        n = g0.shape[0]
        templates = ((g1.sum(0) - g0.sum(0))[None] - (g1 - g0)) / (n - 1)  # row i: w/o pair i
        centres = ((g1.sum(0) + g0.sum(0))[None] - (g1 + g0)) / (2 * (n - 1))
        t0 = np.einsum("ij,ij->i", templates, g0 - centres)
        t1 = np.einsum("ij,ij->i", templates, g1 - centres)
        return _result("npw", t0, t1, n - 1)
    train, test = _split(g0.shape[0], _estimator(split, estimator) == "split")
    template = g1[train].mean(axis=0) - g0[train].mean(axis=0)
    n_train = len(range(*train.indices(g0.shape[0])))
    return _result("npw", g0[test] @ template, g1[test] @ template, n_train)


def laguerre_gauss_channels(
    shape: tuple[int, int], center: tuple[float, float], width_px: float, n_channels: int = 6
) -> np.ndarray:
    """``(n_channels, H, W)`` rotationally symmetric Laguerre-Gauss channels.

    ``u_j(r) = sqrt(2) / a * exp(-pi r^2 / a^2) * L_j(2 pi r^2 / a^2)`` with ``a`` =
    ``width_px`` (Barrett & Myers 2004, eq. 14.94), centred on the finding.
    """
    if n_channels < 1 or width_px <= 0:
        raise ParameterError("need at least one channel and a positive channel width")
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    r2 = (rows - center[0]) ** 2 + (cols - center[1]) ** 2
    gauss = math.sqrt(2) / width_px * np.exp(-math.pi * r2 / width_px**2)
    arg = 2 * math.pi * r2 / width_px**2
    return np.stack([gauss * eval_laguerre(j, arg) for j in range(n_channels)])


def _cho_template(v0: np.ndarray, v1: np.ndarray, ridge: float) -> np.ndarray:
    s = (np.cov(v0, rowvar=False) + np.cov(v1, rowvar=False)) / 2
    s = np.atleast_2d(s)
    s = s + ridge * np.trace(s) / len(s) * np.eye(len(s))
    return np.linalg.solve(s, v1.mean(axis=0) - v0.mean(axis=0))


def cho_observer(
    absent,
    present,
    channels: np.ndarray,
    split: bool = True,
    ridge: float = 1e-9,
    estimator: str | None = None,
) -> ObserverResult:
    """Channelized Hotelling observer on ``(N, H, W)`` stacks with ``(J, H, W)`` channels.

    ``ridge`` (relative to the mean channel variance) keeps ``S`` invertible when the
    channel outputs are nearly collinear.
    """
    g0, g1 = _stacks(absent, present, None)
    u = np.asarray(channels, dtype=np.float64).reshape(len(channels), -1)
    if u.shape[1] != g0.shape[1]:
        raise ParameterError("channels must have the images' (H, W) shape")
    v0, v1 = g0 @ u.T, g1 @ u.T
    n = g0.shape[0]
    if _estimator(split, estimator) == "loo":
        keep = ~np.eye(n, dtype=bool)
        t0, t1 = np.empty(n), np.empty(n)
        for i in range(n):
            w = _cho_template(v0[keep[i]], v1[keep[i]], ridge)
            centre = (v0[keep[i]].mean(axis=0) + v1[keep[i]].mean(axis=0)) / 2
            t0[i], t1[i] = (v0[i] - centre) @ w, (v1[i] - centre) @ w
        return _result("cho", t0, t1, n - 1)
    train, test = _split(n, _estimator(split, estimator) == "split")
    template = _cho_template(v0[train], v1[train], ridge)
    n_train = len(range(*train.indices(n)))
    return _result("cho", v0[test] @ template, v1[test] @ template, n_train)
