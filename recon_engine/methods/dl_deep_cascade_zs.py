"""Deep cascade fine-tuned on the scan itself (zero-shot self-supervised) as a registry
method."""

from __future__ import annotations

import torch
from torch import nn

from recon_engine.dl.batching import network_output
from recon_engine.dl.cascade import DeepCascade, acs_maps
from recon_engine.dl.uncertainty import DC_RESIDUAL_ZERO_BY_CONSTRUCTION
from recon_engine.dl.weights import load_state_dict
from recon_engine.dl.zero_shot import (
    DESCRIPTION,
    ZERO_SHOT_PARAMS,
    fine_tune,
    fine_tune_info,
    settings_from,
)
from recon_engine.espirit import sensitivities_for
from recon_engine.methods.dl_deep_cascade import _MAP_PARAMS
from recon_engine.methods.zero_filled import check_input
from recon_engine.metrics import Timer
from recon_engine.registry import MethodSpec, Param, ReconError, ReconInput, ReconOutput, register
from recon_engine.sampling import acs_region


def predictor(sens: torch.Tensor):
    """The k-space predictor of :func:`recon_engine.dl.zero_shot.fine_tune` for a deep
    cascade with fixed coil maps ``sens`` ``(S, C, H, W)``: the k-space before its last hard
    data consistency is the network's estimate ``F S x`` outside the given samples."""

    def predict(model: nn.Module, masked: torch.Tensor, mask: torch.Tensor, slices):
        _, kspace = model(masked, mask, sens[slices])
        return kspace

    return predict


def run(data: ReconInput, params: dict) -> ReconOutput:
    """Fine-tune the deep cascade on the scan (per slice or per case), then reconstruct with
    every acquired sample. Coil maps as :mod:`recon_engine.methods.dl_deep_cascade`, from the
    ACS, which stays in every data-consistency set."""
    check_input(data)
    k = data.kspace.to(data.device)
    s, _, h, w = k.shape
    timer = Timer(data.device)
    acs = data.acs_mask if data.acs_mask is not None else acs_region(data.mask)
    if not bool(acs.any()):
        raise ReconError("deep_cascade_zs needs a fully sampled k-space centre (ACS)")
    mask = data.mask.to(data.device)
    with timer("sensitivities"):
        if data.sensitivities is None and params["sensitivities"] == "acs":
            sens = acs_maps(k, mask, acs.to(data.device))
            sens_info = {"sensitivities": "acs"}
        else:
            sens, sens_info = sensitivities_for(data, params)
    with timer("load_model"):
        state, card = load_state_dict(params["model"], map_location=data.device)
        arch = {key: v for key, v in card.get("architecture", {}).items() if key != "type"}
        torch.manual_seed(params["seed"])
        try:
            model = DeepCascade(**arch)
            if params["init"] == "shipped":
                model.load_state_dict(state, strict=True)
        except (TypeError, RuntimeError) as exc:
            raise ReconError(f"weights do not fit the deep cascade: {exc}") from None
    settings = settings_from(params)
    sens = sens.to(data.device)
    predict = predictor(sens)
    with timer("fine_tune"):
        tuned = fine_tune(model, predict, k * mask, mask, acs.to(data.device), settings)
    images = []
    with timer("network"), torch.inference_mode():
        for net, slices in zip(tuned.models, tuned.groups, strict=True):
            for i in range(0, slices.numel(), settings.batch_size):
                idx = slices[i : i + settings.batch_size]
                full = (
                    mask.bool().expand(idx.numel(), 1, h, w)
                    if mask.shape[0] == 1
                    else (mask[idx].bool().expand(idx.numel(), 1, h, w))
                )
                image, _ = net(k[idx] * full, full, sens[idx])
                images.append(image.cpu())
            if data.progress is not None:
                data.progress(int(slices[-1]) + 1, s)
    return network_output(
        images,
        {},
        timer,
        params["model"],
        card,
        dc_residual=DC_RESIDUAL_ZERO_BY_CONSTRUCTION,
        init=params["init"],
        **sens_info,
        **fine_tune_info(tuned, settings),
    )


SPEC = register(
    MethodSpec(
        name="deep_cascade_zs",
        title="Deep cascade, zero-shot self-supervised (fine-tuned on the scan)",
        family="deep_learning",
        description=(
            "The deep cascade CNN with hard data consistency, its weights adapted to the "
            "scan being reconstructed." + DESCRIPTION + " Coil maps: the input's, or "
            "estimated from the ACS (which always stays in the data-consistency set)."
        ),
        run=run,
        params=(
            Param(
                "model",
                "str",
                "deep_cascade",
                "Model card giving the architecture and "
                "the starting weights (<name>.json + <name>.pt)",
            ),
            *ZERO_SHOT_PARAMS,
            *_MAP_PARAMS,
        ),
        needs_acs=True,
        references=(
            "Yaman B et al., Zero-Shot Self-Supervised Learning for MRI Reconstruction, ICLR 2022",
            "Yaman B et al., Magn Reson Med 2020;84:3172-3191 (SSDU)",
            "Schlemper J et al., IEEE Trans Med Imaging 2018;37:491-503",
        ),
    )
)
