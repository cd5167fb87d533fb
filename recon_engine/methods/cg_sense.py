"""Iterative CG-SENSE for any Cartesian sampling (uniform, random, variable density, 2D)."""

from __future__ import annotations

from recon_engine.espirit import SENSITIVITY_PARAMS
from recon_engine.registry import MethodSpec, Param, ReconInput, ReconOutput, register
from recon_engine.sense import cg_sense, run_batched


def run(data: ReconInput, params: dict) -> ReconOutput:
    """Conjugate gradients on the SENSE normal equations, batch by batch of slices."""
    iterations = []

    def solve(ksp, sens, mask):
        img, n_it = cg_sense(
            ksp, sens, mask, params["lambda"], params["iterations"], params["tolerance"]
        )
        iterations.append(n_it)
        return img

    out = run_batched(data, params, solve, "cg_sense")
    out.info.update({"iterations": max(iterations), "lambda": params["lambda"]})
    return out


SPEC = register(
    MethodSpec(
        name="cg_sense",
        title="CG-SENSE",
        family="parallel_imaging",
        description=(
            "Iterative SENSE: solves (A^H A + lambda I) x = A^H y by conjugate gradients, "
            "with A = sampling x FFT x coil sensitivities (ESPIRiT by default). Works for "
            "any Cartesian mask; early stopping (iterations) acts as regularisation."
        ),
        run=run,
        params=(
            *SENSITIVITY_PARAMS,
            Param(
                "lambda",
                "float",
                0.0,
                "Tikhonov weight (relative to ||A^H A|| = 1 for ESPIRiT maps)",
                min=0.0,
                max=10.0,
            ),
            Param("iterations", "int", 30, "Conjugate gradient iterations", min=1, max=500),
            Param(
                "tolerance",
                "float",
                0.0,
                "Stop early when every slice's residual is below this fraction of ||A^H y||",
                min=0.0,
                max=1.0,
            ),
        ),
        vendor_names={
            "Siemens": "mSENSE",
            "GE": "ASSET",
            "Philips": "SENSE",
            "Canon": "SPEEDER",
        },
        needs_acs=True,
        references=(
            "Pruessmann KP et al. Advances in sensitivity encoding with arbitrary k-space "
            "trajectories. Magn Reson Med 2001;46:638-651.",
        ),
    )
)
