"""Detectability of a synthetic finding after a reconstruction, against its size.

For each finding size: lesion-present/absent twins over ``n_realisations`` noise draws
(:func:`~recon_engine.fidelity.lesions.lesion_twins`), both undersampled by the same mask,
each stack reconstructed in **one batched call** (the realisations are the batch's
slices, not a Python loop), then the model observers
(:mod:`~recon_engine.fidelity.observers`) in a region of interest around the finding, and
the contrast recovery ``mean over the truth of (recon_present - recon_absent)`` divided
by the same for the noiseless truths (1 = the finding keeps its full contrast).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from recon_engine.fidelity.lesions import Lesion, lesion_twins
from recon_engine.fidelity.observers import cho_observer, laguerre_gauss_channels, npw_observer
from recon_engine.pipeline import reconstruct_kspace
from recon_engine.registry import ParameterError
from recon_engine.sampling import make_mask

# "Detected": an observer AUC at or above this (the and the literature's 0.9).
DETECTION_AUC = 0.9


@dataclass(frozen=True)
class FidelitySetting:
    """How findings are made and sampled (sizes in mm, SNR as in recon_engine.simulation)."""

    kind: str = "focus"
    contrast: float = -0.5
    center: tuple[float, float] | None = None
    n_realisations: int = 50
    n_coils: int = 8
    snr: float = 30.0
    pattern: str = "random"
    center_fraction: float = 0.08
    seed: int = 0


def roi_around(shape: tuple[int, int], center: tuple[float, float], size_px: float) -> np.ndarray:
    """Disc of radius ``max(1.5 * size_px, 4)`` pixels around the finding (observer ROI)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    radius = max(1.5 * size_px, 4.0)
    return np.hypot(rows - center[0], cols - center[1]) <= radius


def brightest_tissue_center(magnitude: np.ndarray, margin: int = 16) -> tuple[float, float]:
    """A default position: the pixel of median tissue signal nearest the image centre.

    Deterministic and inside the anatomy; ``margin`` pixels from every edge.
    """
    mag = np.abs(np.asarray(magnitude, dtype=np.float64))
    h, w = mag.shape
    tissue = mag > 0.3 * mag.max()
    tissue[:margin] = tissue[-margin:] = False
    tissue[:, :margin] = tissue[:, -margin:] = False
    if not tissue.any():
        raise ParameterError("no tissue found to place a finding on")
    rows, cols = np.nonzero(tissue)
    order = np.argsort(np.hypot(rows - h / 2, cols - w / 2))
    return float(rows[order[0]]), float(cols[order[0]])


def detectability(
    magnitude: np.ndarray | torch.Tensor,
    pixel_mm: float,
    method: str,
    acceleration: float,
    sizes_mm: Sequence[float],
    setting: FidelitySetting = FidelitySetting(),
    params: dict | None = None,
    device: torch.device | str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """One row per size: d' and AUC of the NPW and CHO observers, contrast recovery, NRMSE.

    ``magnitude``: one ``(H, W)`` slice. ``acceleration`` 1 means fully sampled (no mask).
    """
    mag = np.abs(np.asarray(magnitude, dtype=np.float64))
    if mag.ndim != 2:
        raise ParameterError(f"detectability takes one (H, W) slice, got {mag.shape}")
    shape = mag.shape
    center = setting.center or brightest_tissue_center(mag)
    if acceleration > 1:
        sampling = make_mask(
            setting.pattern,
            shape,
            acceleration,
            seed=setting.seed,
            center_fraction=setting.center_fraction,
        )
        mask = sampling.mask
    else:
        mask = torch.ones((1, 1, 1, shape[1]))
    rows = []
    for index, size in enumerate(sizes_mm):
        lesion = Lesion(setting.kind, float(size), setting.contrast, center)
        twins = lesion_twins(
            mag,
            lesion,
            pixel_mm,
            n_realisations=setting.n_realisations,
            n_coils=setting.n_coils,
            snr=setting.snr,
            seed=setting.seed + index,
        )
        recon = {}
        for name, kspace in (("absent", twins.kspace_absent), ("present", twins.kspace_present)):
            result = reconstruct_kspace(
                kspace * mask, mask, method, params, device=device, progress=False
            )
            recon[name] = result.volume
        truth = twins.truth.numpy()
        size_px = float(size) / pixel_mm
        roi = roi_around(shape, center, size_px)
        channels = laguerre_gauss_channels(shape, center, width_px=max(2.0 * size_px, 3.0))
        npw = npw_observer(recon["absent"], recon["present"], roi=roi)
        cho = cho_observer(recon["absent"], recon["present"], channels)
        true_change = (twins.image_present.abs() - twins.image_absent.abs()).numpy()[truth]
        seen_change = (recon["present"].mean(0) - recon["absent"].mean(0))[truth]
        reference = np.abs(twins.image_absent.numpy())
        error = recon["absent"] - reference[None]
        rows.append(
            {
                "method": method,
                "acceleration": float(acceleration),
                "kind": setting.kind,
                "size_mm": float(size),
                "contrast": setting.contrast,
                "npw_d_prime": npw.d_prime,
                "npw_auc": npw.auc,
                "cho_d_prime": cho.d_prime,
                "cho_auc": cho.auc,
                "contrast_recovery": float(seen_change.mean() / true_change.mean()),
                "nrmse": float(
                    math.sqrt(float((error**2).mean())) / math.sqrt(float((reference**2).mean()))
                ),
                "n_realisations": setting.n_realisations,
            }
        )
        if progress is not None:
            progress(index + 1, len(sizes_mm))
    return rows


def smallest_detected(rows: Sequence[dict], observer: str = "cho") -> float | None:
    """Smallest size (mm) from which every larger size is detected at AUC >= 0.9.

    None when even the largest size is not detected.
    """
    detected = sorted(
        ((row["size_mm"], row[f"{observer}_auc"] >= DETECTION_AUC) for row in rows),
        reverse=True,
    )
    smallest = None
    for size, hit in detected:
        if not hit:
            break
        smallest = size
    return smallest
