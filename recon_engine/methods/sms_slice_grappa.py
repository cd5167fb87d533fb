"""Simultaneous multi-slice: retrospective SMS simulation and slice-GRAPPA separation."""

from __future__ import annotations

import time

import numpy as np
import torch

from recon_engine.grappa import (
    coil_combine,
    find_acs,
    grappa_kspace,
    normalise_mask,
    validate_kspace,
)
from recon_engine.registry import MethodSpec, Param, ReconError, ReconInput, ReconOutput, register
from recon_engine.sms import (
    BLIPPED_CAIPI_REFERENCE,
    SMS_VENDOR_NAMES,
    acquired_lattice,
    calibrate_slice_grappa,
    collapse_sms,
    separate_slices,
    slice_leakage,
    sms_params,
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(data: ReconInput, params: dict) -> ReconOutput:
    """Collapse the slices into SMS groups, separate them by slice-GRAPPA, then in-plane GRAPPA.

    The single-band reference (calibration) is the central ``acs_lines`` phase-encode lines
    of each separate slice, as a single-band reference scan would provide. In-plane
    undersampling must be a uniform lattice; its ACS block is used only as reference.
    """
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
    combine = params["combine"]
    if combine == "sensitivities" and data.sensitivities is None:
        raise ReconError("combine='sensitivities' needs coil sensitivities in the input")
    if combine == "auto":
        combine = "rss" if data.sensitivities is None else "sensitivities"
    m = normalise_mask(data.mask, tuple(kspace.shape))
    if m.shape[0] > 1 and not bool((m == m[:1]).all()):
        raise ReconError("SMS needs the same sampling mask for every slice")
    m2d = m[0].expand(h, w).numpy()
    if not (m2d == m2d[:1]).all():
        raise ReconError("SMS slice-GRAPPA needs a 1D (phase-encode line) mask, got a 2D mask")
    line = m2d[0]
    _, cols = find_acs(torch.as_tensor(m2d), data.acs_mask)
    n_ref = min(params["acs_lines"], cols.stop - cols.start)
    r0 = cols.start + (cols.stop - cols.start - n_ref) // 2
    ref_lines = np.arange(r0, r0 + n_ref)
    r, offset = acquired_lattice(line, (cols.start, cols.stop))
    fov_shift = params["fov_shift"] or mb * r
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    lattice = torch.zeros(w, dtype=torch.float32, device=device)
    lattice[offset::r] = 1
    collapsed = collapse_sms(kspace * lattice, mb, fov_shift)
    reference = kspace[..., torch.as_tensor(ref_lines, device=device)]
    _sync(device)
    timings["simulate_sms"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    kernels = calibrate_slice_grappa(
        reference,
        ref_lines,
        w,
        mb,
        fov_shift,
        kernel=(params["kernel_rx"], params["kernel_ry"]),
        lamda=params["lambda"],
        split=params["split"],
        stride=r,
    )
    _sync(device)
    timings["calibrate_slice_grappa"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    separated = separate_slices(collapsed, kernels, offset)
    _sync(device)
    timings["separate_slices"] = time.perf_counter() - t0
    if data.progress is not None:
        data.progress(s // 2, s)

    info = {
        "multiband": mb,
        "fov_shift": fov_shift,
        "inplane_R": r,
        "reference_lines": int(n_ref),
        "slice_grappa": kernels.info,
        "method": "split-slice-GRAPPA" if params["split"] else "slice-GRAPPA",
        "combine": combine,
    }
    if r > 1:
        t0 = time.perf_counter()
        lat_mask = lattice.cpu().reshape(1, 1, 1, w)
        res = grappa_kspace(
            separated,
            lat_mask,
            calib=reference,
            kernel_ry=params["inplane_kernel_ry"],
            kernel_rx=params["kernel_rx"],
            lamda=params["lambda"],
            device=device,
        )
        separated = res.kspace
        _sync(device)
        timings["inplane_grappa"] = time.perf_counter() - t0
        info["inplane_grappa"] = res.info

    t0 = time.perf_counter()
    sens = None
    if combine == "sensitivities":
        sens = data.sensitivities.to(device).expand(s, -1, -1, -1)
    image = coil_combine(separated, sens)
    _sync(device)
    timings["coil_combine"] = time.perf_counter() - t0

    if params["report_leakage"]:
        t0 = time.perf_counter()
        leak = slice_leakage(kspace * lattice, kernels)
        eye = torch.eye(mb, dtype=torch.bool)
        info["leakage_mean"] = float(leak[:, ~eye].mean()) if mb > 1 else 0.0
        info["retained_mean"] = float(leak[:, eye].mean())
        timings["leakage"] = time.perf_counter() - t0
    if data.progress is not None:
        data.progress(s, s)
    return ReconOutput(image=image.cpu(), timings=timings, info=info)


SPEC = register(
    MethodSpec(
        name="sms_slice_grappa",
        title="SMS (slice-GRAPPA)",
        family="simultaneous_multislice",
        description=(
            "Retrospective simultaneous multi-slice: slices are summed into multiband groups "
            "with blipped-CAIPI FOV shifts, then separated by (split-)slice-GRAPPA kernels "
            "calibrated on single-band reference lines; in-plane GRAPPA follows when the "
            "phase-encode direction is also undersampled (uniform lattice)."
        ),
        run=run,
        params=(
            *sms_params(),
            Param("kernel_rx", "int", 5, "Kernel size along readout, in samples", min=1, max=15),
            Param(
                "kernel_ry",
                "int",
                5,
                "Slice-GRAPPA kernel size along phase encode, in acquired lines",
                min=1,
                max=11,
            ),
            Param(
                "inplane_kernel_ry",
                "int",
                4,
                "In-plane GRAPPA kernel along phase encode, in acquired lines",
                min=1,
                max=8,
            ),
            Param(
                "acs_lines",
                "int",
                32,
                "Single-band reference lines used for calibration",
                min=8,
                max=256,
            ),
            Param(
                "lambda",
                "float",
                0.01,
                "Tikhonov regularisation, relative to the "
                "calibration matrix scale (lambda * ||A^H A||_F / n)",
                min=0.0,
                max=1.0,
            ),
            Param(
                "split",
                "bool",
                True,
                "Split-slice GRAPPA (lower inter-slice leakage) instead of plain slice-GRAPPA",
            ),
            Param(
                "report_leakage",
                "bool",
                False,
                "Also measure inter-slice leakage of the kernels on this data (extra separations)",
            ),
            Param(
                "combine",
                "choice",
                "auto",
                "Coil combination: sensitivity-weighted when the input carries coil "
                "sensitivities (auto), root-sum-of-squares, or sensitivity-weighted",
                choices=("auto", "rss", "sensitivities"),
            ),
        ),
        vendor_names=SMS_VENDOR_NAMES,
        needs_acs=True,
        references=(
            BLIPPED_CAIPI_REFERENCE,
            "Cauley SF et al. Interslice leakage artifact reduction technique for "
            "simultaneous multislice acquisitions. Magn Reson Med 2014;72:93-102.",
        ),
    )
)
