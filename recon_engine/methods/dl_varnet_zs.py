"""VarNet fine-tuned on the scan itself (zero-shot self-supervised) as a registry method."""

from __future__ import annotations

import torch
from torch import nn

from recon_engine.dl.batching import network_output
from recon_engine.dl.uncertainty import dc_residual_map, dc_residual_note
from recon_engine.dl.varnet import SensitivityModel
from recon_engine.dl.weights import load_state_dict
from recon_engine.dl.zero_shot import (
    DESCRIPTION,
    ZERO_SHOT_PARAMS,
    fine_tune,
    fine_tune_info,
    settings_from,
)
from recon_engine.dl.zoo import check_recon_input
from recon_engine.fft import ifftc, rss
from recon_engine.methods.dl_varnet import MODEL_NAME, build_model
from recon_engine.methods.zero_filled import check_input
from recon_engine.metrics import Timer
from recon_engine.registry import MethodSpec, Param, ReconError, ReconInput, ReconOutput, register


def centre_band(mask: torch.Tensor) -> tuple[int, int]:
    """``(first column, width)`` of the centre the VarNet's sensitivity network uses, as
    fastMRI computes it from a 1D mask ``(1, 1, 1, W)``."""
    start, width = SensitivityModel.low_frequency_band(mask.bool().reshape(1, 1, 1, -1, 1))
    return int(start[0]), int(width[0])


def predictor(num_low: int):
    """The k-space predictor of :func:`recon_engine.dl.zero_shot.fine_tune` for a VarNet
    whose sensitivity network uses the central ``num_low`` columns."""

    def predict(model: nn.Module, masked: torch.Tensor, mask: torch.Tensor, _slices):
        out = model.predict_kspace(torch.view_as_real(masked), mask[..., None], num_low)
        return torch.view_as_complex(out.contiguous())

    return predict


def run(data: ReconInput, params: dict) -> ReconOutput:
    """Fine-tune the VarNet on the scan (per slice or per case), then reconstruct with every
    acquired sample; adds a ``dc_residual`` map."""
    check_input(data)
    k = data.kspace
    s, c, h, w = k.shape
    if data.mask.shape[-2] != 1 or data.mask.shape[0] != 1:
        raise ReconError("varnet_zs needs one 1D (column) mask (1, 1, 1, W) for all slices")
    timer = Timer(data.device)
    with timer("load_model"):
        state, card = load_state_dict(params["model"], map_location=data.device)
        check_recon_input(card, (s, c, h, w), data.mask, params["model"])
        torch.manual_seed(params["seed"])
        model = build_model(card)
        if params["init"] == "shipped":
            model.load_state_dict(state, strict=True)
    start, num_low = centre_band(data.mask)
    if num_low < 2:
        raise ReconError("varnet_zs needs a fully sampled k-space centre (ACS)")
    keep = torch.zeros(1, 1, 1, w, dtype=torch.bool)
    keep[..., start : start + num_low] = True
    settings = settings_from(params)
    kspace = k.to(data.device)
    mask = data.mask.to(data.device)
    predict = predictor(num_low)
    with timer("fine_tune"):
        tuned = fine_tune(model, predict, kspace * mask, mask, keep, settings)
    images, residuals = [], []
    with timer("network"), torch.inference_mode():
        for net, slices in zip(tuned.models, tuned.groups, strict=True):
            for i in range(0, slices.numel(), settings.batch_size):
                idx = slices[i : i + settings.batch_size]
                full = mask.bool().expand(idx.numel(), 1, h, w)
                kpred = predict(net, kspace[idx] * full, full, idx)
                images.append(rss(ifftc(kpred), coil_dim=1).cpu())
                residuals.append(dc_residual_map(kpred, kspace[idx] * full, full).cpu())
            if data.progress is not None:
                data.progress(int(slices[-1]) + 1, s)
    return network_output(
        images,
        {"dc_residual": residuals},
        timer,
        params["model"],
        card,
        dc_residual=dc_residual_note({}),
        init=params["init"],
        **fine_tune_info(tuned, settings),
    )


SPEC = register(
    MethodSpec(
        name="varnet_zs",
        title="VarNet, zero-shot self-supervised (fine-tuned on the scan)",
        family="deep_learning",
        description=(
            "The end-to-end variational network (fastMRI-compatible), its weights adapted to "
            "the scan being reconstructed." + DESCRIPTION + " Returns the RSS magnitude and a "
            "data-consistency residual map (not an error map)."
        ),
        run=run,
        params=(
            Param(
                "model",
                "str",
                MODEL_NAME,
                "Model card giving the architecture and the "
                "starting weights (<name>.json + <name>.pt)",
            ),
            *ZERO_SHOT_PARAMS,
        ),
        needs_acs=True,
        references=(
            "Yaman B et al., Zero-Shot Self-Supervised Learning for MRI Reconstruction, ICLR 2022",
            "Yaman B et al., Magn Reson Med 2020;84:3172-3191 (SSDU)",
            "Sriram A et al., End-to-End Variational Networks, MICCAI 2020",
        ),
    )
)
