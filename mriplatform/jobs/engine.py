"""The bridge between a job and the reconstruction engine.

Turns a protocol into engine calls (retrospective sampling, method, crop, metrics) and
the engine's result into files. The numerical work is the engine's. Stored raw series
are always in the fastMRI layout (ISMRMRD uploads are converted on ingest).
"""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pydicom
import torch

import recon_engine
from recon_engine.fft import ifftc, rss
from recon_engine.io.dicom import write_dicom_series
from recon_engine.io.fastmri import read_fastmri, write_reconstruction
from recon_engine.io.ismrmrd_header import (
    acquired_window,
    image_geometry,
    parse_ismrmrd_header,
)
from recon_engine.metrics import evaluate
from recon_engine.pipeline import center_crop, crop_to_reference, reconstruct_kspace
from recon_engine.registry import ReconError
from recon_engine.sampling import infer_mask, make_mask


@dataclass
class EngineResult:
    image: np.ndarray  # (S, H, W) float32 magnitude, cropped like the reference
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    sampling: dict = field(default_factory=dict)
    device: dict = field(default_factory=dict)
    pixel_spacing: tuple[float, float] = (1.0, 1.0)
    slice_thickness: float = 1.0


def reconstruct_series(path: Path, protocol, progress=None) -> EngineResult:
    """Apply ``protocol`` (sampling + method) to the raw k-space file at ``path``."""
    raw = read_fastmri(path)
    kspace = raw.kspace
    header = None
    if raw.header:
        try:
            header = parse_ismrmrd_header(raw.header)
        except ReconError:
            header = None
    # fastMRI pads k-space with zero columns outside the acquired window: they are not
    # "missing" lines, so they don't count against full sampling.
    left, right = acquired_window(header, kspace.shape[-1])
    acquired = raw.mask if raw.mask is not None else infer_mask(kspace)
    window = acquired[..., left:right]
    acquired_r = float(window.numel() / max(float(window.sum()), 1.0))
    sampling: dict = {
        "pattern": protocol.mask_pattern,
        "acquired_acceleration": acquired_r,
        "acquired_columns": [left, right],
    }
    if protocol.mask_pattern == "as_acquired":
        mask = acquired
    else:
        if acquired_r > 1.01:
            raise ReconError(
                "the protocol undersamples retrospectively, but this raw series is already "
                f"undersampled (R={acquired_r:.2f}); choose the 'as acquired' sampling"
            )
        height, width = kspace.shape[-2:]
        made = make_mask(
            protocol.mask_pattern,
            (height, width),
            protocol.acceleration,
            seed=protocol.mask_seed,
            center_fraction=protocol.center_fraction,
        )
        mask = made.mask.clone()
        mask[..., :left] = 0  # as fastMRI: padding columns are never "sampled"
        mask[..., right:] = 0
        kspace = kspace * mask
        sampling.update(
            acceleration=protocol.acceleration,
            effective_acceleration=made.effective_acceleration,
            seed=protocol.mask_seed,
            center_fraction=protocol.center_fraction,
        )
    metadata = {"sms_factor": protocol.sms_factor}
    if protocol.method.startswith("ext_"):  # a site network: fetch it into this worker
        from mriplatform.protocols.external_models import sync_external_models

        sync_external_models()
    result = reconstruct_kspace(
        kspace,
        mask,
        protocol.method,
        protocol.params,
        progress=progress or False,
        metadata=metadata,
    )
    rss_shape = raw.reconstruction_rss.shape if raw.reconstruction_rss is not None else None
    image = crop_to_reference(result.volume, rss_shape)
    maps = {
        name: center_crop(value, image.shape[-2:])
        for name, value in result.maps.items()
        if value.ndim == 3
    }

    reference = raw.reconstruction_rss
    if reference is None and acquired_r <= 1.01:
        reference = rss(ifftc(raw.kspace), coil_dim=1).numpy()
    metrics: dict = {}
    if reference is not None:
        ref = crop_to_reference(np.asarray(reference, dtype=np.float32), image.shape)
        # JSON has no infinity: an exact match (PSNR = inf) is stored as null.
        metrics = {
            k: (float(v) if np.isfinite(v) else None) for k, v in evaluate(ref, image).items()
        }
        metrics["reference"] = "fully sampled root-sum-of-squares"

    spacing, thickness = (1.0, 1.0), 1.0
    if header is not None:
        spacing, thickness = image_geometry(header, result.volume.shape[-2:])
    return EngineResult(
        image=image.astype(np.float32),
        maps=maps,
        timings=result.timings,
        info=result.info,
        metrics=metrics,
        sampling=sampling,
        device=result.device,
        pixel_spacing=spacing,
        slice_thickness=thickness,
    )


def write_volume(path: Path, result: EngineResult) -> None:
    """fastMRI reconstruction layout (``reconstruction`` (S, H, W) float32) plus the maps as
    ``maps/<name>`` with their units, exactly as the CLI writes them."""
    write_reconstruction(
        path, result.image, attrs={"sampling": json.dumps(result.sampling)}, maps=result.maps
    )


def dicom_slices(result: EngineResult, case, description: str) -> tuple[str, list]:
    """The volume as a derived MR DICOM series with new UIDs.

    Returns (SeriesInstanceUID, [(SOPInstanceUID, bytes), ...]) in slice order.
    """
    with tempfile.TemporaryDirectory(prefix="dicom-out-") as tmp:
        paths = write_dicom_series(
            tmp,
            result.image,
            description=description,
            pixel_spacing=result.pixel_spacing,
            slice_thickness=result.slice_thickness,
            patient_id=case.subject_code,
            patient_name=case.subject_code,
            derivation=f"ReconTrial {recon_engine.__version__}",
        )
        slices = []
        series_uid = ""
        for p in paths:
            data = Path(p).read_bytes()
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            series_uid = str(ds.SeriesInstanceUID)
            slices.append((str(ds.SOPInstanceUID), data))
    return series_uid, slices


@lru_cache(maxsize=1)
def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def provenance(result: EngineResult, job, worker: str) -> dict:
    """Everything needed to say how an image was made."""
    protocol = job.protocol
    return {
        "engine_version": recon_engine.__version__,
        "git_commit": _git_commit(),
        "torch": torch.__version__,
        "method": protocol.method,
        "params": protocol.params,
        "protocol": {
            "id": protocol.pk,
            "name": protocol.name,
            "version": protocol.version,
            "lineage": str(protocol.lineage),
        },
        "sampling": result.sampling,
        "mask_seed": protocol.mask_seed,
        # DL methods report the verified weights' hash as "sha256" (recon_engine.dl).
        "model_sha256": result.info.get("sha256", ""),
        "worker": worker,
        "host": socket.gethostname(),
        "device": result.device,
        "timings_s": result.timings,
        "info": result.info,
        "input_series": str(job.input_series.uuid),
    }
