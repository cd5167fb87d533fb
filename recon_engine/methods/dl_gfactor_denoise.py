"""SENSE followed by a CNN denoiser driven by the g-factor noise map (or a uniform level)."""

from __future__ import annotations

import torch

from recon_engine.dl.denoise import NoiseMapDenoiser, estimate_kspace_noise, noise_sd_map
from recon_engine.dl.mc_dropout import (
    MC_PARAMS,
    calibrated_uncertainty,
    mc_dropout_std,
    shipped_calibration_note,
)
from recon_engine.dl.model_loader import load_network
from recon_engine.espirit import SENSITIVITY_PARAMS
from recon_engine.methods.zero_filled import check_input
from recon_engine.metrics import Timer
from recon_engine.registry import (
    MethodSpec,
    Param,
    ReconError,
    ReconInput,
    ReconOutput,
    get_method,
    register,
)

_SENSE_KEYS = tuple(p.name for p in SENSITIVITY_PARAMS) + ("lambda",)


def noise_map_for(
    g_factor: torch.Tensor, sigma: float, acceleration: int, mode: str
) -> torch.Tensor:
    """Per-voxel noise SD ``(S, H, W)`` of a SENSE image: ``sigma g sqrt(R)`` (``"g_factor"``)
    or, for comparison, its mean over the voxels with coil signal (``"uniform"``)."""
    sd = noise_sd_map(g_factor, sigma, acceleration)
    if mode == "g_factor":
        return sd
    covered = g_factor > 0
    level = sd[covered].mean() if bool(covered.any()) else sd.new_tensor(0.0)
    return torch.where(covered, level, torch.zeros_like(sd))


def run(data: ReconInput, params: dict) -> ReconOutput:
    """SENSE (registry method ``sense``) with its analytic g-factor, then the denoiser."""
    check_input(data)
    timer = Timer(data.device)
    sense = get_method("sense")
    sense_params = sense.validate({**{k: params[k] for k in _SENSE_KEYS}, "g_factor": True})
    with timer("sense"):
        unfolded = sense.run(data, sense_params)
    r = int(unfolded.info["acceleration"])
    sigma, source = params["noise_std"], "parameter"
    if sigma == 0:
        sigma, source = estimate_kspace_noise(data.kspace, data.mask), "estimated (k-space edge)"
    if not sigma > 0:
        raise ReconError("cannot estimate the k-space noise level (no sampled edge samples)")
    with timer("load_model"):
        model, card = load_network(
            params["model"], NoiseMapDenoiser, data.device, "NoiseMapDenoiser"
        )
    g = unfolded.maps["g_factor"]
    noise_sd = noise_map_for(g, sigma, r, params["noise_map"])
    image = unfolded.image.to(torch.complex64)
    s = image.shape[0]
    images, spreads = [], []
    batch = params["batch_size"]
    with torch.inference_mode():
        for b0 in range(0, s, batch):
            b1 = min(s, b0 + batch)
            xb = image[b0:b1].to(data.device)
            sb = noise_sd[b0:b1].to(data.device)
            with timer("denoise"):
                images.append(model(xb, sb).abs().cpu())
            if params["mc_samples"]:
                with timer("mc_dropout"):
                    spreads.append(
                        mc_dropout_std(
                            model,
                            lambda xb=xb, sb=sb: model(xb, sb),
                            params["mc_samples"],
                            params["mc_dropout"],
                            seed=b0,
                        ).cpu()
                    )
    maps = {"g_factor": g, "noise_sd": noise_sd}
    uncertainty, uncertainty_info = calibrated_uncertainty(spreads, card, params)
    if uncertainty:
        maps["uncertainty"] = torch.cat(uncertainty["uncertainty"])
    timings = {**unfolded.timings, **timer.timings}
    info = {
        **unfolded.info,
        "noise_std": sigma,
        "noise_std_source": source,
        "noise_map": params["noise_map"],
        "model": params["model"],
        "sha256": card["sha256"],
        "card": card,
        **uncertainty_info,
    }
    return ReconOutput(image=torch.cat(images), maps=maps, timings=timings, info=info)


SPEC = register(
    MethodSpec(
        name="sense_dl_denoise",
        title="SENSE + g-factor-aware CNN denoiser",
        family="deep_learning",
        description=(
            "SENSE unfolding, then a CNN denoiser told the per-voxel noise level "
            "sigma x g x sqrt(R) from the analytic g-factor map, so it smooths more where "
            "parallel imaging amplified the noise (a denoiser assuming uniform noise "
            "under-smooths there). noise_map='uniform' runs the same network at the mean "
            "level for comparison. The k-space noise SD is given or estimated from the "
            "k-space edge. Returns g_factor and noise_sd maps (and an MC-dropout SD map scaled by "
            "the calibration in the model card)." + shipped_calibration_note("gfactor_denoiser")
        ),
        run=run,
        params=(
            *SENSITIVITY_PARAMS,
            Param(
                "lambda",
                "float",
                0.0,
                "SENSE Tikhonov weight, relative to the mean diagonal of E^H E / R",
                min=0.0,
                max=10.0,
            ),
            Param(
                "noise_map",
                "choice",
                "g_factor",
                "Noise level given to the denoiser: per-voxel from the g-factor, or uniform",
                choices=("g_factor", "uniform"),
            ),
            Param(
                "noise_std",
                "float",
                0.0,
                "k-space noise SD per complex sample (0 = estimate from the k-space edge)",
                min=0.0,
            ),
            Param("model", "str", "gfactor_denoiser", "Model card name (<name>.json + <name>.pt)"),
            Param("batch_size", "int", 8, "Slices per network call", min=1, max=256),
            *MC_PARAMS,
        ),
        needs_acs=True,
        references=(
            "Pruessmann KP et al., SENSE, MRM 1999;42:952-962",
            "Zhang K, Zuo W, Zhang L, FFDNet, IEEE TIP 2018;27:4608-4622",
        ),
    )
)
