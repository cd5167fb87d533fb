"""Super-resolution baseline: Bicubic interpolation."""

from __future__ import annotations

from recon_engine.registry import MethodSpec, register
from recon_engine.sr.baselines import METHODS
from recon_engine.sr.method import SR_PARAMS, make_run

SPEC = register(
    MethodSpec(
        name="sr_bicubic",
        title="Bicubic interpolation",
        family="super_resolution",
        description=(
            "Keys cubic convolution (a = -0.75) on the GPU when present, batched over slices;"
            " edges replicated. Input: metadata['image'] (S, H, W) or the zero-filled RSS "
            "image of the k-space."
        ),
        run=make_run(METHODS["bicubic"], "sr_bicubic"),
        params=SR_PARAMS,
        references=("Keys RG, IEEE Trans Acoust Speech Signal Process 1981;29:1153-1160",),
    )
)
