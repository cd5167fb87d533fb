"""k-space-domain network: learned interpolation of the missing k-space, then inverse FFT.

The multi-coil k-space (real and imaginary parts of every coil as channels, so coil
correlations are exploited as in GRAPPA, but non-linearly and learned across subjects) is
multiplied by a radial weighting ``|k|`` to compress its dynamic range (Han et al., IEEE
TMI 2019), scaled, and completed by a U-Net that predicts a residual. The result is
un-weighted and the sampled samples are put back exactly (hard data consistency), so
the output agrees with every acquired line; the image is the RSS of the coil images.
The coil count is fixed by the trained weights (channels = 2 x coils).
"""

from __future__ import annotations

import torch
from torch import nn

from recon_engine.dl.unet import Unet
from recon_engine.fft import ifftc, rss

__all__ = ["KSpaceNet", "kspace_weighting"]


def kspace_weighting(h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(H, W)`` radial weight ``|k|`` in cycles per FOV / size, at least ``1 / max(H, W)``
    (DC at index ``n // 2``, the centred-FFT convention)."""
    ky = (torch.arange(h, device=device, dtype=torch.float32) - h // 2) / h
    kx = (torch.arange(w, device=device, dtype=torch.float32) - w // 2) / w
    r = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    return r.clamp_min(1.0 / max(h, w))


class KSpaceNet(nn.Module):
    """``(B, C, H, W)`` undersampled k-space + mask -> completed, data-consistent k-space."""

    def __init__(
        self, n_coils: int, chans: int = 16, num_pool_layers: int = 2, drop_prob: float = 0.0
    ) -> None:
        super().__init__()
        self.n_coils = int(n_coils)
        self.unet = Unet(2 * n_coils, 2 * n_coils, chans, num_pool_layers, drop_prob)

    def forward(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """kspace: complex ``(B, C, H, W)`` (zeros where not sampled); mask: 0/1
        broadcastable ``(B|1, 1, 1|H, W)``. Returns complex k-space equal to the input on
        sampled samples (hard data consistency)."""
        b, c, h, w = kspace.shape
        mask = mask.to(kspace.real.dtype)
        measured = kspace * mask
        weight = kspace_weighting(h, w, kspace.device)
        weighted = measured * weight
        scale = weighted.abs().flatten(1).amax(dim=1).clamp_min(1e-12).view(b, 1, 1, 1)
        x = weighted / scale
        out = self.unet(torch.cat([x.real, x.imag], dim=1))
        pred = (x + torch.complex(out[:, :c], out[:, c:])) * scale / weight
        return measured + (1 - mask) * pred

    def image(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """RSS magnitude ``(B, H, W)`` of the completed k-space."""
        return rss(ifftc(self(kspace, mask)), coil_dim=1)
