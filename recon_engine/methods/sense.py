"""Cartesian SENSE (uniform undersampling along phase encode) with analytic g-factor map."""

from __future__ import annotations

import torch

from recon_engine.espirit import SENSITIVITY_PARAMS
from recon_engine.gfactor import sense_gfactor
from recon_engine.registry import MethodSpec, Param, ReconInput, ReconOutput, register
from recon_engine.sense import run_batched, sense_unfold, uniform_pattern


def run(data: ReconInput, params: dict) -> ReconOutput:
    """Unfold every aliased pixel group by least squares, batch by batch of slices."""
    lamda = params["lambda"]
    w = data.kspace.shape[-1]
    pattern = uniform_pattern(data.mask, w)
    gmaps = []

    def solve(ksp, sens, mask):
        if params["g_factor"]:
            gmaps.append(sense_gfactor(sens, pattern.acceleration, lamda, pattern.offset).cpu())
        return sense_unfold(ksp, sens, mask, pattern.acceleration, lamda)

    out = run_batched(data, params, solve, "sense_unfold")
    if gmaps:
        out.maps["g_factor"] = torch.cat(gmaps)
    unfolding = (
        "pixelwise R x R (R divides the phase-encode lines)"
        if w % pattern.acceleration == 0
        else "exact aliasing operator per readout row (R does not divide the phase-encode lines)"
    )
    out.info.update(
        {
            "acceleration": pattern.acceleration,
            "offset": pattern.offset,
            "lambda": lamda,
            "unfolding": unfolding,
        }
    )
    return out


SPEC = register(
    MethodSpec(
        name="sense",
        title="SENSE",
        family="parallel_imaging",
        description=(
            "Sensitivity encoding: uniformly undersampled (every R-th phase-encode line) "
            "coil images are aliased R times; each aliased pixel is unfolded by least "
            "squares with the coil sensitivities (ESPIRiT or ACS estimates, or supplied "
            "maps). When R does not divide the number of lines (R=3 on 256) each readout "
            "row is solved with the exact aliasing operator of the sampled lines instead "
            "(same model, slower). Extra ACS lines are used for calibration only. Returns "
            "the analytic g-factor map. Needs R <= number of coils."
        ),
        run=run,
        params=(
            *SENSITIVITY_PARAMS,
            Param(
                "lambda",
                "float",
                0.0,
                "Tikhonov weight, relative to the mean diagonal of E^H E / R (0 = plain SENSE)",
                min=0.0,
                max=10.0,
            ),
            Param("g_factor", "bool", True, "Also return the analytic g-factor map"),
        ),
        vendor_names={
            "Siemens": "mSENSE",
            "GE": "ASSET",
            "Philips": "SENSE",
            "Canon": "SPEEDER",
        },
        needs_acs=True,
        references=(
            "Pruessmann KP et al. SENSE: sensitivity encoding for fast MRI. "
            "Magn Reson Med 1999;42:952-962.",
            "Uecker M et al. ESPIRiT - an eigenvalue approach to autocalibrating parallel "
            "MRI: where SENSE meets GRAPPA. Magn Reson Med 2014;71:990-1001.",
        ),
    )
)
