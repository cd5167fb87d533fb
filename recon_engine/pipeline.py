"""File-to-file reconstruction and evaluation (what the CLI and the platform's workers run).

``reconstruct_file`` reads a fastMRI raw file, runs a registered method in slice batches
and writes a fastMRI reconstruction file (plus provenance) and optionally a DICOM series;
``evaluate_file`` scores a reconstruction against a reference the way fastMRI's
``evaluate.py`` does.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recon_engine import __version__
from recon_engine.device import default_device, describe_device
from recon_engine.io.dicom import write_dicom_series
from recon_engine.io.fastmri import (
    map_units,
    read_fastmri,
    read_reconstruction,
    write_reconstruction,
)
from recon_engine.io.ismrmrd_header import image_geometry, parse_ismrmrd_header
from recon_engine.metrics import evaluate
from recon_engine.registry import ReconError, ReconInput, get_method
from recon_engine.sampling import acs_region, infer_mask

__all__ = [
    "VolumeResult",
    "center_crop",
    "crop_to_reference",
    "evaluate_file",
    "reconstruct_file",
    "reconstruct_kspace",
    "slice_batch_size",
]

_BATCH_BYTES = 256 * 2**20  # k-space bytes handed to a method at once
# method families that cannot work with a single receive coil
_MULTICOIL_FAMILIES = ("parallel_imaging", "simultaneous_multislice")


def center_crop(images: np.ndarray | torch.Tensor, shape: tuple[int, int]):
    """Centre crop over the last two axes, fastMRI's ``transforms.center_crop``
    convention (start at ``(n - m) // 2``); ReconError if ``shape`` does not fit."""
    h, w = images.shape[-2:]
    if not (0 < shape[0] <= h and 0 < shape[1] <= w):
        raise ReconError(f"cannot centre-crop images {h}x{w} to {shape[0]}x{shape[1]}")
    r0, c0 = (h - shape[0]) // 2, (w - shape[1]) // 2
    return images[..., r0 : r0 + shape[0], c0 : c0 + shape[1]]


def slice_batch_size(kspace_shape: tuple[int, ...], budget_bytes: int = _BATCH_BYTES) -> int:
    """Slices per batch so one batch of complex64 k-space stays within ``budget_bytes``."""
    per_slice = math.prod(kspace_shape[1:]) * 8
    return max(1, min(int(kspace_shape[0]), budget_bytes // max(per_slice, 1)))


def _json(value: Any) -> str:
    return json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o))


def _progress_bar(progress: bool | Callable[[int, int], None], total: int, label: str):
    """``(update(done_float), close())`` for a tqdm bar, a callback or nothing."""
    if callable(progress):
        return (lambda done: progress(int(done), total)), (lambda: None)
    if not progress:
        return (lambda done: None), (lambda: None)
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit="slice", leave=False, delay=0.5)

    def update(done: float) -> None:
        bar.n = round(done, 2)
        bar.refresh()

    return update, bar.close


@dataclass
class VolumeResult:
    """A reconstructed volume and what came with it.

    volume: ``(S, H, W)`` float32 magnitude at the k-space matrix size.
    maps: per-voxel maps of the method (``(S, H, W)`` or ``(S, C, H, W)``), slices joined.
    mask / acs: the sampling and calibration masks that were used.
    """

    volume: np.ndarray
    maps: dict[str, np.ndarray]
    timings: dict[str, float]
    info: dict
    mask: torch.Tensor
    acs: torch.Tensor
    device: dict

    @property
    def effective_acceleration(self) -> float:
        return float(self.mask.numel() / max(float(self.mask.sum()), 1.0))


