"""Noise-map-conditioned CNN denoiser for complex parallel-imaging reconstructions.

Parallel imaging amplifies noise unevenly: the noise SD of a SENSE image at voxel ``x``
is ``sigma * g(x) * sqrt(R)`` (white k-space noise ``sigma``, g-factor ``g``). A denoiser
trained on, or told, one uniform noise level under-smooths where ``g`` is high and
over-smooths where it is low. This network (DnCNN residual learning, Zhang et al. IEEE
TIP 2017, with the noise-level map as an extra input channel as in FFDNet, Zhang et al.
IEEE TIP 2018) takes the per-voxel noise SD map, so the same weights can be driven by the
g-factor map or, for comparison, by a uniform level.

Input/output: complex ``(B, H, W)`` image and real ``(B, H, W)`` noise SD map (same
units). Both are divided by one per-slice scale (the 99th percentile of the magnitude),
the network predicts the noise (real and imaginary channels), which is subtracted.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["NoiseMapDenoiser", "estimate_kspace_noise", "noise_sd_map"]


class NoiseMapDenoiser(nn.Module):
    """DnCNN with a noise-map input channel; residual (noise) prediction."""

    def __init__(self, features: int = 32, depth: int = 7, drop_prob: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, features, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [
                nn.Conv2d(features, features, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Dropout2d(drop_prob),
            ]
        layers.append(nn.Conv2d(features, 2, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, noise_sd: torch.Tensor) -> torch.Tensor:
        """Denoised complex ``(B, H, W)``; ``noise_sd`` ``(B|1, H, W)`` per-voxel SD."""
        b = image.shape[0]
        mag = image.abs().reshape(b, -1)
        scale = torch.quantile(mag, 0.99, dim=1).clamp_min(1e-12).view(b, 1, 1)
        x = image / scale
        sd = (noise_sd / scale).expand(b, -1, -1)
        noise = self.body(torch.stack([x.real, x.imag, sd], dim=1))
        return (x - torch.complex(noise[:, 0], noise[:, 1])) * scale


def noise_sd_map(g_factor: torch.Tensor, sigma: float, acceleration: float) -> torch.Tensor:
    """Per-voxel noise SD ``sigma * g * sqrt(R)`` of an unfolded SENSE image (white
    k-space noise of SD ``sigma`` per complex sample, orthonormal FFT, normalised maps)."""
    return g_factor * (float(sigma) * float(acceleration) ** 0.5)


def estimate_kspace_noise(kspace: torch.Tensor, mask: torch.Tensor, band: float = 0.125) -> float:
    """Complex noise SD of ``kspace`` ``(S, C, H, W)`` from its outer readout band.

    Uses the sampled samples in the outer ``band`` fraction of rows at both ends of the
    readout axis (H), where object signal is weakest; ``|n|`` of circular complex
    Gaussian noise is Rayleigh with median ``sigma * sqrt(ln 2)``, and the median is
    robust to the little signal left there.
    """
    h = kspace.shape[-2]
    edge = max(1, int(round(h * band)))
    rows = torch.cat([kspace[..., :edge, :], kspace[..., h - edge :, :]], dim=-2)
    m = mask.expand(-1, -1, h, -1) if mask.shape[-2] == 1 else mask
    mrows = torch.cat([m[..., :edge, :], m[..., h - edge :, :]], dim=-2)
    sampled = rows.abs()[(mrows > 0).expand_as(rows)]
    if sampled.numel() == 0:
        return 0.0
    return float(sampled.median()) / float(torch.log(torch.tensor(2.0)).sqrt())
