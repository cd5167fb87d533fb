"""Retrospective rigid-motion correction network for segmented (multi-shot) acquisitions.

Training data come from :func:`recon_engine.simulation.simulate_motion`: the object moves
rigidly in-plane between shots (groups of phase-encode lines), so each shot's lines carry
the k-space of a moved object and the image shows ghosting and blurring along the phase
encode. A U-Net (fastMRI layout, with dropout for MC uncertainty) maps the corrupted RSS
magnitude (mean/std normalised per slice) to a residual towards the motion-free image at
the reference (first-shot) position.
"""

from __future__ import annotations

import torch
from torch import nn

from recon_engine.dl.unet import Unet

__all__ = ["MotionCorrectionNet"]


class MotionCorrectionNet(nn.Module):
    """``(B, H, W)`` motion-corrupted magnitude -> ``(B, H, W)`` corrected magnitude."""

    def __init__(self, chans: int = 16, num_pool_layers: int = 3, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.unet = Unet(1, 1, chans, num_pool_layers, drop_prob)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Per-slice mean/std normalisation, residual U-Net, de-normalisation."""
        x = image[:, None]
        mean = x.mean(dim=(-2, -1), keepdim=True)
        std = x.std(dim=(-2, -1), keepdim=True).clamp_min(1e-11)
        xn = (x - mean) / std
        return ((xn + self.unet(xn)) * std + mean)[:, 0]
