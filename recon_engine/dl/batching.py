"""The slice-batch loop and the output every deep-learning method shares.

Networks run on a few slices at a time (memory), with live progress; what differs between
methods is only what they do with each batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from recon_engine.metrics import Timer
from recon_engine.registry import ReconInput, ReconOutput


def slice_batches(
    data: ReconInput, batch_size: int, timer: Timer
) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """Yield ``(b0, b1, kspace (b, C, H, W), mask)`` on ``data.device`` for slices
    ``[b0, b1)``; a per-slice mask is sliced, a shared one passed as is. Reports progress
    after each batch. Moving the data is timed as ``transfer``."""
    s = data.kspace.shape[0]
    for b0 in range(0, s, batch_size):
        b1 = min(s, b0 + batch_size)
        with timer("transfer"):
            kb = data.kspace[b0:b1].to(data.device)
            mb = (data.mask[b0:b1] if data.mask.shape[0] == s else data.mask).to(data.device)
        yield b0, b1, kb, mb
        if data.progress is not None:
            data.progress(b1, s)


def network_output(
    images: list[torch.Tensor],
    maps: dict[str, list[torch.Tensor]],
    timer: Timer,
    model_name: str,
    card: dict,
    **info,
) -> ReconOutput:
    """Join the per-batch images and maps (maps with no batches are left out) and record
    which verified weights made them."""
    return ReconOutput(
        image=torch.cat(images),
        maps={name: torch.cat(parts) for name, parts in maps.items() if parts},
        timings=timer.timings,
        info={"model": model_name, "sha256": card["sha256"], "card": card, **info},
    )
