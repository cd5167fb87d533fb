"""Per-voxel quality maps returned with every DL reconstruction."""

from __future__ import annotations

import torch

from recon_engine.fft import ifftc, rss


def dc_residual_map(
    coil_kspace_pred: torch.Tensor, measured: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """RSS over coils of ``F^H M (k_pred - y)``: where the output disagrees with the data.

    ``coil_kspace_pred`` and ``measured`` are ``(S, C, H, W)`` complex; returns ``(S, H, W)``.
    """
    return rss(ifftc(mask * (coil_kspace_pred - measured)), coil_dim=1)
