"""GRAPPA parallel imaging (k-space interpolation from autocalibration lines)."""

from __future__ import annotations

import time

import torch

from recon_engine.grappa import coil_combine, grappa_kspace, validate_kspace
from recon_engine.registry import MethodSpec, Param, ReconError, ReconInput, ReconOutput, register

_SLICES_PER_BATCH = 16


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(data: ReconInput, params: dict) -> ReconOutput:
    """Fill missing k-space by GRAPPA, batch by batch of slices, then combine coils."""
    validate_kspace(data.kspace)
    combine = params["combine"]
    if combine == "sensitivities" and data.sensitivities is None:
        raise ReconError("combine='sensitivities' needs coil sensitivities in the input")
    if combine == "auto":
        combine = "rss" if data.sensitivities is None else "sensitivities"
    device = data.device
    kspace = data.kspace
    s = kspace.shape[0]
    mask, acs = data.mask, data.acs_mask
    per_slice_mask = mask.ndim == 4 and mask.shape[0] == s and s > 1
    sens_all = data.sensitivities if combine == "sensitivities" else None
    if sens_all is not None and sens_all.shape[0] == 1:
        sens_all = sens_all.expand(s, -1, -1, -1)
    images, info = [], {}
    t_grappa = t_combine = 0.0
    for b0 in range(0, s, _SLICES_PER_BATCH):
        b1 = min(s, b0 + _SLICES_PER_BATCH)
        t0 = time.perf_counter()
        res = grappa_kspace(
            kspace[b0:b1],
            mask[b0:b1] if per_slice_mask else mask,
            acs_mask=(acs[b0:b1] if acs is not None and acs.shape[0] == s and s > 1 else acs),
            kernel_ry=params["kernel_ry"],
            kernel_rx=params["kernel_rx"],
            max_reach=params["max_reach"] or None,
            window=(params["window_h"], params["window_w"]),
            lamda=params["lambda"],
            device=device,
        )
        _sync(device)
        t1 = time.perf_counter()
        sens = sens_all[b0:b1].to(device) if sens_all is not None else None
        images.append(coil_combine(res.kspace, sens))
        _sync(device)
        t_grappa += t1 - t0
        t_combine += time.perf_counter() - t1
        info = res.info
        if data.progress is not None:
            data.progress(b1, s)
    return ReconOutput(
        image=torch.cat(images).cpu(),
        timings={"grappa": t_grappa, "coil_combine": t_combine},
        info={**info, "combine": combine},
    )


SPEC = register(
    MethodSpec(
        name="grappa",
        title="GRAPPA",
        family="parallel_imaging",
        description=(
            "Generalized autocalibrating partially parallel acquisitions: missing k-space "
            "lines are synthesised from acquired neighbours of all coils with kernels "
            "calibrated on the fully sampled centre (ACS). One kernel per sampling geometry, "
            "so uniform, random and equispaced 1D masks and 2D (CAIPIRINHA) masks all work; "
            "acquired samples are kept unchanged."
        ),
        run=run,
        params=(
            Param(
                "kernel_ry",
                "int",
                4,
                "Kernel size along phase encode, in acquired lines (1D masks)",
                min=1,
                max=8,
            ),
            Param("kernel_rx", "int", 5, "Kernel size along readout, in samples", min=1, max=15),
            Param(
                "max_reach",
                "int",
                0,
                "1D masks: use acquired lines at most this far from a missing line "
                "(0 = the classic kernel for uniform masks, 2 lines otherwise)",
                min=0,
                max=64,
            ),
            Param(
                "window_h",
                "int",
                5,
                "2D masks only: kernel window along readout, in grid points",
                min=1,
                max=15,
            ),
            Param(
                "window_w",
                "int",
                5,
                "2D masks only: kernel window along phase encode, in grid points",
                min=1,
                max=15,
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
                "combine",
                "choice",
                "auto",
                "Coil combination: sensitivity-weighted when the input carries coil "
                "sensitivities (auto), root-sum-of-squares, or sensitivity-weighted",
                choices=("auto", "rss", "sensitivities"),
            ),
        ),
        vendor_names={"Siemens": "GRAPPA", "GE": "ARC"},
        needs_acs=True,
        references=(
            "Griswold MA et al. Generalized autocalibrating partially parallel acquisitions "
            "(GRAPPA). Magn Reson Med 2002;47:1202-1210.",
            "Lustig M, Pauly JM. SPIRiT: iterative self-consistent parallel imaging "
            "reconstruction from arbitrary k-space. Magn Reson Med 2010;64:457-471 "
            "(kernel look-up per sampling geometry).",
        ),
    )
)
