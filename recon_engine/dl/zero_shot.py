"""Zero-shot self-supervised fine-tuning of unrolled networks on one scan (ZS-SSL).

Yaman B, Hosseini SAH, Akcakaya M, "Zero-shot self-supervised learning for MRI
reconstruction", ICLR 2022, building on SSDU (Yaman et al., MRM 2020;84:3172-3191).

The scan's acquired k-space samples ``Omega`` are split into three disjoint sets:

- ``Gamma`` (validation): held out from training; the loss on it after each epoch picks
  the epoch to keep (early stopping).
- ``Theta_k`` (data consistency) and ``Lambda_k`` (loss), ``k = 1..K``: ``K`` random
  partitions of ``Omega \\ Gamma``. The network sees only ``Theta_k`` and is trained to
  predict ``Lambda_k``.

The calibration (ACS) region always stays in every ``Theta_k``: the coil maps (ESPIRiT or
the VarNet's sensitivity network) then come from the same samples in training, validation
and inference, and the held-out samples never reach them. At inference the network gets
all of ``Omega``. Masks are boolean ``(S, 1, H, W)``; k-space complex ``(S, C, H, W)``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from recon_engine.registry import Param

# predict(model, masked k-space (B, C, H, W) complex, mask (B, 1, H, W) bool, slice indices
#   (B,)) -> predicted coil k-space (B, C, H, W) complex, differentiable w.r.t. the model
KspacePredictor = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Split:
    """Disjoint subsets of the acquired samples, boolean.

    ``validation``: ``(S, 1, H, W)``; ``dc`` and ``loss``: ``(K, S, 1, H, W)``.
    """

    validation: torch.Tensor
    dc: torch.Tensor
    loss: torch.Tensor


@dataclass(frozen=True)
class FineTuneSettings:
    """ZS-SSL hyper-parameters. Defaults follow Yaman et al. 2022 (20 % validation, 40 %
    of the rest as loss set) with a budget that fits a CPU."""

    validation_fraction: float = 0.2
    loss_fraction: float = 0.4
    n_splits: int = 4
    max_epochs: int = 40
    patience: int = 8
    learning_rate: float = 3e-4
    batch_size: int = 4
    per_case: bool = False
    seed: int = 0


def split_acquired(
    acquired: torch.Tensor,
    keep: torch.Tensor,
    validation_fraction: float,
    loss_fraction: float,
    n_splits: int,
    seed: int,
) -> Split:
    """Split the acquired samples of each slice at random into ``Gamma``, ``Theta_k``,
    ``Lambda_k`` (see the module docstring), deterministic for ``seed``.

    ``acquired``, ``keep``: boolean, broadcastable to ``(S, 1, H, W)``; ``keep`` (the
    calibration region) is never put in ``Gamma`` or ``Lambda_k``. ``validation_fraction``
    is the share of the splittable samples (acquired and not kept) held out;
    ``loss_fraction`` the share of the remaining splittable samples in each ``Lambda_k``.
    """
    if not 0.0 <= validation_fraction < 1.0 or not 0.0 < loss_fraction < 1.0:
        raise ValueError("fractions must be in [0, 1) (validation) and (0, 1) (loss)")
    if n_splits < 1:
        raise ValueError("n_splits must be at least 1")
    acquired = acquired.bool()
    keep = keep.bool() & acquired
    shape = torch.broadcast_shapes(acquired.shape, keep.shape)
    acquired, keep = acquired.expand(shape), keep.expand(shape)
    generator = torch.Generator().manual_seed(int(seed))
    splittable = (acquired & ~keep).cpu()
    validation = torch.zeros(shape, dtype=torch.bool)
    loss = torch.zeros((n_splits, *shape), dtype=torch.bool)
    for s in range(shape[0]):
        candidates = torch.nonzero(splittable[s].reshape(-1)).squeeze(1)
        order = candidates[torch.randperm(candidates.numel(), generator=generator)]
        n_val = int(round(validation_fraction * candidates.numel()))
        validation[s].view(-1)[order[:n_val]] = True
        rest = order[n_val:]
        n_loss = max(1, int(round(loss_fraction * rest.numel()))) if rest.numel() else 0
        for k in range(n_splits):
            chosen = rest[torch.randperm(rest.numel(), generator=generator)[:n_loss]]
            loss[k, s].view(-1)[chosen] = True
    dc = (acquired.cpu() & ~validation)[None] & ~loss
    device = acquired.device
    return Split(validation.to(device), dc.to(device), loss.to(device))


def kspace_loss(
    predicted: torch.Tensor, measured: torch.Tensor, where: torch.Tensor
) -> torch.Tensor:
    """SSDU's normalised L1-L2 loss on the samples ``where`` (boolean ``(B, 1, H, W)``),
    averaged over the batch: ``|e|_2 / |y|_2 + |e|_1 / |y|_1`` with ``e = P(k_pred - y)``."""
    weight = where.to(predicted.real.dtype)
    error = (predicted - measured) * weight
    target = measured * weight
    dims = tuple(range(1, predicted.ndim))
    l2 = error.abs().pow(2).sum(dims).sqrt() / target.abs().pow(2).sum(dims).sqrt().clamp_min(1e-12)
    l1 = error.abs().sum(dims) / target.abs().sum(dims).clamp_min(1e-12)
    return (l2 + l1).mean()


def train_epoch(
    model: nn.Module,
    predict: KspacePredictor,
    optimizer: torch.optim.Optimizer,
    kspace: torch.Tensor,
    split: Split,
    slices: torch.Tensor,
    batch_size: int,
    epoch: int,
) -> float:
    """One epoch of self-supervised training on ``slices`` (indices into ``kspace``'s first
    axis); returns the mean training loss. Uses only ``Theta_k`` (input) and ``Lambda_k``
    (target) samples, never ``Gamma``.

    One slice: one step on the batch of its ``K`` partitions. Several slices: steps on
    ``batch_size`` slices each, with partition ``epoch mod K``.
    """
    model.train()
    n_splits = split.dc.shape[0]
    if slices.numel() == 1:
        groups = [(slices.repeat(n_splits), torch.arange(n_splits, device=slices.device))]
    else:
        k = torch.full((slices.numel(),), epoch % n_splits, device=slices.device)
        groups = [
            (slices[i : i + batch_size], k[i : i + batch_size])
            for i in range(0, slices.numel(), batch_size)
        ]
    losses = []
    for idx, k in groups:
        theta = split.dc[k, idx]
        lam = split.loss[k, idx]
        measured = kspace[idx]
        optimizer.zero_grad(set_to_none=True)
        loss = kspace_loss(predict(model, measured * theta, theta, idx), measured, lam)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return sum(losses) / len(losses)


def validation_loss(
    model: nn.Module,
    predict: KspacePredictor,
    kspace: torch.Tensor,
    split: Split,
    slices: torch.Tensor,
    batch_size: int,
) -> float:
    """Loss on ``Gamma`` with the network given every other acquired sample."""
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, slices.numel(), batch_size):
            idx = slices[i : i + batch_size]
            given = split.dc[0, idx] | split.loss[0, idx]
            pred = predict(model, kspace[idx] * given, given, idx)
            total += float(kspace_loss(pred, kspace[idx], split.validation[idx])) * idx.numel()
    return total / slices.numel()


@dataclass
class FineTuneResult:
    """The fine-tuned models (one per group of slices) and what happened."""

    models: list[nn.Module]
    groups: list[torch.Tensor]
    epochs: list[int]
    best_epochs: list[int]
    best_validation: list[float]


def fine_tune(
    base: nn.Module,
    predict: KspacePredictor,
    kspace: torch.Tensor,
    acquired: torch.Tensor,
    keep: torch.Tensor,
    settings: FineTuneSettings,
) -> FineTuneResult:
    """Fine-tune copies of ``base`` on the scan ``kspace`` (``(S, C, H, W)``, zeros where not
    acquired): one copy per slice, or one for the whole case when ``settings.per_case``.
    Early stopping on the validation loss with ``settings.patience`` epochs; each copy ends
    at its best epoch's weights. ``base`` is left unchanged."""
    device = kspace.device
    s = kspace.shape[0]
    acquired = acquired.to(device).bool().expand(s, 1, *kspace.shape[-2:])
    split = split_acquired(
        acquired,
        keep.to(device),
        settings.validation_fraction,
        settings.loss_fraction,
        settings.n_splits,
        settings.seed,
    )
    all_slices = torch.arange(s, device=device)
    groups = [all_slices] if settings.per_case else [all_slices[i : i + 1] for i in range(s)]
    result = FineTuneResult([], groups, [], [], [])
    for g, slices in enumerate(groups):
        torch.manual_seed(settings.seed + g)
        model = copy.deepcopy(base).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
        best = validation_loss(model, predict, kspace, split, slices, settings.batch_size)
        best_state, best_epoch, epoch, stale = copy.deepcopy(model.state_dict()), 0, 0, 0
        while epoch < settings.max_epochs and stale < settings.patience:
            train_epoch(
                model, predict, optimizer, kspace, split, slices, settings.batch_size, epoch
            )
            epoch += 1
            current = validation_loss(model, predict, kspace, split, slices, settings.batch_size)
            if current < best:
                best, best_epoch, stale = current, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
        model.load_state_dict(best_state)
        model.eval()
        result.models.append(model)
        result.epochs.append(epoch)
        result.best_epochs.append(best_epoch)
        result.best_validation.append(best)
    return result


