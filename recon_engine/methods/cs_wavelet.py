"""Compressed sensing: L1-wavelet regularised SENSE solved with FISTA."""

from __future__ import annotations

from recon_engine.autolambda import AUTO_DESCRIPTION, lambda_params, weight_for_batch
from recon_engine.cs import data_scale, l1_wavelet_sense
from recon_engine.espirit import SENSITIVITY_PARAMS
from recon_engine.operators import SenseOperator
from recon_engine.registry import MethodSpec, Param, ReconInput, ReconOutput, register
from recon_engine.sense import run_batched

# weights the automatic choice tries (relative to the 99th percentile of |A^H y|)
LAMBDA_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03)

# Default lambda 0.01 (x the 99th percentile of |A^H y|) and 30 iterations: best NRMSE of
# the sweep in benchmarks/bench_classical.py (8 coils, 256x256 brain, SNR 30, R=4, 1D
# random and 2D Poisson masks), at the iteration count the peers are compared at.


def run(data: ReconInput, params: dict) -> ReconOutput:
    """FISTA on 1/2||Ax - y||^2 + lambda ||Psi x||_1, batch by batch of slices."""

    chosen = []

    def solve_at(ksp, sens, mask, lam):
        scale = data_scale(SenseOperator(sens, mask).adjoint(ksp))
        return l1_wavelet_sense(
            ksp,
            sens,
            mask,
            lam * scale,
            params["iterations"],
            wavelet=params["wavelet"],
            levels=params["levels"],
            cycle_spinning=params["cycle_spinning"],
        )

    def solve(ksp, sens, mask):
        lam = weight_for_batch(params, solve_at, ksp, sens, mask, LAMBDA_GRID, chosen)
        return solve_at(ksp, sens, mask, lam)

    out = run_batched(data, params, solve, "l1_wavelet")
    lam = [c["lambda"] for c in chosen] if chosen else params["lambda"]
    out.info.update({"lambda": lam, "iterations": params["iterations"]})
    if chosen:
        out.info["lambda_choice"] = chosen
    return out


SPEC = register(
    MethodSpec(
        name="cs_wavelet",
        title="Compressed sensing (L1-wavelet)",
        family="compressed_sensing",
        description=(
            "Compressed sensing SENSE: minimises 1/2||A x - y||^2 + lambda ||Psi x||_1 with "
            "an orthonormal wavelet Psi (Daubechies-4 by default) by FISTA, with random "
            "wavelet shifts per iteration. lambda is relative to the 99th percentile of the "
            "zero-filled SENSE image, so it does not depend on the k-space scaling."
            + AUTO_DESCRIPTION
        ),
        run=run,
        params=(
            *SENSITIVITY_PARAMS,
            Param(
                "lambda",
                "float",
                0.01,
                "L1 weight when fixed, relative to the image intensity (99th pct of |A^H y|)",
                min=0.0,
                max=1.0,
            ),
            *lambda_params(LAMBDA_GRID),
            Param("iterations", "int", 30, "FISTA iterations", min=1, max=1000),
            Param(
                "wavelet",
                "choice",
                "db4",
                "Orthogonal wavelet (PyWavelets name)",
                choices=("db4", "haar", "db2", "db8", "sym4", "sym8", "coif2"),
            ),
            Param(
                "levels", "int", 4, "Decomposition levels (reduced for small images)", min=1, max=8
            ),
            Param("cycle_spinning", "bool", True, "Random wavelet shift every iteration"),
        ),
        vendor_names={
            "Siemens": "Compressed Sensing",
            "GE": "HyperSense",
            "Philips": "Compressed SENSE",
            "Canon": "Compressed SPEEDER",
        },
        needs_acs=True,
        references=(
            "Lustig M, Donoho D, Pauly JM. Sparse MRI: the application of compressed "
            "sensing for rapid MR imaging. Magn Reson Med 2007;58:1182-1195.",
            "Beck A, Teboulle M. A fast iterative shrinkage-thresholding algorithm for "
            "linear inverse problems. SIAM J Imaging Sci 2009;2:183-202.",
        ),
    )
)
