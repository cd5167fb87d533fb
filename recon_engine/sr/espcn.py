"""Sub-pixel CNN super-resolution (ESPCN, Shi et al., CVPR 2016) for in-plane 2x-4x.

Feature extraction at low resolution, then a convolution to ``factor**2`` channels that
:class:`torch.nn.PixelShuffle` rearranges into the enlarged image; the network predicts a
residual on top of bicubic interpolation so an untrained-to-trained path is stable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ESPCN(nn.Module):
    """``(B, H, W)`` real image -> ``(B, factor*H, factor*W)``."""

    def __init__(self, factor: int = 2, features: int = 64, mid: int = 32) -> None:
        super().__init__()
        self.factor = factor
        self.body = nn.Sequential(
            nn.Conv2d(1, features, 5, padding=2),
            nn.Tanh(),
            nn.Conv2d(features, mid, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(mid, factor * factor, 3, padding=1),
        )
        self.shuffle = nn.PixelShuffle(factor)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Per-image max normalisation, residual over bicubic, de-normalisation."""
        x = image[:, None]
        scale = x.abs().amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
        x = x / scale
        base = F.interpolate(x, scale_factor=self.factor, mode="bicubic")
        return ((base + self.shuffle(self.body(x))) * scale)[:, 0]
