"""Monte-Carlo dropout uncertainty for the DL reconstruction methods.

Gal and Ghahramani (ICML 2016): keeping dropout active at inference and repeating the
forward pass samples an approximate posterior; the per-voxel standard deviation over the
passes is an uncertainty map. The deterministic prediction (dropout off) stays the
reconstruction; the MC passes only produce the map. With ``p = 0`` every pass equals the
deterministic one, so the map is exactly zero; that is the documented "off" state.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from recon_engine.registry import Param, ReconError

__all__ = ["MC_PARAMS", "dropout_layers", "mc_dropout_std"]

MC_PARAMS: tuple[Param, ...] = (
    Param(
        "mc_samples",
        "int",
        8,
        "Monte-Carlo dropout passes for the 'uncertainty' map stored with the image (0 = none)",
        min=0,
        max=64,
    ),
    Param(
        "mc_dropout",
        "float",
        0.1,
        "Dropout probability during the Monte-Carlo passes (0 gives a zero map)",
        min=0.0,
        max=0.9,
    ),
)

_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    """Every dropout module of ``model`` (MC dropout needs at least one)."""
    return [m for m in model.modules() if isinstance(m, _DROPOUT_TYPES)]


def mc_dropout_std(
    model: nn.Module,
    forward: Callable[[], torch.Tensor],
    n_samples: int,
    p: float,
    seed: int = 0,
) -> torch.Tensor:
    """Per-voxel SD over ``n_samples`` passes of ``forward()`` with dropout ``p`` active.

    ``forward`` runs ``model`` on the current batch and returns the image (any shape,
    real or complex: the SD of the magnitude is returned). Only dropout layers are
    switched to training mode (normalisation layers keep inference behaviour); the
    model is restored to eval mode and the original probabilities afterwards. Seeded so
    a rerun gives the same map. Raises ReconError if the model has no dropout layer.
    """
    if n_samples < 2:
        raise ReconError(f"MC dropout needs at least 2 passes, got {n_samples}")
    layers = dropout_layers(model)
    if not layers:
        raise ReconError(f"{type(model).__name__} has no dropout layers for MC dropout")
    saved = [m.p for m in layers]
    samples = []
    try:
        for m in layers:
            m.p = float(p)
            m.train()
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for _ in range(int(n_samples)):
                out = forward()
                samples.append(out.abs() if out.is_complex() else out)
    finally:
        for m, prob in zip(layers, saved, strict=True):
            m.p = prob
            m.eval()
    return torch.stack(samples).std(dim=0, unbiased=True)
