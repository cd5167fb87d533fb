"""Image-domain U-Net (fastMRI baseline): zero-filled RSS image in, clean image out."""

from __future__ import annotations

import torch

from recon_engine.dl.batching import network_output, slice_batches
from recon_engine.dl.mc_dropout import (
    MC_PARAMS,
    calibrated_uncertainty,
    mc_dropout_std,
    shipped_calibration_note,
)
from recon_engine.dl.unet import Unet
from recon_engine.dl.weights import load_state_dict
from recon_engine.dl.zoo import check_recon_input
from recon_engine.fft import ifftc, rss
from recon_engine.methods.zero_filled import check_input
from recon_engine.metrics import Timer
from recon_engine.registry import MethodSpec, Param, ReconError, ReconInput, ReconOutput, register

DEMONSTRATION_CAVEAT = (
    "On the held-out test images (pydicom-data shoulder and abdomen, never used for model "
    "selection) the shipped model loses to its own zero-filled input (see the test section "
    "of its model card): a demonstration, kept out of default protocols."
)


def run(data: ReconInput, params: dict) -> ReconOutput:
    """Zero-filled RSS magnitude, per-slice mean/std normalisation (as fastMRI's U-Net
    baseline), U-Net, de-normalisation; batched over slices. With ``mc_samples >= 2``
    the map ``uncertainty`` ``(S, H, W)`` is the per-pixel SD (image units) over that many
    passes with the U-Net's dropout layers active at ``mc_dropout`` (seeded per batch);
    the image itself is always the deterministic pass."""
    check_input(data)
    k = data.kspace
    timer = Timer(data.device)
    with timer("load_model"):
        state, card = load_state_dict(params["model"], map_location=data.device)
        check_recon_input(card, tuple(k.shape), data.mask, params["model"])
        arch = {key: v for key, v in card.get("architecture", {}).items() if key != "type"}
        arch.setdefault("in_chans", 1)
        arch.setdefault("out_chans", 1)
        try:
            model = Unet(**arch)
            model.load_state_dict(state, strict=True)
        except (TypeError, RuntimeError) as exc:
            raise ReconError(f"weights do not fit the U-Net: {exc}") from None
        model.to(data.device).eval()
    images, spreads = [], []
    batch = params["batch_size"]
    mc_samples = params["mc_samples"] if params["mc_samples"] >= 2 else 0
    with torch.inference_mode():
        for b0, _, kb, mb in slice_batches(data, batch, timer):
            with timer("zero_filled"):
                x = rss(ifftc(kb * mb), coil_dim=1)[:, None]
                mean = x.mean(dim=(-2, -1), keepdim=True)
                std = x.std(dim=(-2, -1), keepdim=True).clamp_min(1e-11)
            with timer("network"):
                y = model((x - mean) / std) * std + mean
            images.append(y[:, 0].cpu())
            if mc_samples:
                with timer("mc_dropout"):
                    spread = mc_dropout_std(
                        model,
                        lambda x=x, mean=mean, std=std: model((x - mean) / std) * std + mean,
                        mc_samples,
                        params["mc_dropout"],
                        seed=b0,
                    )
                spreads.append(spread[:, 0].cpu())
    maps, info = calibrated_uncertainty(spreads, card, params)
    return network_output(images, maps, timer, params["model"], card, **info)


def differentiable_forward(params: dict, device: torch.device | str = "cpu"):
    """``f(kspace (S, C, H, W), mask) -> (S, H, W)`` with autograd: the deterministic pass
    of :func:`run` (dropout off), for the fidelity lab's instability tests."""
    params = SPEC.validate(params)
    state, card = load_state_dict(params["model"], map_location=device)
    arch = {key: v for key, v in card.get("architecture", {}).items() if key != "type"}
    arch.setdefault("in_chans", 1)
    arch.setdefault("out_chans", 1)
    model = Unet(**arch)
    model.load_state_dict(state, strict=True)
    model.to(device).eval()

    def forward(kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_recon_input(card, tuple(kspace.shape), mask, params["model"])
        x = rss(ifftc(kspace * mask), coil_dim=1)[:, None]
        mean = x.mean(dim=(-2, -1), keepdim=True)
        std = x.std(dim=(-2, -1), keepdim=True).clamp_min(1e-11)
        return (model((x - mean) / std) * std + mean)[:, 0]

    return forward


SPEC = register(
    MethodSpec(
        name="unet",
        title="Image-domain U-Net",
        family="deep_learning",
        description=(
            "The zero-filled root-sum-of-squares image is de-aliased by a U-Net (fastMRI "
            "baseline; fastMRI Unet state dicts load unchanged). With MC passes, also an "
            "MC-dropout SD map, scaled by the calibration in the model card (each output's "
            "info says what the map is worth). Needs trained weights (sha256-verified model "
            "card + .pt)." + shipped_calibration_note("unet")
        ),
        run=run,
        params=(
            Param("model", "str", "unet", "Model card name (<name>.json + <name>.pt)"),
            Param("batch_size", "int", 8, "Slices per network call", min=1, max=256),
            *MC_PARAMS,
        ),
        references=("Zbontar J et al., fastMRI, arXiv:1811.08839, 2018",),
        demonstration_only=True,
        caveat=DEMONSTRATION_CAVEAT,
        differentiable=lambda params, device: differentiable_forward(params, device),
    )
)
