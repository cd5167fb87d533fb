"""Regularisation weight chosen from the data alone: held-out k-space cross-validation.

A seeded random subset of the acquired samples outside the calibration (ACS) region is
held out; the method is run on the remaining samples for each weight of a small grid, and
the weight whose image best predicts the held-out samples (lowest relative error
``||H (F S x - y)||^2 / ||H y||^2``) is chosen. The measurement noise on the held-out
samples adds the same amount for every weight, so it does not move the choice. This is
the validation principle of ZS-SSL (Yaman et al., ICLR 2022) applied to a one-parameter
family, i.e. hold-out cross-validation (Stone, J R Stat Soc B 1974;36:111-147).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from recon_engine.dl.zero_shot import split_acquired
from recon_engine.fft import fftc
from recon_engine.registry import Param
from recon_engine.sampling import acs_region

# solve(kspace (B, C, H, W), sens (B, C, H, W), mask, lambda) -> image (B, H, W) complex
WeightedSolver = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


class NoSamplesToHoldOut(ValueError):
    """Every acquired sample is in the ACS (e.g. full sampling): nothing to validate on."""


@dataclass(frozen=True)
class LambdaChoice:
    """The chosen weight and the held-out relative error of every grid weight."""

    value: float
    errors: dict[float, float]


def held_out_samples(
    mask: torch.Tensor, shape: tuple[int, ...], fraction: float, seed: int
) -> torch.Tensor:
    """Boolean ``(B, 1, H, W)``: a seeded ``fraction`` of each slice's acquired samples
    outside the ACS; ``mask`` is ``(B|1, 1, H|1, W)``, ``shape`` the k-space's. Whole lines
    for a 1D (line) mask: a point whose line neighbours stay measured is far easier to
    predict than a missing line, and would favour too strong a weight."""
    b, _, h, w = shape
    rows = mask.shape[-2]
    acquired = (mask > 0).expand(b, 1, rows, w)
    keep = acs_region(mask.cpu()).to(mask.device) > 0
    held = split_acquired(acquired, keep, fraction, 0.5, 1, seed).validation
    return held.expand(b, 1, h, w)


def choose_lambda(
    solve: WeightedSolver,
    kspace: torch.Tensor,
    sens: torch.Tensor,
    mask: torch.Tensor,
    grid: Sequence[float],
    fraction: float = 0.15,
    seed: int = 0,
) -> LambdaChoice:
    """The weight of ``grid`` whose reconstruction from the other samples best predicts a
    held-out ``fraction`` of the acquired samples; ties go to the smaller weight.
    Deterministic for ``seed`` when ``solve`` is."""
    if not grid:
        raise ValueError("the lambda grid is empty")
    held = held_out_samples(mask, tuple(kspace.shape), fraction, seed)
    if not bool(held.any()):
        raise NoSamplesToHoldOut("no acquired samples outside the ACS to hold out")
    fit_mask = ((mask > 0) & ~held).to(kspace.real.dtype)
    fit_kspace = kspace * fit_mask
    target = (kspace * held).abs().pow(2).sum()
    errors = {}
    for lam in sorted(float(v) for v in grid):
        image = solve(fit_kspace, sens, fit_mask, lam)
        predicted = fftc(sens * image[:, None]) * held
        errors[lam] = float((predicted - kspace * held).abs().pow(2).sum() / target)
    best = min(errors, key=lambda lam: (errors[lam], lam))
    return LambdaChoice(best, errors)


def lambda_params(grid: Sequence[float], default: str = "auto") -> tuple[Param, ...]:
    """The parameters every method with an automatic weight adds (``default``: "auto" or
    "fixed")."""
    return (
        Param(
            "lambda_choice",
            "choice",
            default,
            "auto: held-out k-space cross-validation over "
            + ", ".join(f"{v:g}" for v in grid)
            + "; fixed: use lambda",
            choices=("auto", "fixed"),
        ),
        Param(
            "lambda_holdout",
            "float",
            0.15,
            "Share of the acquired samples outside the ACS held out to choose lambda",
            min=0.02,
            max=0.5,
        ),
        Param("lambda_seed", "int", 0, "Seed of the held-out samples", min=0),
    )


AUTO_DESCRIPTION = (
    " With lambda_choice 'auto', lambda is chosen from the data alone, per batch of "
    "slices: a seeded random share of the acquired lines (points for 2D masks) outside the "
    "ACS is held out, the method runs on the rest for each weight of a grid, and the weight "
    "whose image best predicts the held-out samples is used on all the data (one solve per "
    "grid weight more); 'fixed' uses the given lambda (so does auto when every sample lies "
    "in the ACS)."
)


def weight_for_batch(
    params: dict,
    solve: WeightedSolver,
    kspace: torch.Tensor,
    sens: torch.Tensor,
    mask: torch.Tensor,
    grid: Sequence[float],
    chosen: list[dict],
) -> float:
    """The weight a method uses on one batch: ``params["lambda"]`` when fixed, else the
    cross-validated choice (recorded in ``chosen``); the fixed weight too when every acquired
    sample lies in the ACS (nothing to hold out, ``held_out_error`` None)."""
    if params["lambda_choice"] == "fixed":
        return params["lambda"]
    try:
        pick = choose_lambda(
            solve, kspace, sens, mask, grid, params["lambda_holdout"], params["lambda_seed"]
        )
    except NoSamplesToHoldOut:
        chosen.append({"lambda": params["lambda"], "held_out_error": None})
        return params["lambda"]
    errors = {f"{lam:g}": round(err, 6) for lam, err in pick.errors.items()}
    chosen.append({"lambda": pick.value, "held_out_error": errors})
    return pick.value
