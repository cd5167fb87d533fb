"""Learned in-plane super-resolution (ESPCN sub-pixel CNN) as a registry method."""

from __future__ import annotations

import torch

from recon_engine.dl.weights import load_state_dict
from recon_engine.metrics import Timer
from recon_engine.registry import MethodSpec, Param, ReconError, ReconInput, ReconOutput, register
from recon_engine.sr.espcn import ESPCN
from recon_engine.sr.method import input_image


def run(data: ReconInput, params: dict) -> ReconOutput:
    """Enlarge the magnitude image in-plane by the factor the weights were trained for."""
    timer = Timer(data.device)
    with timer("input"):
        image = input_image(data)
        if image.ndim != 3 or not bool(torch.isfinite(image.abs()).all()):
            raise ReconError(f"sr_espcn needs a finite (S, H, W) image, got {tuple(image.shape)}")
        image = image.abs().float()
        if min(image.shape[-2:]) < 8:
            raise ReconError(
                f"sr_espcn needs an image of at least 8x8 pixels, got {tuple(image.shape[-2:])}"
            )
    with timer("load_model"):
        state, card = load_state_dict(params["model"], map_location=data.device)
        arch = {k: v for k, v in card.get("architecture", {}).items() if k != "type"}
        try:
            model = ESPCN(**arch)
            model.load_state_dict(state, strict=True)
        except (TypeError, RuntimeError) as exc:
            raise ReconError(f"weights do not fit ESPCN: {exc}") from None
        model.to(data.device).eval()
    with timer("network"), torch.inference_mode():
        out = model(image)
    if data.progress is not None:
        data.progress(1, 1)
    return ReconOutput(
        image=out.cpu(),
        timings=timer.timings,
        info={"model": params["model"], "factor": model.factor, "sha256": card["sha256"]},
    )


SPEC = register(
    MethodSpec(
        name="sr_espcn",
        title="Sub-pixel CNN super-resolution (ESPCN)",
        family="super_resolution",
        description=(
            "In-plane super-resolution of the magnitude image by a sub-pixel convolutional "
            "network predicting a residual over bicubic interpolation. Needs trained weights "
            "(sha256-verified model card + .pt); the factor comes from the card."
        ),
        run=run,
        params=(Param("model", "str", "sr_espcn", "Model card name (<name>.json + <name>.pt)"),),
        references=("Shi W et al., CVPR 2016, arXiv:1609.05158",),
    )
)
