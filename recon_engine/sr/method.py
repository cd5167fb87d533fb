"""Shared ``run`` for super-resolution methods in the registry.

Input convention: the low-resolution image is ``data.metadata["image"]`` (``(S, H, W)``,
real or complex); when absent it is the zero-filled root-sum-of-squares image of
``data.kspace``. The output image is enlarged (``(S, fH, fW)`` in-plane, ``(fS, H, W)``
through-plane), the one family whose output is not at the k-space matrix size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from recon_engine.fft import ifftc, rss
from recon_engine.metrics import Timer
from recon_engine.registry import Param, ReconError, ReconInput, ReconOutput

DIRECTIONS = {"in_plane": (1, 2), "through_plane": (0,)}

SR_PARAMS = (
    Param("factor", "int", 2, "Upsampling factor per enlarged axis", min=2, max=4),
    Param(
        "direction",
        "choice",
        "in_plane",
        "Enlarge rows and columns (in_plane) or the slice axis (through_plane)",
        choices=tuple(DIRECTIONS),
    ),
)


def input_image(data: ReconInput) -> torch.Tensor:
    """The ``(S, H, W)`` image to enlarge (see module docstring)."""
    image = data.metadata.get("image")
    if image is None:
        k = data.kspace
        if k is None or k.ndim != 4 or not k.is_complex():
            raise ReconError(
                "super-resolution needs metadata['image'] (S, H, W) or complex (S, C, H, W) k-space"
            )
        return rss(ifftc(k.to(data.device) * data.mask.to(data.device)), coil_dim=1)
    if not isinstance(image, torch.Tensor):
        image = torch.as_tensor(image)
    return image.to(data.device)


def make_run(upsample: Callable[..., torch.Tensor], name: str):
    """A registry ``run`` applying ``upsample(image, factor, dims)``."""

    def run(data: ReconInput, params: dict) -> ReconOutput:
        timer = Timer(data.device)
        with timer("input"):
            image = input_image(data)
        dims = DIRECTIONS[params["direction"]]
        with timer("upsample"):
            out = upsample(image, params["factor"], dims)
        if data.progress is not None:
            data.progress(1, 1)
        return ReconOutput(
            image=out.cpu(),
            timings=timer.timings,
            info={
                "method": name,
                "factor": params["factor"],
                "direction": params["direction"],
                "input_shape": list(image.shape),
            },
        )

    return run
