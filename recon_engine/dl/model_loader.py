"""Build a network from a model card and load its sha256-verified weights (clear errors)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from recon_engine.dl.weights import load_state_dict
from recon_engine.registry import ReconError

__all__ = ["load_network"]


def load_network(
    name: str,
    build: Callable[..., nn.Module],
    device: torch.device,
    expected_type: str,
) -> tuple[nn.Module, dict]:
    """``(model in eval mode on device, card)`` for model ``name``.

    The card's ``architecture`` holds ``type`` (must be ``expected_type``, so the weights
    of one family cannot be fed to another) and the constructor's keyword arguments.
    Weights stored in half precision are promoted to float32.
    """
    state, card = load_state_dict(name, map_location="cpu")
    arch = dict(card.get("architecture", {}))
    kind = arch.pop("type", None)
    if kind != expected_type:
        raise ReconError(
            f"model {name!r} is a {kind or 'untyped'} model, this method needs {expected_type}"
        )
    try:
        model = build(**arch)
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        model.load_state_dict(state, strict=True)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ReconError(f"weights of {name!r} do not fit {expected_type}: {exc}") from None
    return model.to(device).eval(), card