def reconstruct_kspace(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    method: str,
    params: dict | None = None,
    device: torch.device | str | None = None,
    progress: bool | Callable[[int, int], None] = True,
    metadata: dict | None = None,
    batch_size: int | None = None,
    label: str = "",
) -> VolumeResult:
    """Run ``method`` on ``kspace`` ``(S, C, H, W)`` sampled by ``mask`` in slice batches.

    The ACS region is the contiguous fully sampled centre of ``mask``. Slices go to the
    method in batches (``batch_size``, default: 256 MiB of k-space); ``progress`` is
    ``True`` (tqdm bar), ``False`` or a callback ``(slices_done, total)``.
    """
    try:
        spec = get_method(method)
    except KeyError as exc:
        raise ReconError(str(exc.args[0])) from None
    params = spec.validate(params)
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ReconError("device 'cuda' requested but CUDA is not available")
    if kspace.ndim != 4 or not kspace.is_complex():
        raise ReconError(
            f"kspace must be complex (S, C, H, W), got {kspace.dtype} {tuple(kspace.shape)}"
        )
    acquired = (kspace != 0).any(dim=1, keepdim=True)
    if not bool(acquired.any()):
        raise ReconError("k-space is all zero: the file holds no acquired samples")
    if spec.family in _MULTICOIL_FAMILIES and kspace.shape[1] < 2:
        raise ReconError(
            f"{method} is {spec.family.replace('_', ' ')} and needs multi-coil k-space (it "
            f"separates aliased signal with the coil sensitivities); this k-space has "
            f"{kspace.shape[1]} coil: use zero_filled, rss or compressed sensing"
        )
    outside = acquired & (mask == 0)
    if bool(outside.any()):
        raise ReconError(
            f"k-space has non-zero samples where the mask says 'not acquired' "
            f"({int(outside.sum())} samples); the mask does not match"
        )
    acs = acs_region(mask)
    if spec.needs_acs and not bool(acs.any()):
        raise ReconError(f"{method} needs a fully sampled centre (ACS), and this mask has none")
    s = kspace.shape[0]
    batch = batch_size or slice_batch_size(tuple(kspace.shape))
    if spec.family == "simultaneous_multislice":
        # SMS groups slices across the whole volume (g, g + S/MB, ...): a batch would
        # change which slices are excited together.
        batch = s
    per_slice_mask = mask.shape[0] == s and s > 1
    update, close = _progress_bar(progress, s, label or method)
    images, timings, infos = [], {}, []
    maps: dict[str, list[np.ndarray]] = {}
    try:
        for b0 in range(0, s, batch):
            b1 = min(s, b0 + batch)
            n = b1 - b0

            def inner(done: int, total: int, b0: int = b0, n: int = n) -> None:
                update(b0 + n * min(done, total) / max(total, 1))

            data = ReconInput(
                kspace=kspace[b0:b1],
                mask=mask[b0:b1] if per_slice_mask else mask,
                acs_mask=acs[b0:b1] if per_slice_mask else acs,
                metadata=dict(metadata or {}, slice_offset=b0),
                device=device,
                progress=inner,
            )
            out = spec.run(data, params)
            image = out.image.detach()
            if image.shape != (n, *kspace.shape[-2:]):
                raise ReconError(
                    f"{method} returned an image of shape {tuple(image.shape)}, expected "
                    f"{(n, *kspace.shape[-2:])}"
                )
            image = image.abs().to(device="cpu", dtype=torch.float32)
            if not bool(torch.isfinite(image).all()):
                raise ReconError(f"{method} produced NaN or infinite values")
            images.append(image)
            for name, value in out.maps.items():
                if value.shape[0] == n:
                    value = value.detach().cpu()
                    value = value.abs() if value.is_complex() else value
                    maps.setdefault(name, []).append(value.to(torch.float32).numpy())
            for k, v in out.timings.items():
                timings[k] = timings.get(k, 0.0) + float(v)
            infos.append(out.info)
            update(b1)
    finally:
        close()
    joined = {k: np.concatenate(v) for k, v in maps.items() if sum(len(x) for x in v) == s}
    return VolumeResult(
        volume=torch.cat(images).numpy(),
        maps=joined,
        timings=timings,
        info=infos[0] if len(infos) == 1 else {"batches": infos},
        mask=mask,
        acs=acs,
        device=describe_device(device),
    )


def crop_to_reference(volume: np.ndarray, reference_shape: tuple[int, ...] | None) -> np.ndarray:
    """fastMRI convention: crop to the reference RSS size (never beyond the matrix)."""
    if reference_shape is None:
        return volume
    h, w = volume.shape[-2:]
    return center_crop(volume, (min(reference_shape[-2], h), min(reference_shape[-1], w)))


def check_writable(output_h5: Path, dicom_dir: Path | None = None) -> None:
    """Raise :class:`ReconError` unless ``output_h5`` (a file) and ``dicom_dir`` (a folder,
    created later if missing) can be written, so a run never fails after reconstructing.

    The file is opened for appending (and removed again if it did not exist), which tests
    the real permissions, also for root and read-only file systems.
    """
    if output_h5.is_dir():
        raise ReconError(f"{output_h5}: is a directory, expected an output file name")
    existed = output_h5.exists()
    try:
        with open(output_h5, "ab"):
            pass
    except OSError as exc:
        raise ReconError(f"{output_h5}: cannot write the output file ({exc.strerror})") from None
    if not existed:
        output_h5.unlink()
    if dicom_dir is None:
        return
    if dicom_dir.exists() and not dicom_dir.is_dir():
        raise ReconError(f"{dicom_dir}: exists and is not a directory (DICOM output)")
    existing = dicom_dir
    while not existing.exists():
        existing = existing.parent
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ReconError(
            f"{dicom_dir}: cannot write the DICOM series there ({exc.strerror})"
        ) from None


