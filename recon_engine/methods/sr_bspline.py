"""Super-resolution baseline: Cubic B-spline interpolation."""

from __future__ import annotations

from recon_engine.registry import MethodSpec, register
from recon_engine.sr.baselines import METHODS
from recon_engine.sr.method import SR_PARAMS, make_run

SPEC = register(
    MethodSpec(
        name="sr_bspline",
        title="Cubic B-spline interpolation",
        family="super_resolution",
        description=(
            "Prefiltered cubic B-spline interpolation (scipy.ndimage.zoom, order 3, mirror "
            "boundary); reproduces cubic polynomials exactly. Input: metadata['image'] (S, H,"
            " W) or the zero-filled RSS image of the k-space."
        ),
        run=make_run(METHODS["bspline"], "sr_bspline"),
        params=SR_PARAMS,
        references=("Unser M, IEEE Signal Process Mag 1999;16(6):22-38",),
    )
)
