"""Registry of trainable networks: architecture name -> builder + training task + forward.

``python -m recon_engine train`` looks the config's ``model.type`` up here, builds the
network with the remaining ``model`` keys, and trains it on the batches of the entry's
*task*; the model card records ``architecture = {"type": name, **kwargs}`` so inference
code (:func:`recon_engine.dl.model_loader.load_network`) can rebuild it.

Tasks and the batch dict the entry's ``forward(model, batch)`` receives (all float32;
``B`` batch, ``C`` coils, ``H x W`` matrix). Every forward returns the prediction
``(B, H', W')`` compared with ``batch["target"]`` (same shape) by the loss and metrics:

``kspace_recon``
    ``kspace`` ``(B, C, H, W, 2)`` undersampled, scaled k-space (real/imaginary last);
    ``mask`` boolean ``(B, 1, 1, W, 1)``; ``zero_filled`` ``(B, H, W)`` RSS of the
    zero-filled coil images; ``target`` ``(B, H, W)`` RSS of the fully sampled data.
``image_recon``
    Same keys as ``kspace_recon`` (image-domain networks use ``zero_filled``).
``super_resolution``
    ``low`` ``(B, H/f, W/f)`` low-resolution magnitude (central k-space of the target,
    i.e. a lower-resolution acquisition); ``target`` ``(B, H, W)``; ``factor`` int.

To add an architecture, append a :class:`ZooEntry` with :func:`register` (in this module
or in the architecture's module, imported from :data:`_PLUGIN_MODULES`). Names must match
the ``type`` the inference method expects in the card.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from recon_engine.dl.cascade import DeepCascade, acs_maps
from recon_engine.dl.unet import Unet
from recon_engine.dl.varnet import VarNet
from recon_engine.registry import ParameterError, ReconError
from recon_engine.sampling import acs_region
from recon_engine.sr.espcn import ESPCN

TASKS = ("kspace_recon", "image_recon", "super_resolution")

Batch = dict[str, torch.Tensor | int]


@dataclass(frozen=True)
class ZooEntry:
    """One trainable architecture.

    name: the card's ``architecture.type``; build: constructor taking the config's model
    keyword arguments; task: one of :data:`TASKS`; forward: ``(model, batch) -> (B, H, W)``
    prediction; description: one line for ``--help`` and the model card.
    """

    name: str
    build: Callable[..., nn.Module]
    task: str
    forward: Callable[[nn.Module, Batch], torch.Tensor]
    description: str


ZOO: dict[str, ZooEntry] = {}

# Modules that register further architectures when imported (optional: missing ones are
# skipped so a partial checkout still trains the built-in networks).
_PLUGIN_MODULES: tuple[str, ...] = ("recon_engine.dl.family_zoo",)


def register(entry: ZooEntry) -> ZooEntry:
    """Add ``entry`` to the zoo (refusing unknown tasks and duplicate names)."""
    if entry.task not in TASKS:
        raise ValueError(f"zoo entry {entry.name!r}: unknown task {entry.task!r}")
    if entry.name in ZOO and ZOO[entry.name] is not entry:
        raise ValueError(f"zoo entry {entry.name!r} registered twice")
    ZOO[entry.name] = entry
    return entry


def _load_plugins() -> None:
    for module in _PLUGIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def names() -> list[str]:
    """Every trainable architecture name (plugins included), sorted."""
    _load_plugins()
    return sorted(ZOO)


def get(name: str) -> ZooEntry:
    """The entry for architecture ``name``; ParameterError listing the known ones."""
    _load_plugins()
    if name not in ZOO:
        raise ParameterError(f"unknown model type {name!r}; trainable: {', '.join(sorted(ZOO))}")
    return ZOO[name]


def _varnet_forward(model: nn.Module, batch: Batch) -> torch.Tensor:
    return model(batch["kspace"], batch["mask"])


def unet_forward(model: nn.Module, batch: Batch) -> torch.Tensor:
    """fastMRI U-Net baseline: per-image mean/std normalised zero-filled RSS in, image out
    (the same normalisation as :mod:`recon_engine.methods.dl_unet`)."""
    x = batch["zero_filled"][:, None]
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = x.std(dim=(-2, -1), keepdim=True).clamp_min(1e-11)
    return (model((x - mean) / std) * std + mean)[:, 0]


def deep_cascade_forward(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Magnitude ``(B, H, W)`` of the deep cascade's coil-combined image.

    The cascade needs coil sensitivities; training batches carry none, so they are the
    ACS maps of :func:`recon_engine.dl.cascade.acs_maps` (no gradient), the method's
    default estimate at inference too.
    """
    kspace = torch.view_as_complex(batch["kspace"].contiguous())
    mask = batch["mask"][..., 0].float()
    with torch.no_grad():
        maps = acs_maps(kspace, mask)
    image, _ = model(kspace, mask, maps)
    return image.abs()


