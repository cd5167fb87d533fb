"""Zoo entries (see :mod:`recon_engine.dl.zoo`) for the k-space network, AUTOMAP and the
motion-correction U-Net, so ``python -m recon_engine train`` can train them from a config
(``model.type``: ``KSpaceNet``, ``Automap`` or ``MotionCorrectionNet``) like the built-in
networks. The g-factor-aware denoiser and the 3D SR network need inputs the generic tasks
do not provide (noise maps, volumes): they train with :mod:`recon_engine.dl.family_training`.
"""

from __future__ import annotations

import torch
from torch import nn

from recon_engine.dl.automap import Automap, normalise, virtual_coil
from recon_engine.dl.kspace_net import KSpaceNet
from recon_engine.dl.motion import MotionCorrectionNet
from recon_engine.dl.zoo import Batch, ZooEntry, register


def _complex_kspace(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, C, H, W)`` complex k-space and ``(B, 1, 1, W)`` float mask from a zoo batch."""
    kspace = torch.view_as_complex(batch["kspace"].contiguous())
    return kspace, batch["mask"][..., 0].float()


def kspace_net_forward(model: nn.Module, batch: Batch) -> torch.Tensor:
    """RSS image ``(B, H, W)`` of the completed, data-consistent k-space."""
    kspace, mask = _complex_kspace(batch)
    return model.image(kspace, mask)


def automap_forward(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Virtual coil, normalisation, direct mapping; the image in the batch's units."""
    kspace, mask = _complex_kspace(batch)
    vc, scale = normalise(virtual_coil(kspace * mask))
    return model(vc) * scale


def motion_forward(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Corrected magnitude from the (motion-corrupted) zero-filled RSS image."""
    return model(batch["zero_filled"])


ENTRIES = (
    register(
        ZooEntry(
            "KSpaceNet",
            KSpaceNet,
            "kspace_recon",
            kspace_net_forward,
            "k-space U-Net completing the missing lines of all coils, hard data consistency",
        )
    ),
    register(
        ZooEntry(
            "Automap",
            Automap,
            "kspace_recon",
            automap_forward,
            "AUTOMAP direct k-space-to-image mapping (fully connected; small fixed matrix)",
        )
    ),
    register(
        ZooEntry(
            "MotionCorrectionNet",
            MotionCorrectionNet,
            "image_recon",
            motion_forward,
            "U-Net removing rigid inter-shot motion artefacts from the RSS image",
        )
    ),
)
