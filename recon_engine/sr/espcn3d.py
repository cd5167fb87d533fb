"""3D sub-pixel CNN for through-plane super-resolution of volumes.

Thick slices are modelled as the average of ``factor`` consecutive thin slices (a box
slice profile), matching the "area" convention of :mod:`recon_engine.sr.baselines`:
output slice ``j`` sits at input coordinate ``(j + 0.5) / factor - 0.5``. Three 3D
convolutions (tanh activations, as the 2D ESPCN) see neighbouring slices and in-plane
context; the last one outputs ``factor`` channels that a depth shuffle interleaves into
``factor x S`` slices, as a residual over cubic interpolation along the slice axis (3D
ESPCN; cf. Chen et al.,
"Brain MRI super resolution using 3D deep densely connected networks", ISBI 2018).
"""

from __future__ import annotations

import torch
from torch import nn

from recon_engine.sr.baselines import bicubic_upsample

__all__ = ["ESPCN3D", "thick_slices"]


def thick_slices(volume: torch.Tensor, factor: int) -> torch.Tensor:
    """``(factor*S, H, W)`` -> ``(S, H, W)``: average each group of ``factor`` slices."""
    s = volume.shape[0] // factor
    return volume[: s * factor].reshape(s, factor, *volume.shape[1:]).mean(dim=1)


class ESPCN3D(nn.Module):
    """``(S, H, W)`` real volume -> ``(factor*S, H, W)``."""

    def __init__(
        self, factor: int = 2, features: int = 24, mid: int = 16, drop_prob: float = 0.0
    ) -> None:
        super().__init__()
        self.factor = int(factor)
        self.body = nn.Sequential(
            nn.Conv3d(1, features, 3, padding=1),
            nn.Tanh(),
            nn.Conv3d(features, mid, 3, padding=1),
            nn.Tanh(),
            nn.Dropout3d(drop_prob),
            nn.Conv3d(mid, self.factor, 3, padding=1),
        )

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """Max normalisation, residual over cubic interpolation along slices."""
        s, h, w = volume.shape
        scale = volume.abs().amax().clamp_min(1e-12)
        x = volume / scale
        base = bicubic_upsample(x, self.factor, dims=(0,))
        res = self.body(x[None, None])[0]  # (factor, S, H, W)
        res = res.permute(1, 0, 2, 3).reshape(s * self.factor, h, w)
        return (base + res) * scale
