"""Deep cascade of CNNs with hard data consistency as a registry method."""

from __future__ import annotations

from dataclasses import replace

import torch

from recon_engine.dl.batching import network_output, slice_batches
from recon_engine.dl.cascade import DeepCascade, acs_maps
from recon_engine.dl.uncertainty import DC_RESIDUAL_ZERO_BY_CONSTRUCTION
from recon_engine.dl.weights import load_state_dict
from recon_engine.espirit import SENSITIVITY_PARAMS, sensitivities_for
from recon_engine.methods.zero_filled import check_input
from recon_engine.metrics import Timer
from recon_engine.registry import MethodSpec, Param, ReconError, ReconInput, ReconOutput, register
from recon_engine.sampling import acs_region

# The shipped model trained with the ACS maps of recon_engine.dl.cascade.acs_maps
# (low-resolution coil images / RSS, no background threshold): the default estimate.
_MAP_PARAMS = tuple(
    replace(p, default="acs") if p.name == "sensitivities" else p for p in SENSITIVITY_PARAMS
)


def run(data: ReconInput, params: dict) -> ReconOutput:
    """Reconstruct slice batches with the trained deep cascade. Coil sensitivities: the
    input's when given (e.g. a prescan), otherwise estimated from the ACS
    (``params["sensitivities"]``: the unthresholded ACS maps it was trained with, or
    ESPIRiT). No ``dc_residual`` map: hard data consistency makes it identically zero."""
    check_input(data)
    k = data.kspace
    timer = Timer(data.device)
    with timer("sensitivities"):
        acs = data.acs_mask if data.acs_mask is not None else acs_region(data.mask)
        if data.sensitivities is None and not bool(acs.any()):
            raise ReconError(
                "deep_cascade needs coil sensitivities: give them in the input or acquire a "
                "fully sampled k-space centre (ACS) to estimate them from"
            )
        if data.sensitivities is None and params["sensitivities"] == "acs":
            sens = acs_maps(k.to(data.device), data.mask.to(data.device), acs.to(data.device))
            sens_info = {"sensitivities": "acs"}
        else:
            sens, sens_info = sensitivities_for(data, params)
    with timer("load_model"):
        state, card = load_state_dict(params["model"], map_location=data.device)
        arch = {key: v for key, v in card.get("architecture", {}).items() if key != "type"}
        try:
            model = DeepCascade(**arch)
            model.load_state_dict(state, strict=True)
        except (TypeError, RuntimeError) as exc:
            raise ReconError(f"weights do not fit the deep cascade: {exc}") from None
        model.to(data.device).eval()
    images = []
    batch = params["batch_size"]
    with torch.inference_mode():
        for b0, b1, kb, mb in slice_batches(data, batch, timer):
            sb = sens[b0:b1]
            with timer("network"):
                image, _ = model(kb * mb, mb, sb)
            images.append(image.cpu())
    return network_output(
        images,
        {},
        timer,
        params["model"],
        card,
        dc_residual=DC_RESIDUAL_ZERO_BY_CONSTRUCTION,
        **sens_info,
    )


SPEC = register(
    MethodSpec(
        name="deep_cascade",
        title="Deep cascade CNN with hard data consistency",
        family="deep_learning",
        description=(
            "Alternates an image-domain residual CNN with hard data consistency (measured "
            "k-space samples are kept exactly), multi-coil through coil sensitivities (the "
            "input's, or estimated from the ACS). No data-consistency residual map: it is "
            "zero by construction. Needs trained weights (sha256-verified model card + .pt)."
        ),
        run=run,
        params=(
            Param("model", "str", "deep_cascade", "Model card name (<name>.json + <name>.pt)"),
            Param("batch_size", "int", 4, "Slices per network call", min=1, max=256),
            *_MAP_PARAMS,
        ),
        needs_acs=True,
        references=("Schlemper J et al., IEEE Trans Med Imaging 2018;37:491-503",),
    )
)