def _espcn_forward(model: nn.Module, batch: Batch) -> torch.Tensor:
    return model(batch["low"])


def _unet_build(**kwargs) -> Unet:
    kwargs.setdefault("in_chans", 1)
    kwargs.setdefault("out_chans", 1)
    return Unet(**kwargs)


register(
    ZooEntry(
        "VarNet",
        VarNet,
        "kspace_recon",
        _varnet_forward,
        "end-to-end variational network (learned sensitivities, k-space cascades)",
    )
)
register(
    ZooEntry(
        "Unet",
        _unet_build,
        "image_recon",
        unet_forward,
        "image-domain U-Net de-aliasing the zero-filled RSS image (fastMRI baseline)",
    )
)
register(
    ZooEntry(
        "DeepCascade",
        DeepCascade,
        "kspace_recon",
        deep_cascade_forward,
        "deep cascade of residual CNNs with hard data consistency, multi-coil via coil maps",
    )
)
register(
    ZooEntry(
        "ESPCN",
        ESPCN,
        "super_resolution",
        _espcn_forward,
        "sub-pixel CNN in-plane super-resolution, residual over bicubic",
    )
)


def check_recon_input(card: dict, kspace_shape: tuple[int, ...], mask: torch.Tensor, name: str):
    """Refuse input a trained reconstruction model was not made for (clear ReconError).

    ``kspace_shape`` is ``(S, C, H, W)``; ``mask`` the ``(S|1, 1, H|1, W)`` sampling mask.
    Checks (each only when the card states it): the coil count is one listed in ``n_coils``;
    the matrix is at least ``min_matrix`` pixels per side; the mask has a contiguous fully
    sampled centre (ACS) of at least ``max(2, floor(min_acs_fraction * W))`` lines (the
    least the model was trained with).
    """
    if len(kspace_shape) != 4:
        raise ReconError(f"model {name!r} needs (S, C, H, W) k-space, got {tuple(kspace_shape)}")
    _, c, h, w = kspace_shape
    coils = card.get("n_coils")
    if coils is not None:
        allowed = [int(coils)] if isinstance(coils, int | float) else [int(x) for x in coils]
        if c not in allowed:
            raise ReconError(
                f"model {name!r} was trained for {' or '.join(map(str, allowed))} coils, "
                f"got {c} (compress or select coils first)"
            )
    smallest = int(card.get("min_matrix", 1))
    if h < smallest or w < smallest:
        raise ReconError(
            f"model {name!r} needs a matrix of at least {smallest}x{smallest}, got {h}x{w}"
        )
    fraction = card.get("min_acs_fraction")
    if fraction is not None:
        need = max(2, math.floor(float(fraction) * w))
        sampled = mask.reshape(-1, *mask.shape[-2:])[0] > 0  # (H|1, W)
        columns = sampled.all(dim=0).float().reshape(1, 1, 1, -1)  # fully sampled columns
        got = int(acs_region(columns).sum())
        if got < need:
            raise ReconError(
                f"model {name!r} needs a fully sampled centre (ACS) of at least {need} of "
                f"{w} phase-encode lines; the mask has {got}"
            )