ZERO_SHOT_PARAMS: tuple[Param, ...] = (
    Param(
        "adapt",
        "choice",
        "per_slice",
        "Fine-tune one network per slice, or one for the whole case (all slices)",
        choices=("per_slice", "per_case"),
    ),
    Param(
        "init",
        "choice",
        "shipped",
        "Start from the shipped supervised weights, or from random weights",
        choices=("shipped", "scratch"),
    ),
    Param("max_epochs", "int", 40, "Most fine-tuning epochs", min=0, max=1000),
    Param(
        "patience",
        "int",
        8,
        "Stop after this many epochs without a better validation loss",
        min=1,
        max=1000,
    ),
    Param(
        "validation_fraction",
        "float",
        0.2,
        "Share of the acquired samples outside the ACS held out for early stopping",
        min=0.0,
        max=0.9,
    ),
    Param(
        "loss_fraction",
        "float",
        0.4,
        "Share of the remaining samples outside the ACS in each loss set",
        min=0.05,
        max=0.9,
    ),
    Param("n_splits", "int", 4, "Random (data-consistency, loss) partitions", min=1, max=64),
    Param("learning_rate", "float", 3e-4, "Adam learning rate", min=1e-6, max=1e-1),
    Param("seed", "int", 0, "Seed of the splits and of random initial weights", min=0),
    Param("batch_size", "int", 4, "Slices per step when adapting per case", min=1, max=256),
)


