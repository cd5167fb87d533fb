"""Deep cascade of CNNs with hard data consistency as a registry method."""

from __future__ import annotations

import torch

from recon_engine.dl.cascade import DeepCascade
from recon_engine.dl.uncertainty import dc_residual_map
from recon_engine.dl.weights import load_state_dict
from recon_engine.methods.zero_filled import check_input
from recon_engine.metrics import Timer
from recon_engine.registry import MethodSpec, Param, ReconError, ReconInput, ReconOutput, register


def run(data: ReconInput, params: dict) -> ReconOutput:
    """Reconstruct slice batches with the trained deep cascade (needs coil sensitivities)."""
    check_input(data)
    if data.sensitivities is None:
        raise ReconError(
            "deep_cascade needs coil sensitivities (e.g. from ESPIRiT or a prescan) in the input"
        )
    k = data.kspace
    s = k.shape[0]
    timer = Timer(data.device)
    with timer("load_model"):
        state, card = load_state_dict(params["model"], map_location=data.device)
        arch = {key: v for key, v in card.get("architecture", {}).items() if key != "type"}
        try:
            model = DeepCascade(**arch)
            model.load_state_dict(state, strict=True)
        except (TypeError, RuntimeError) as exc:
            raise ReconError(f"weights do not fit the deep cascade: {exc}") from None
        model.to(data.device).eval()
    images, residuals = [], []
    batch = params["batch_size"]
    with torch.inference_mode():
        for b0 in range(0, s, batch):
            b1 = min(s, b0 + batch)
            with timer("transfer"):
                kb = k[b0:b1].to(data.device)
                mb = (data.mask[b0:b1] if data.mask.shape[0] == s else data.mask).to(data.device)
                sb = data.sensitivities[b0:b1].to(data.device)
            with timer("network"):
                image, kpred = model(kb * mb, mb, sb)
            images.append(image.cpu())
            with timer("dc_residual"):
                residuals.append(dc_residual_map(kpred, kb * mb, mb).cpu())
            if data.progress is not None:
                data.progress(b1, s)
    return ReconOutput(
        image=torch.cat(images),
        maps={"dc_residual": torch.cat(residuals)},
        timings=timer.timings,
        info={"model": params["model"], "sha256": card["sha256"], "card": card},
    )


SPEC = register(
    MethodSpec(
        name="deep_cascade",
        title="Deep cascade CNN with hard data consistency",
        family="deep_learning",
        description=(
            "Alternates an image-domain residual CNN with hard data consistency (measured "
            "k-space samples are kept exactly), multi-coil through the input coil "
            "sensitivities. Needs trained weights (sha256-verified model card + .pt)."
        ),
        run=run,
        params=(
            Param("model", "str", "deep_cascade", "Model card name (<name>.json + <name>.pt)"),
            Param("batch_size", "int", 4, "Slices per network call", min=1, max=256),
        ),
        references=("Schlemper J et al., IEEE Trans Med Imaging 2018;37:491-503",),
    )
)
