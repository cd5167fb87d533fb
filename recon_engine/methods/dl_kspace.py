"""k-space-domain network (learned multi-coil k-space completion) as a registry method."""

from __future__ import annotations

import torch

from recon_engine.dl.batching import network_output, slice_batches
from recon_engine.dl.kspace_net import KSpaceNet
from recon_engine.dl.mc_dropout import (
    MC_PARAMS,
    calibrated_uncertainty,
    mc_dropout_std,
    shipped_calibration_note,
)
from recon_engine.dl.model_loader import load_network
from recon_engine.dl.uncertainty import DC_RESIDUAL_ZERO_BY_CONSTRUCTION
from recon_engine.fft import ifftc, rss
from recon_engine.methods.zero_filled import check_input
from recon_engine.metrics import Timer
from recon_engine.registry import MethodSpec, Param, ReconError, ReconInput, ReconOutput, register


def run(data: ReconInput, params: dict) -> ReconOutput:
    """Complete each slice batch's k-space with the network, put the measured samples
    back, inverse FFT and RSS; map ``uncertainty`` with MC passes. No ``dc_residual`` map:
    the measured samples are kept exactly, so it would be identically zero."""
    check_input(data)
    k = data.kspace
    s, c, h, w = k.shape
    if data.acs_mask is not None and not bool(data.acs_mask.any()):
        raise ReconError(
            "kspace_net needs a fully sampled k-space centre (ACS); this mask has none"
        )
    timer = Timer(data.device)
    with timer("load_model"):
        model, card = load_network(params["model"], KSpaceNet, data.device, "KSpaceNet")
    if model.n_coils != c:
        raise ReconError(
            f"model {params['model']!r} was trained for {model.n_coils} coils; this k-space "
            f"has {c} (a k-space network's channels are the coils)"
        )
    images, spreads = [], []
    batch = params["batch_size"]
    with torch.inference_mode():
        for b0, b1, kb, mb in slice_batches(data, batch, timer):
            mb = mb.expand(b1 - b0, 1, *mb.shape[-2:]).float()
            with timer("network"):
                kpred = model(kb, mb)
                images.append(rss(ifftc(kpred), coil_dim=1).cpu())
            if params["mc_samples"]:
                with timer("mc_dropout"):
                    spreads.append(
                        mc_dropout_std(
                            model,
                            lambda kb=kb, mb=mb: model.image(kb, mb),
                            params["mc_samples"],
                            params["mc_dropout"],
                            seed=b0,
                        ).cpu()
                    )
    maps, info = calibrated_uncertainty(spreads, card, params)
    return network_output(
        images,
        maps,
        timer,
        params["model"],
        card,
        dc_residual=DC_RESIDUAL_ZERO_BY_CONSTRUCTION,
        **info,
    )


SPEC = register(
    MethodSpec(
        name="kspace_net",
        title="k-space network (learned k-space completion)",
        family="deep_learning",
        description=(
            "A U-Net working in k-space on all coils at once (real and imaginary parts as "
            "channels, radially weighted) predicts the missing phase-encode lines; the "
            "measured samples are kept exactly, then inverse FFT and root-sum-of-squares. "
            "No data-consistency residual map: it is zero by construction (the measured "
            "samples are kept exactly). With MC passes, an MC-dropout SD map scaled by the "
            "calibration in the model card (each output's info says what the map is worth). "
            "Trained for a fixed coil count (in the model card)."
            + shipped_calibration_note("kspace_net")
        ),
        run=run,
        params=(
            Param("model", "str", "kspace_net", "Model card name (<name>.json + <name>.pt)"),
            Param("batch_size", "int", 8, "Slices per network call", min=1, max=256),
            *MC_PARAMS,
        ),
        needs_acs=True,
        references=(
            "Han Y, Sunwoo L, Ye JC, k-Space Deep Learning for Accelerated MRI, IEEE TMI 2020",
        ),
    )
)
