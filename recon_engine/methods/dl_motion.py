"""Learned rigid-motion correction of segmented acquisitions as a registry method."""

from __future__ import annotations

import torch

from recon_engine.dl.batching import network_output, slice_batches
from recon_engine.dl.mc_dropout import (
    MC_PARAMS,
    calibrated_uncertainty,
    mc_dropout_std,
    shipped_calibration_note,
)
from recon_engine.dl.model_loader import load_network
from recon_engine.dl.motion import MotionCorrectionNet
from recon_engine.fft import ifftc, rss
from recon_engine.methods.zero_filled import check_input
from recon_engine.metrics import Timer
from recon_engine.registry import MethodSpec, Param, ReconInput, ReconOutput, register

DEMONSTRATION_CAVEAT = (
    "On the held-out test images (pydicom-data shoulder and abdomen at 64x64, never used for "
    "model selection, with the training motion simulation) the shipped model's PSNR is below "
    "that of its uncorrected input (see the test section of its model card): a "
    "demonstration, kept out of default protocols."
)


def run(data: ReconInput, params: dict) -> ReconOutput:
    """RSS of the (motion-corrupted) k-space, then the correction U-Net, per slice batch."""
    check_input(data)
    timer = Timer(data.device)
    with timer("load_model"):
        model, card = load_network(
            params["model"], MotionCorrectionNet, data.device, "MotionCorrectionNet"
        )
    images, spreads = [], []
    batch = params["batch_size"]
    with torch.inference_mode():
        for b0, _, kb, mb in slice_batches(data, batch, timer):
            with timer("rss"):
                corrupted = rss(ifftc(kb * mb), coil_dim=1)
            with timer("network"):
                images.append(model(corrupted).clamp_min(0).cpu())
            if params["mc_samples"]:
                with timer("mc_dropout"):
                    spreads.append(
                        mc_dropout_std(
                            model,
                            lambda x=corrupted: model(x),
                            params["mc_samples"],
                            params["mc_dropout"],
                            seed=b0,
                        ).cpu()
                    )
    maps, info = calibrated_uncertainty(spreads, card, params)
    return network_output(images, maps, timer, params["model"], card, **info)


SPEC = register(
    MethodSpec(
        name="motion_unet",
        title="Learned motion correction (multi-shot rigid motion)",
        family="deep_learning",
        description=(
            "For fully sampled segmented acquisitions in which the patient moved between "
            "shots: the ghosted root-sum-of-squares image is corrected by a U-Net trained on "
            "simulated rigid in-plane motion between k-space shots (translations up to 3 "
            "pixels, rotations up to 3 degrees, 4-16 shots). The small shipped network also "
            "smooths motion-free images (NMSE about 0.04 at 64x64), so use it only where "
            "motion is present. With MC passes, also an MC-dropout SD map scaled by the "
            "calibration in the model card (each output's info says what the map is worth)."
            + shipped_calibration_note("motion_unet")
        ),
        run=run,
        params=(
            Param("model", "str", "motion_unet", "Model card name (<name>.json + <name>.pt)"),
            Param("batch_size", "int", 8, "Slices per network call", min=1, max=256),
            *MC_PARAMS,
        ),
        demonstration_only=True,
        caveat=DEMONSTRATION_CAVEAT,
        references=(
            "Johnson PM, Drangova M, Conditional generative adversarial network for 3D rigid-"
            "body motion correction in MRI, MRM 2019;82:901-910",
        ),
    )
)
