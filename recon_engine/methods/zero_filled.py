"""Zero-filled baseline: inverse FFT of the undersampled k-space, coil-combined."""

from __future__ import annotations

import torch

from recon_engine.fft import ifftc, rss
from recon_engine.metrics import Timer
from recon_engine.registry import MethodSpec, Param, ReconError, ReconInput, ReconOutput, register

_SLICES_PER_BATCH = 32


def check_input(data: ReconInput) -> None:
    """Shape / dtype / finiteness checks shared by the baseline methods."""
    k = data.kspace
    if k.ndim != 4:
        raise ReconError(f"k-space must be (S, C, H, W), got shape {tuple(k.shape)}")
    if not k.is_complex():
        raise ReconError(f"k-space must be complex, got {k.dtype}")
    if k.numel() == 0:
        raise ReconError("k-space is empty")
    if not bool(torch.isfinite(torch.view_as_real(k)).all()):
        raise ReconError("k-space contains NaN or infinite values")
    m = data.mask
    s, _, h, w = k.shape
    if m.ndim != 4 or m.shape[-1] != w or m.shape[-2] not in (1, h) or m.shape[0] not in (1, s):
        raise ReconError(f"mask {tuple(m.shape)} is not broadcastable to k-space {tuple(k.shape)}")
    if data.sensitivities is not None and tuple(data.sensitivities.shape) != tuple(k.shape):
        raise ReconError(
            f"sensitivities {tuple(data.sensitivities.shape)} do not match k-space {tuple(k.shape)}"
        )


def combine(coil_images: torch.Tensor, how: str, maps: torch.Tensor | None) -> torch.Tensor:
    """Coil combination: ``"rss"`` magnitude, or ``"sensitivities"``: complex
    ``sum_c conj(S_c) x_c / sum_c |S_c|^2`` (the least-squares combination)."""
    if how == "rss":
        return rss(coil_images, coil_dim=1)
    if maps is None:
        raise ReconError("combine='sensitivities' needs coil sensitivities in the input")
    num = (maps.conj() * coil_images).sum(dim=1)
    den = (maps.abs() ** 2).sum(dim=1)
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))


def run(data: ReconInput, params: dict) -> ReconOutput:
    """Zero-fill the unsampled k-space, inverse FFT per coil, combine, per slice batch."""
    check_input(data)
    device = data.device
    timer = Timer(device)
    s = data.kspace.shape[0]
    mask = data.mask
    images = []
    for b0 in range(0, s, _SLICES_PER_BATCH):
        b1 = min(s, b0 + _SLICES_PER_BATCH)
        with timer("transfer"):
            k = data.kspace[b0:b1].to(device)
            m = (mask[b0:b1] if mask.shape[0] == s and s > 1 else mask).to(device)
            maps = data.sensitivities[b0:b1].to(device) if data.sensitivities is not None else None
        with timer("ifft"):
            coil_images = ifftc(k * m)
        with timer("coil_combine"):
            images.append(combine(coil_images, params["combine"], maps).cpu())
        if data.progress is not None:
            data.progress(b1, s)
    sampled = float(mask.float().mean())
    return ReconOutput(
        image=torch.cat(images),
        timings=timer.timings,
        info={"combine": params["combine"], "sampled_fraction": sampled},
    )


SPEC = register(
    MethodSpec(
        name="zero_filled",
        title="Zero-filled inverse FFT",
        family="baseline",
        description=(
            "Unsampled k-space is set to zero and each coil image is the inverse FFT; coils "
            "are combined by root-sum-of-squares (or with coil sensitivities). Aliasing and "
            "blurring are left in: the lower bound every method should beat."
        ),
        run=run,
        params=(
            Param(
                "combine",
                "choice",
                "rss",
                "Coil combination: root-sum-of-squares, or sensitivity-weighted (needs maps)",
                choices=("rss", "sensitivities"),
            ),
        ),
        references=("Bernstein MA et al., Handbook of MRI Pulse Sequences, 2004, ch. 13",),
    )
)
