"""Monte-Carlo dropout uncertainty for the DL reconstruction methods.

Gal and Ghahramani (ICML 2016): keeping dropout active at inference and repeating the
forward pass samples an approximate posterior; the per-voxel standard deviation over the
passes is an uncertainty map. The deterministic prediction (dropout off) stays the
reconstruction; the MC passes only produce the map. With ``p = 0`` every pass equals the
deterministic one, so the map is exactly zero; that is the documented "off" state.

The raw SD is not an error bar: networks trained without (or with other) dropout give
maps that neither match the size of the error nor rank it. :func:`calibrated_uncertainty`
scales the map by the factor the model card fitted on validation data
(``uncertainty_calibration``, written by ``benchmarks/eval_model_cards.py``) and puts the
card's test-data verdict in the output's info; a map without a valid calibration is
labelled uncalibrated.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import torch
from torch import nn

from recon_engine.dl.weights import SHIPPED_DIR
from recon_engine.registry import Param, ReconError

__all__ = [
    "MC_PARAMS",
    "calibrated_uncertainty",
    "dropout_layers",
    "mc_dropout_std",
    "shipped_calibration_note",
]

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


def calibrated_uncertainty(
    spreads: list[torch.Tensor], card: dict, params: dict
) -> tuple[dict[str, list[torch.Tensor]], dict]:
    """``({"uncertainty": scaled batches}, info)`` for the raw MC-dropout SD batches.

    The scale is the card's ``uncertainty_calibration.scale`` when the run used the passes
    and dropout probability it was fitted for, else 1. ``info`` always holds
    ``uncertainty_scale`` and ``uncertainty`` (one plain sentence: what the map is worth,
    e.g. that it does not localise errors, with the test-data Spearman rho); with a valid
    calibration also ``uncertainty_test`` (the card's test-data figures). No batches: no
    map and no info.
    """
    if not spreads:
        return {}, {}
    cal = card.get("uncertainty_calibration")
    runs = (int(params["mc_samples"]), float(params["mc_dropout"]))
    if not cal:
        return {"uncertainty": spreads}, {
            "uncertainty_scale": 1.0,
            "uncertainty": (
                "uncalibrated MC-dropout SD: this model's card has no calibration on held-out "
                "data, so neither the size of the map nor whether it tracks the error is known"
            ),
        }
    fitted = (int(cal["mc_samples"]), float(cal["mc_dropout"]))
    if runs != fitted:
        return {"uncertainty": spreads}, {
            "uncertainty_scale": 1.0,
            "uncertainty": (
                f"uncalibrated MC-dropout SD: the card's calibration holds for {fitted[0]} "
                f"passes at dropout {fitted[1]}, this run used {runs[0]} at {runs[1]}. "
                f"{cal['statement']}"
            ),
        }
    scale = float(cal["scale"])
    return {"uncertainty": [s * scale for s in spreads]}, {
        "uncertainty_scale": scale,
        "uncertainty": f"MC-dropout SD x {scale:g} (calibrated on validation data). "
        + cal["statement"],
        "uncertainty_test": cal["test"],
    }


def shipped_calibration_note(model: str) -> str:
    """The shipped card's verdict on the uncertainty map of ``model``, as a sentence for a
    method description ('' when the card has no calibration)."""
    try:
        card = json.loads((SHIPPED_DIR / f"{model}.json").read_text())
    except (OSError, json.JSONDecodeError):
        return ""
    cal = card.get("uncertainty_calibration")
    if not cal:
        return " The shipped model's uncertainty map is uncalibrated."
    return f" Shipped model: {cal['statement']}"
