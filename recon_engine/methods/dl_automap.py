"""AUTOMAP-style direct k-space-to-image network as a registry method (small matrix only)."""

from __future__ import annotations

import torch

from recon_engine.dl.automap import Automap, normalise, virtual_coil
from recon_engine.dl.batching import network_output, slice_batches
from recon_engine.dl.mc_dropout import (
    MC_PARAMS,
    calibrated_uncertainty,
    mc_dropout_std,
    shipped_calibration_note,
)
from recon_engine.dl.model_loader import load_network
from recon_engine.methods.zero_filled import check_input
from recon_engine.metrics import Timer
from recon_engine.registry import MethodSpec, Param, ReconError, ReconInput, ReconOutput, register

DEMONSTRATION_CAVEAT = (
    "On the held-out test images (pydicom-data shoulder and abdomen at 32x32, never used for model "
    "selection) the shipped model loses to its own zero-filled input (see the test section "
    "of its model card): a demonstration, kept out of default protocols."
)


def run(data: ReconInput, params: dict) -> ReconOutput:
    """Virtual-coil compression, normalisation, fully connected + convolutional mapping."""
    check_input(data)
    k = data.kspace
    s, _, h, w = k.shape
    timer = Timer(data.device)
    with timer("load_model"):
        model, card = load_network(params["model"], Automap, data.device, "Automap")
    if (h, w) != model.matrix:
        mh, mw = model.matrix
        raise ReconError(
            f"AUTOMAP model {params['model']!r} was trained at a {mh}x{mw} matrix and accepts "
            f"only that size (its fully connected layers fix the input size); this k-space is "
            f"{h}x{w}. Resample the acquisition to {mh}x{mw} or choose another method."
        )
    images, spreads = [], []
    batch = params["batch_size"]
    with torch.inference_mode():
        for b0, _, kb, mb in slice_batches(data, batch, timer):
            with timer("virtual_coil"):
                vc, scale = normalise(virtual_coil(kb * mb))
            with timer("network"):
                images.append((model(vc).abs() * scale).cpu())
            if params["mc_samples"]:
                with timer("mc_dropout"):
                    spread = mc_dropout_std(
                        model,
                        lambda vc=vc: model(vc),
                        params["mc_samples"],
                        params["mc_dropout"],
                        seed=b0,
                    )
                    spreads.append((spread * scale).cpu())
    maps, info = calibrated_uncertainty(spreads, card, params)
    return network_output(images, maps, timer, params["model"], card, **info)


SPEC = register(
    MethodSpec(
        name="automap",
        title="AUTOMAP direct mapping (32x32 only)",
        family="deep_learning",
        description=(
            "Data-driven direct mapping: the undersampled k-space (compressed to one "
            "virtual coil) goes through two fully connected layers and a small "
            "convolutional stage straight to the image (AUTOMAP). The fully connected "
            "layers grow with the square of the pixel count, so the shipped model works "
            "only at the 32x32 matrix it was trained at (see its model card) and refuses "
            "any other size. With MC passes, also an MC-dropout SD map, scaled by the "
            "calibration in the model card (each output's info says what the map is worth)."
            + shipped_calibration_note("automap")
        ),
        run=run,
        params=(
            Param("model", "str", "automap", "Model card name (<name>.json + <name>.pt)"),
            Param("batch_size", "int", 32, "Slices per network call", min=1, max=1024),
            *MC_PARAMS,
        ),
        references=(
            "Zhu B et al., Image reconstruction by domain-transform manifold learning, "
            "Nature 2018;555:487-492",
        ),
        demonstration_only=True,
        caveat=DEMONSTRATION_CAVEAT,
    )
)