def settings_from(params: dict) -> FineTuneSettings:
    """The fine-tuning settings of a validated method parameter dict."""
    return FineTuneSettings(
        validation_fraction=params["validation_fraction"],
        loss_fraction=params["loss_fraction"],
        n_splits=params["n_splits"],
        max_epochs=params["max_epochs"],
        patience=params["patience"],
        learning_rate=params["learning_rate"],
        batch_size=params["batch_size"],
        per_case=params["adapt"] == "per_case",
        seed=params["seed"],
    )


def fine_tune_info(result: FineTuneResult, settings: FineTuneSettings) -> dict:
    """JSON-friendly facts about a fine-tuning run for the job's provenance."""
    return {
        "zero_shot": {
            "adapt": "per_case" if settings.per_case else "per_slice",
            "epochs": result.epochs,
            "best_epochs": result.best_epochs,
            "best_validation_loss": [round(v, 5) for v in result.best_validation],
            "validation_fraction": settings.validation_fraction,
            "loss_fraction": settings.loss_fraction,
            "n_splits": settings.n_splits,
            "seed": settings.seed,
        }
    }


DESCRIPTION = (
    " Zero-shot self-supervised (ZS-SSL): before reconstructing, the network is fine-tuned "
    "on this scan alone. The acquired samples outside the ACS are split at random (seeded) "
    "into a held-out validation set and, several times, into a data-consistency set the "
    "network sees and a loss set it must predict; training stops when the loss on the "
    "held-out set stops improving and keeps the best epoch's weights; the final image uses "
    "every acquired sample. Per slice or once per case. Costs seconds to minutes per slice "
    "on a CPU."
)
