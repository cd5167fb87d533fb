"""Root-sum-of-squares of fully sampled coil images: the fastMRI reference image."""

from __future__ import annotations

import torch

from recon_engine.fft import ifftc, rss
from recon_engine.methods.zero_filled import check_input
from recon_engine.metrics import Timer
from recon_engine.registry import MethodSpec, Param, ReconError, ReconInput, ReconOutput, register

_SLICES_PER_BATCH = 32


def run(data: ReconInput, params: dict) -> ReconOutput:
    """RSS over coils of the inverse FFT; refuses undersampled k-space unless allowed."""
    check_input(data)
    sampled = float(data.mask.float().mean())
    if sampled < 1.0 and not params["allow_undersampled"]:
        raise ReconError(
            f"rss needs fully sampled k-space but only {sampled:.1%} of it was acquired; "
            "use zero_filled or set allow_undersampled=true"
        )
    device = data.device
    timer = Timer(device)
    s = data.kspace.shape[0]
    images = []
    for b0 in range(0, s, _SLICES_PER_BATCH):
        b1 = min(s, b0 + _SLICES_PER_BATCH)
        with timer("transfer"):
            k = data.kspace[b0:b1].to(device)
        with timer("ifft"):
            coil_images = ifftc(k)
        with timer("coil_combine"):
            images.append(rss(coil_images, coil_dim=1).cpu())
        if data.progress is not None:
            data.progress(b1, s)
    return ReconOutput(
        image=torch.cat(images), timings=timer.timings, info={"sampled_fraction": sampled}
    )


SPEC = register(
    MethodSpec(
        name="rss",
        title="Root-sum-of-squares (fully sampled)",
        family="baseline",
        description=(
            "Inverse FFT of every coil and root-sum-of-squares combination of fully sampled "
            "k-space: the reference image of the fastMRI dataset (reconstruction_rss)."
        ),
        run=run,
        params=(
            Param(
                "allow_undersampled",
                "bool",
                False,
                "Accept undersampled k-space (the result is then a zero-filled image)",
            ),
        ),
        references=(
            "Roemer PB et al., The NMR phased array, MRM 16:192-225, 1990",
            "Zbontar J et al., fastMRI: An Open Dataset and Benchmarks, arXiv:1811.08839",
        ),
    )
)
