"""Learned through-plane super-resolution of volumes (3D sub-pixel CNN) as a registry method."""

from __future__ import annotations

import torch

from recon_engine.dl.mc_dropout import MC_PARAMS, calibrated_uncertainty, mc_dropout_std
from recon_engine.dl.model_loader import load_network
from recon_engine.metrics import Timer
from recon_engine.registry import MethodSpec, Param, ReconError, ReconInput, ReconOutput, register
from recon_engine.sr.espcn3d import ESPCN3D
from recon_engine.sr.method import input_image


def run(data: ReconInput, params: dict) -> ReconOutput:
    """Enlarge the slice axis of the magnitude volume by the factor the weights were trained
    for: ``(S, H, W)`` -> ``(factor * S, H, W)``."""
    timer = Timer(data.device)
    with timer("input"):
        image = input_image(data)
        if image.ndim != 3 or image.numel() == 0:
            raise ReconError(f"sr_3d needs an (S, H, W) volume, got {tuple(image.shape)}")
        if not bool(torch.isfinite(image.abs()).all()):
            raise ReconError("sr_3d input contains NaN or infinite values")
        if image.shape[0] < 2:
            raise ReconError(
                f"sr_3d enlarges the slice axis and needs at least 2 slices, got {image.shape[0]}"
            )
        image = image.abs().float()
    with timer("load_model"):
        model, card = load_network(params["model"], ESPCN3D, data.device, "ESPCN3D")
    spreads = []
    with torch.inference_mode():
        with timer("network"):
            out = model(image)
        if params["mc_samples"]:
            with timer("mc_dropout"):
                spreads.append(
                    mc_dropout_std(
                        model, lambda: model(image), params["mc_samples"], params["mc_dropout"]
                    ).cpu()
                )
    uncertainty, uncertainty_info = calibrated_uncertainty(spreads, card, params)
    if data.progress is not None:
        data.progress(1, 1)
    return ReconOutput(
        image=out.cpu(),
        maps={name: parts[0] for name, parts in uncertainty.items()},
        timings=timer.timings,
        info={
            "model": params["model"],
            "factor": model.factor,
            "direction": "through_plane",
            "input_shape": list(image.shape),
            "sha256": card["sha256"],
            **uncertainty_info,
        },
    )


SPEC = register(
    MethodSpec(
        name="sr_3d",
        title="3D CNN through-plane super-resolution",
        family="super_resolution",
        description=(
            "Thick-slice volumes are enlarged along the slice axis by a 3D sub-pixel "
            "convolutional network (residual over cubic interpolation) trained on thin-slice "
            "brain volumes with a box slice profile. Input: metadata['image'] (S, H, W) or "
            "the zero-filled RSS image; output (factor x S, H, W), factor from the model card. "
            "With MC passes, also an MC-dropout SD map; the shipped model has no test volume, "
            "so the map is uncalibrated and not known to track the error."
        ),
        run=run,
        params=(
            Param("model", "str", "sr_3d", "Model card name (<name>.json + <name>.pt)"),
            *MC_PARAMS,
        ),
        references=(
            "Shi W et al., CVPR 2016, arXiv:1609.05158",
            "Chen Y et al., Brain MRI super resolution using 3D deep densely connected neural "
            "networks, ISBI 2018",
        ),
    )
)
