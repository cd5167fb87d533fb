"""End-to-end variational network (fastMRI-compatible) as a registry method."""

from __future__ import annotations

import torch

from recon_engine.dl.batching import network_output, slice_batches
from recon_engine.dl.uncertainty import dc_residual_map, dc_residual_note, shipped_dc_residual_note
from recon_engine.dl.varnet import VarNet
from recon_engine.dl.weights import load_state_dict
from recon_engine.dl.zoo import check_recon_input
from recon_engine.fft import ifftc, rss
from recon_engine.methods.zero_filled import check_input
from recon_engine.metrics import Timer
from recon_engine.registry import MethodSpec, Param, ReconError, ReconInput, ReconOutput, register

MODEL_NAME = "varnet"


def build_model(card: dict) -> VarNet:
    """A VarNet with the card's ``architecture`` keyword arguments."""
    arch = dict(card.get("architecture", {}))
    arch.pop("type", None)
    try:
        return VarNet(**arch)
    except TypeError as exc:
        raise ReconError(f"model card architecture {arch} does not fit VarNet: {exc}") from None


def run(data: ReconInput, params: dict) -> ReconOutput:
    """Reconstruct each slice batch with the trained VarNet; adds a ``dc_residual`` map."""
    check_input(data)
    k = data.kspace
    s, c, h, w = k.shape
    if data.mask.shape[-2] != 1:
        raise ReconError("VarNet needs a 1D (column) mask (1, 1, 1, W); got a 2D mask")
    timer = Timer(data.device)
    with timer("load_model"):
        state, card = load_state_dict(params["model"], map_location=data.device)
        check_recon_input(card, (s, c, h, w), data.mask, params["model"])
        model = build_model(card)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ReconError(f"weights do not match the card's architecture: {exc}") from None
        model.to(data.device).eval()
    images, residuals = [], []
    batch = params["batch_size"]
    with torch.inference_mode():
        for b0, b1, kb, mb in slice_batches(data, batch, timer):
            mb = mb.expand(b1 - b0, 1, 1, w)
            with timer("network"):
                masked = torch.view_as_real(kb * mb)
                bool_mask = mb.bool()[..., None]
                kpred = torch.view_as_complex(model.predict_kspace(masked, bool_mask).contiguous())
                images.append(rss(ifftc(kpred), coil_dim=1).cpu())
            with timer("dc_residual"):
                residuals.append(dc_residual_map(kpred, kb * mb, mb).cpu())
    return network_output(
        images,
        {"dc_residual": residuals},
        timer,
        params["model"],
        card,
        dc_residual=dc_residual_note(card),
    )


def differentiable_forward(params: dict, device: torch.device | str = "cpu"):
    """``f(kspace (S, C, H, W), mask (1, 1, 1, W)) -> (S, H, W)`` RSS magnitude with
    autograd, as :func:`run` computes it, for the fidelity lab's instability tests."""
    params = SPEC.validate(params)
    state, card = load_state_dict(params["model"], map_location=device)
    model = build_model(card)
    model.load_state_dict(state, strict=True)
    model.to(device).eval()

    def forward(kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s, c, h, w = kspace.shape
        check_recon_input(card, (s, c, h, w), mask, params["model"])
        mask = mask.expand(s, 1, 1, w)
        masked = torch.view_as_real(kspace * mask)
        kpred = model.predict_kspace(masked, mask.bool()[..., None])
        kpred = torch.view_as_complex(kpred.contiguous())
        return rss(ifftc(kpred), coil_dim=1)

    return forward


SPEC = register(
    MethodSpec(
        name="varnet",
        title="End-to-end variational network",
        family="deep_learning",
        description=(
            "Cascades of soft data consistency and U-Net refinement in k-space with a learned "
            "coil-sensitivity network estimated from the ACS (fastMRI-compatible weights). "
            "Returns the RSS magnitude and a data-consistency residual map (disagreement with "
            "the measured samples, not an error map). Needs trained weights: a model card + "
            ".pt file (sha256-verified) in RECON_MODEL_PATH or the shipped models folder."
            + shipped_dc_residual_note(MODEL_NAME)
        ),
        run=run,
        params=(
            Param("model", "str", MODEL_NAME, "Model card name (<name>.json + <name>.pt)"),
            Param("batch_size", "int", 4, "Slices per network call", min=1, max=256),
        ),
        needs_acs=True,
        references=("Sriram A et al., End-to-End Variational Networks, MICCAI 2020",),
        differentiable=lambda params, device: differentiable_forward(params, device),
    )
)
