"""Simultaneous multi-slice: retrospective SMS simulation and SENSE (CG) slice separation."""

from __future__ import annotations

import time

import torch

from recon_engine.espirit import espirit_maps
from recon_engine.grappa import find_acs, normalise_mask, validate_kspace
from recon_engine.registry import MethodSpec, Param, ReconError, ReconInput, ReconOutput, register
from recon_engine.sms import (
    BLIPPED_CAIPI_REFERENCE,
    SMS_VENDOR_NAMES,
    acquired_lattice,
    collapse_sms,
    sense_sms,
    sms_params,
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(data: ReconInput, params: dict) -> ReconOutput:
    """Collapse slices into CAIPI-shifted multiband groups and unfold them by CG-SENSE."""
    validate_kspace(data.kspace)
    device = data.device
    kspace = data.kspace.to(device=device, dtype=torch.complex64)
    s, c, h, w = kspace.shape
    mb = params["multiband"]
    if s % mb:
        raise ReconError(
            f"{s} slices cannot be grouped by multiband={mb}: the slice count must be "
            "divisible by the multiband factor"
        )
    m = normalise_mask(data.mask, tuple(kspace.shape))
    if m.shape[0] > 1 and not bool((m == m[:1]).all()):
        raise ReconError("SMS needs the same sampling mask for every slice")
    m2d = m[0].expand(h, w).numpy()
    if not (m2d == m2d[:1]).all():
        raise ReconError("SMS-SENSE needs a 1D (phase-encode line) mask, got a 2D mask")
    _, cols = find_acs(torch.as_tensor(m2d), data.acs_mask)
    n_ref = min(params["acs_lines"], cols.stop - cols.start)
    r0 = cols.start + (cols.stop - cols.start - n_ref) // 2
    r, offset = acquired_lattice(m2d[0], (cols.start, cols.stop))
    fov_shift = params["fov_shift"] or mb * r
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    if data.sensitivities is not None:
        sens = data.sensitivities.to(device=device, dtype=torch.complex64)
        if sens.shape[0] == 1:
            sens = sens.expand(s, -1, -1, -1)
        if sens.shape != kspace.shape:
            raise ReconError(
                f"sensitivities {tuple(sens.shape)} do not match k-space {tuple(kspace.shape)}"
            )
        source = "input"
    else:
        if n_ref < 8:
            raise ReconError(f"only {n_ref} reference lines: too few to estimate coil maps")
        ref_mask = torch.zeros((1, 1, 1, w), dtype=torch.float32, device=device)
        ref_mask[..., r0 : r0 + n_ref] = 1
        result = espirit_maps(kspace * ref_mask, ref_mask, ref_mask, calib_size=n_ref)
        sens = result.maps.to(device)
        source = "espirit(single-band reference)"
    _sync(device)
    timings["sensitivities"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    lattice = torch.zeros(w, dtype=torch.float32, device=device)
    lattice[offset::r] = 1
    collapsed = collapse_sms(kspace * lattice, mb, fov_shift)
    _sync(device)
    timings["simulate_sms"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    image, cg = sense_sms(
        collapsed,
        lattice,
        sens,
        mb,
        fov_shift,
        iterations=params["iterations"],
        lamda=params["lambda"],
    )
    _sync(device)
    timings["sense_separation"] = time.perf_counter() - t0
    if data.progress is not None:
        data.progress(s, s)
    info = {
        "multiband": mb,
        "fov_shift": fov_shift,
        "inplane_R": r,
        "reference_lines": int(n_ref),
        "sensitivities": source,
        "cg": cg,
    }
    return ReconOutput(image=image.cpu(), timings=timings, info=info)


SPEC = register(
    MethodSpec(
        name="sms_sense",
        title="SMS (SENSE)",
        family="simultaneous_multislice",
        description=(
            "Retrospective simultaneous multi-slice: slices are summed into multiband groups "
            "with blipped-CAIPI FOV shifts and separated (and in-plane unaliased) jointly by "
            "conjugate-gradient SENSE with coil maps from the input or from ESPIRiT on the "
            "single-band reference lines."
        ),
        run=run,
        params=(
            *sms_params(),
            Param(
                "acs_lines",
                "int",
                32,
                "Single-band reference lines used to estimate coil maps",
                min=8,
                max=256,
            ),
            Param("iterations", "int", 30, "Conjugate-gradient iterations", min=1, max=500),
            Param(
                "lambda",
                "float",
                0.001,
                "Tikhonov regularisation relative to the largest coil-summed |S|^2",
                min=0.0,
                max=1.0,
            ),
        ),
        vendor_names=SMS_VENDOR_NAMES,
        needs_acs=True,
        references=(
            BLIPPED_CAIPI_REFERENCE,
            "Pruessmann KP et al. Advances in sensitivity encoding with arbitrary k-space "
            "trajectories. Magn Reson Med 2001;46:638-651.",
            "Uecker M et al. ESPIRiT - an eigenvalue approach to autocalibrating parallel "
            "MRI. Magn Reson Med 2014;71:990-1001.",
        ),
    )
)
