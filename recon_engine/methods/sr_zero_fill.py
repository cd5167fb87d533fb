"""Super-resolution baseline: k-space zero padding (sinc interpolation)."""

from __future__ import annotations

from recon_engine.registry import MethodSpec, register
from recon_engine.sr.baselines import METHODS
from recon_engine.sr.method import SR_PARAMS, make_run

SPEC = register(
    MethodSpec(
        name="sr_zero_fill",
        title="K-space zero padding (sinc interpolation)",
        family="super_resolution",
        description=(
            "The image spectrum is zero-padded factor-fold and transformed back: exact for "
            "band-limited images, with Gibbs ringing at edges. The reference every learned "
            "super-resolution must beat. Input: metadata['image'] (S, H, W) or the zero-"
            "filled RSS image of the k-space."
        ),
        run=make_run(METHODS["zero_fill"], "sr_zero_fill"),
        params=SR_PARAMS,
        references=(
            "Bernstein MA et al., Magn Reson Med 2001;46:955-965 (zero-filled interpolation)",
        ),
    )
)
