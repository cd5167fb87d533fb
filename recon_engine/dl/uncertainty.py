"""Per-voxel quality maps returned with every DL reconstruction."""

from __future__ import annotations

import json

import torch

from recon_engine.dl.weights import SHIPPED_DIR
from recon_engine.fft import ifftc, rss

# What methods with hard data consistency record instead of a residual map.
DC_RESIDUAL_ZERO_BY_CONSTRUCTION = (
    "no dc_residual map: it is zero by construction. The method puts every measured k-space "
    "sample back unchanged, so the data-consistency residual F^H M (k_pred - y) is "
    "identically 0 and says nothing about errors in the lines it filled in."
)


def dc_residual_map(
    coil_kspace_pred: torch.Tensor, measured: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """RSS over coils of ``F^H M (k_pred - y)``: where the output disagrees with the data.

    ``coil_kspace_pred`` and ``measured`` are ``(S, C, H, W)`` complex; returns ``(S, H, W)``.
    """
    return rss(ifftc(mask * (coil_kspace_pred - measured)), coil_dim=1)


def dc_residual_note(card: dict) -> str:
    """What a soft-consistency method's residual map is worth, from the card's test-data
    check (``dc_residual_check``, written by ``benchmarks/eval_model_cards.py``)."""
    check = card.get("dc_residual_check")
    if not check:
        return (
            "data-consistency residual: disagreement with the measured samples only; whether "
            "it tracks the reconstruction error is not known for this model"
        )
    return check["statement"]


def shipped_dc_residual_note(model: str) -> str:
    """:func:`dc_residual_note` of the shipped card of ``model`` ('' without one)."""
    try:
        card = json.loads((SHIPPED_DIR / f"{model}.json").read_text())
    except (OSError, json.JSONDecodeError):
        return ""
    return " Shipped model: " + dc_residual_note(card)