def reconstruct_file(
    input_h5: str | Path,
    output_h5: str | Path,
    method: str,
    params: dict | None = None,
    device: torch.device | str | None = None,
    dicom_dir: str | Path | None = None,
    progress: bool | Callable[[int, int], None] = True,
    batch_size: int | None = None,
) -> dict:
    """Reconstruct a fastMRI raw file with ``method`` and write the result.

    The sampling mask is the file's ``mask`` dataset, or inferred from the zeros of the
    k-space (see :func:`reconstruct_kspace` for batching and progress). The magnitude
    image is centre-cropped to ``reconstruction_rss``'s size when the file has one (fastMRI
    convention), else kept at the full matrix, and written as a fastMRI reconstruction file
    with provenance attributes (method, params JSON, engine version, device, timings,
    info) and the method's per-voxel maps (``maps/<name>``, cropped alike, with their units:
    :data:`recon_engine.io.fastmri.MAP_UNITS`); with ``dicom_dir`` also as a DICOM series.
    The outputs are checked for writability before anything is reconstructed. Returns a
    summary dict.
    """
    input_h5, output_h5 = Path(input_h5), Path(output_h5)
    try:
        spec = get_method(method)
    except KeyError as exc:
        raise ReconError(str(exc.args[0])) from None
    params = spec.validate(params)
    check_writable(output_h5, Path(dicom_dir) if dicom_dir is not None else None)
    raw = read_fastmri(input_h5)
    kspace = raw.kspace
    mask_source = "file"
    if raw.mask is None:
        mask = infer_mask(kspace)
        mask_source = "inferred from zeros"
    else:
        mask = raw.mask
    metadata: dict[str, Any] = {
        "source": input_h5.name,
        "acquisition": raw.attrs.get("acquisition"),
    }
    header_info = None
    if raw.header:
        try:
            header_info = parse_ismrmrd_header(raw.header)
            metadata["header"] = {
                "encoded_matrix": header_info.encoded_matrix,
                "recon_fov_mm": header_info.recon_fov_mm,
                "acceleration": header_info.acceleration,
            }
        except ReconError:
            header_info = None
    for key in ("sms_factor", "fov_shift", "acceleration"):
        if key in raw.attrs:
            metadata[key] = raw.attrs[key]
    try:
        result = reconstruct_kspace(
            kspace,
            mask,
            method,
            params,
            device=device,
            progress=progress,
            metadata=metadata,
            batch_size=batch_size,
            label=f"{method} {input_h5.name}",
        )
    except ReconError as exc:
        raise ReconError(f"{input_h5.name}: {exc}") from None
    full_shape = result.volume.shape[-2:]
    rss_shape = raw.reconstruction_rss.shape if raw.reconstruction_rss is not None else None
    volume = crop_to_reference(result.volume, rss_shape)
    maps = {
        name: center_crop(value, volume.shape[-2:])
        for name, value in result.maps.items()
        if value.ndim == 3
    }
    timings, info, device_info = result.timings, result.info, result.device
    attrs = {
        "method": method,
        "method_title": spec.title,
        "params": _json(params),
        "engine_version": __version__,
        "device": _json(device_info),
        "timings": _json(timings),
        "info": _json(info),
        "source": input_h5.name,
        "mask_source": mask_source,
        "effective_acceleration": result.effective_acceleration,
        "acs_size": int(result.acs[0].sum()),
    }
    if "acquisition" in raw.attrs:
        attrs["acquisition"] = raw.attrs["acquisition"]
    if "patient_id" in raw.attrs:
        attrs["patient_id"] = raw.attrs["patient_id"]
    write_reconstruction(output_h5, volume, attrs, maps=maps)
    summary = {
        "output": str(output_h5),
        "shape": list(volume.shape),
        "method": method,
        "params": params,
        "device": device_info,
        "timings": timings,
        "info": info,
        "mask_source": mask_source,
        "effective_acceleration": attrs["effective_acceleration"],
        "maps": {name: map_units(name)[0] for name in maps},
    }
    if dicom_dir is not None:
        spacing = (1.0, 1.0)
        thickness = 1.0
        if header_info is not None:
            spacing, thickness = image_geometry(header_info, full_shape)
        files = write_dicom_series(
            dicom_dir,
            volume,
            description=f"{spec.title} [{method}]",
            pixel_spacing=spacing,
            slice_thickness=thickness,
            derivation=f"ReconTrial {__version__}: {method} {_json(params)}",
            patient_id=str(raw.attrs.get("patient_id", "ANONYMOUS"))[:64],
        )
        summary["dicom_files"] = len(files)
    return summary


def evaluate_file(recon_h5: str | Path, reference_h5: str | Path) -> dict[str, float]:
    """NMSE, PSNR and SSIM of a reconstruction file against a reference (a reconstruction
    file or a raw file's ``reconstruction_rss``), as fastMRI's ``evaluate.py``: both
    volumes centre-cropped to the reference's width squared (height capped at the
    reference height), ``maxval`` = the reference maximum."""
    recon, _ = read_reconstruction(recon_h5)
    target, _ = read_reconstruction(reference_h5)
    if recon.shape[0] != target.shape[0]:
        raise ReconError(
            f"slice count differs: reconstruction {recon.shape[0]}, reference {target.shape[0]}"
        )
    size = (min(target.shape[-2], target.shape[-1]), target.shape[-1])
    target = center_crop(target, size)
    recon = center_crop(recon, size)
    return evaluate(target, recon)
