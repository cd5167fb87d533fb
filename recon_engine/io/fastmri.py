"""fastMRI HDF5 files: raw k-space files and reconstruction files, laid out as fastMRI's.

Raw (``multicoil_*``) file::

    kspace              (S, C, H, W) complex64   (single-coil files: (S, H, W))
    mask                (W,) for 1D sampling, (H, W) for 2D    [undersampled files only]
    ismrmrd_header      XML string
    reconstruction_rss  (S, H', W') float32, the RSS of the fully sampled data
                        centre-cropped (320 x 320 in fastMRI)  [training/validation only]
    attrs: acquisition (str), max, norm (of reconstruction_rss), patient_id (str),
           acceleration, num_low_frequency                     [test/challenge files]

Reconstruction file (what fastMRI's ``save_reconstructions`` writes and its
``evaluate.py`` reads)::

    reconstruction      (S, H', W') float32
    maps/<name>         (S, H', W') float32 per-voxel maps of the method (g_factor,
                        uncertainty, noise_sd, dc_residual...), each with attrs
                        ``units`` and ``description`` (:data:`MAP_UNITS`)

Reading validates everything and turns any h5py/HDF5 failure (truncated, corrupt, not
HDF5) into :class:`~recon_engine.registry.ReconError` naming the file and problem.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from recon_engine.io.hdf5_safety import UnsafeHDF5Error, audit_hdf5
from recon_engine.registry import ReconError

__all__ = [
    "FastMRIData",
    "read_fastmri",
    "write_fastmri",
    "read_reconstruction",
    "write_reconstruction",
    "mask_to_tensor",
    "MAP_UNITS",
    "map_units",
    "read_maps",
]

# Units and meaning of the per-voxel maps methods return (ReconOutput.maps). The image
# (``reconstruction``) is in the arbitrary intensity units of the k-space, since every
# FFT in the engine is orthonormal; maps in "image units" share that scale.
MAP_UNITS: dict[str, tuple[str, str]] = {
    "g_factor": (
        "1",
        "geometry factor: noise SD of the accelerated reconstruction / (noise SD of the fully "
        "sampled one x sqrt(R)); dimensionless, 1 = no noise amplification, 0 = no coil signal",
    ),
    "uncertainty": (
        "image units",
        "Monte-Carlo dropout standard deviation of the reconstructed magnitude, times the "
        "calibration scale of the model card (same units as 'reconstruction'); whether it "
        "tracks the actual error is stated in the provenance info ('uncertainty') and the "
        "model card (for most shipped networks it does not localise errors)",
    ),
    "noise_sd": (
        "image units",
        "noise standard deviation per voxel (sigma x g x sqrt(R)), same units as 'reconstruction'",
    ),
    "dc_residual": (
        "image units",
        "data-consistency residual: root-sum-of-squares over coils of the inverse orthonormal "
        "FFT of (predicted - measured) k-space on the acquired samples, same units as "
        "'reconstruction'; disagreement with the data, not an error map",
    ),
}


def map_units(name: str) -> tuple[str, str]:
    """``(units, description)`` of a method map called ``name`` (unknown names say so)."""
    return MAP_UNITS.get(name, ("unspecified", "map returned by the method; see its description"))


@dataclass
class FastMRIData:
    """Contents of a fastMRI raw file.

    kspace: ``(S, C, H, W)`` complex64 tensor (single-coil files get ``C = 1``).
    mask: stored sampling mask as a float32 tensor ``(1, 1, 1, W)`` / ``(1, 1, H, W)``,
        or ``None`` when the file has no ``mask`` dataset.
    header: the ``ismrmrd_header`` XML (``""`` when absent).
    reconstruction_rss: ``(S, H', W')`` float32 array or ``None``.
    attrs: the file attributes (numpy scalars converted to Python values).
    """

    kspace: torch.Tensor
    mask: torch.Tensor | None
    header: str
    reconstruction_rss: np.ndarray | None
    attrs: dict[str, Any] = field(default_factory=dict)


@contextmanager
def _open(path: str | Path, mode: str = "r") -> Iterator[h5py.File]:
    path = Path(path)
    if mode == "r" and not path.is_file():
        raise ReconError(f"{path}: no such file")
    try:
        hf = h5py.File(path, mode)
    except OSError as exc:
        if mode == "r":
            raise ReconError(f"{path.name}: not a readable HDF5 file ({exc})") from None
        raise ReconError(f"{path}: cannot write HDF5 file ({exc})") from None
    if mode == "r":
        _audit(hf, path)
    try:
        yield hf
    except (OSError, KeyError, RuntimeError) as exc:
        raise ReconError(f"{path.name}: corrupt or truncated HDF5 data ({exc})") from None
    finally:
        hf.close()


def _audit(hf: h5py.File, path: Path) -> None:
    """Refuse (ReconError) a file that could read data outside itself or declare more
    than it stores (:func:`~recon_engine.io.hdf5_safety.audit_hdf5`), before any read."""
    try:
        audit_hdf5(hf, path.stat().st_size)
    except (UnsafeHDF5Error, OSError, RuntimeError, KeyError) as exc:
        hf.close()
        raise ReconError(f"{path.name}: {exc}") from None


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def mask_to_tensor(mask: np.ndarray | torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A stored mask (``(W,)``, ``(H, W)`` or already broadcastable) as a float32 0/1
    tensor broadcastable to k-space ``shape`` = ``(S, C, H, W)``; ReconError if it does
    not fit."""
    m = torch.as_tensor(np.asarray(mask))
    s, _, h, w = shape
    if m.dtype == torch.bool:
        m = m.float()
    if m.is_complex() or not torch.isfinite(m.float()).all():
        raise ReconError("mask must be real and finite")
    m = m.float()
    if m.ndim == 1:
        if m.shape[0] != w:
            raise ReconError(f"mask has {m.shape[0]} lines but k-space has W = {w}")
        m = m.reshape(1, 1, 1, w)
    elif m.ndim == 2:
        if tuple(m.shape) != (h, w):
            raise ReconError(f"2D mask {tuple(m.shape)} does not match k-space (H, W) = {(h, w)}")
        m = m.reshape(1, 1, h, w)
    elif m.ndim == 4:
        ok = all(a in (1, b) for a, b in zip(m.shape, (s, 1, h, w))) and m.shape[-1] == w
        if not ok:
            raise ReconError(f"mask {tuple(m.shape)} is not broadcastable to k-space {shape}")
    else:
        raise ReconError(f"mask must be (W,), (H, W) or 4D, got shape {tuple(m.shape)}")
    if not torch.all((m == 0) | (m == 1)):
        raise ReconError("mask must contain only 0 and 1")
    return m.contiguous()


def read_fastmri(path: str | Path, check_finite: bool = True) -> FastMRIData:
    """Read and validate a fastMRI raw HDF5 file (module doc for the layout)."""
    path = Path(path)
    with _open(path) as hf:
        if "kspace" not in hf:
            raise ReconError(f"{path.name}: no 'kspace' dataset (found: {', '.join(hf) or 'none'})")
        ds = hf["kspace"]
        if not isinstance(ds, h5py.Dataset):
            raise ReconError(f"{path.name}: 'kspace' is not a dataset")
        if ds.ndim not in (3, 4):
            raise ReconError(
                f"{path.name}: kspace must be (S, C, H, W) or single-coil (S, H, W), "
                f"got rank {ds.ndim} {ds.shape}"
            )
        if ds.dtype.kind != "c":
            raise ReconError(f"{path.name}: kspace must be complex, got {ds.dtype}")
        if 0 in ds.shape:
            raise ReconError(f"{path.name}: kspace is empty {ds.shape}")
        kspace = np.asarray(ds[()], dtype=np.complex64)
        if kspace.ndim == 3:
            kspace = kspace[:, None]
        if check_finite and not np.isfinite(kspace).all():
            raise ReconError(f"{path.name}: kspace contains NaN or infinite values")
        mask = None
        if "mask" in hf:
            mask = mask_to_tensor(hf["mask"][()], kspace.shape)
        header = ""
        if "ismrmrd_header" in hf:
            raw = hf["ismrmrd_header"][()]
            header = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        rss = None
        if "reconstruction_rss" in hf:
            rss = np.asarray(hf["reconstruction_rss"][()], dtype=np.float32)
            if rss.ndim != 3 or rss.shape[0] != kspace.shape[0]:
                raise ReconError(
                    f"{path.name}: reconstruction_rss {rss.shape} does not have one "
                    f"(H, W) image per k-space slice ({kspace.shape[0]})"
                )
        attrs = {k: _attr(v) for k, v in hf.attrs.items()}
    return FastMRIData(torch.from_numpy(kspace), mask, header, rss, attrs)


def write_fastmri(
    path: str | Path,
    kspace: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None = None,
    header: str = "",
    reconstruction_rss: np.ndarray | torch.Tensor | None = None,
    attrs: dict[str, Any] | None = None,
) -> Path:
    """Write a fastMRI raw file. ``mask`` (any broadcastable layout) is stored as ``(W,)``
    when it is 1D and ``(H, W)`` when 2D; ``max``/``norm`` attrs are filled in from
    ``reconstruction_rss`` as fastMRI does, unless given."""
    path = Path(path)
    k = np.asarray(kspace.cpu() if isinstance(kspace, torch.Tensor) else kspace)
    if k.ndim != 4 or k.dtype.kind != "c":
        raise ReconError(f"kspace must be complex (S, C, H, W), got {k.dtype} {k.shape}")
    attrs = dict(attrs or {})
    with _open(path, "w") as hf:
        hf.create_dataset("kspace", data=k.astype(np.complex64))
        if mask is not None:
            m = mask_to_tensor(
                mask.cpu() if isinstance(mask, torch.Tensor) else mask, k.shape
            ).numpy()
            if m.shape[0] != 1:
                raise ReconError("fastMRI files store one mask for all slices")
            stored = m[0, 0, 0] if m.shape[2] == 1 else m[0, 0]
            hf.create_dataset("mask", data=stored.astype(np.float32))
        if header:
            hf.create_dataset("ismrmrd_header", data=np.bytes_(header.encode("utf-8")))
        if reconstruction_rss is not None:
            rss = np.asarray(
                reconstruction_rss.cpu()
                if isinstance(reconstruction_rss, torch.Tensor)
                else reconstruction_rss,
                dtype=np.float32,
            )
            hf.create_dataset("reconstruction_rss", data=rss)
            attrs.setdefault("max", float(rss.max()))
            attrs.setdefault("norm", float(np.linalg.norm(rss)))
        for key, value in attrs.items():
            hf.attrs[key] = value if not isinstance(value, dict | list) else json.dumps(value)
    return path


def write_reconstruction(
    path: str | Path,
    reconstruction: np.ndarray | torch.Tensor,
    attrs: dict[str, Any] | None = None,
    maps: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write a fastMRI reconstruction file: ``reconstruction`` ``(S, H, W)`` float32 plus
    provenance ``attrs`` (dicts/lists stored as JSON strings) and the method's ``maps``
    (each ``(S, H, W)``, real) as ``maps/<name>`` with ``units`` and ``description``."""
    path = Path(path)
    rec = np.asarray(
        reconstruction.detach().cpu()
        if isinstance(reconstruction, torch.Tensor)
        else reconstruction
    )
    if rec.ndim != 3 or np.iscomplexobj(rec):
        raise ReconError(f"reconstruction must be real (S, H, W), got {rec.dtype} {rec.shape}")
    if not np.isfinite(rec).all():
        raise ReconError("reconstruction contains NaN or infinite values")
    arrays = {}
    for name, value in (maps or {}).items():
        arr = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
        if arr.shape != rec.shape or np.iscomplexobj(arr):
            raise ReconError(
                f"map {name!r} must be real and shaped like the reconstruction {rec.shape}, "
                f"got {arr.dtype} {arr.shape}"
            )
        arrays[name] = arr.astype(np.float32)
    with _open(path, "w") as hf:
        hf.create_dataset("reconstruction", data=rec.astype(np.float32))
        for key, value in (attrs or {}).items():
            hf.attrs[key] = json.dumps(value) if isinstance(value, dict | list) else value
        for name, arr in arrays.items():
            dset = hf.create_dataset(f"maps/{name}", data=arr)
            dset.attrs["units"], dset.attrs["description"] = map_units(name)
    return path


def read_maps(path: str | Path) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """``{name: (map (S, H, W) float32, attrs)}`` of a reconstruction file (empty without)."""
    path = Path(path)
    with _open(path) as hf:
        group = hf.get("maps")
        if group is None:
            return {}
        if not isinstance(group, h5py.Group):
            raise ReconError(f"{path.name}: 'maps' is not a group")
        return {
            name: (np.asarray(dset[()]), {k: _attr(v) for k, v in dset.attrs.items()})
            for name, dset in group.items()
            if isinstance(dset, h5py.Dataset)
        }


def read_reconstruction(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """``(reconstruction (S, H, W) float32, attrs)`` from a reconstruction file; also
    accepts a raw file's ``reconstruction_rss`` (the fastMRI reference)."""
    path = Path(path)
    with _open(path) as hf:
        key = next((k for k in ("reconstruction", "reconstruction_rss") if k in hf), None)
        if key is None:
            raise ReconError(
                f"{path.name}: no 'reconstruction' or 'reconstruction_rss' dataset "
                f"(found: {', '.join(hf) or 'none'})"
            )
        rec = np.asarray(hf[key][()])
        attrs = {k: _attr(v) for k, v in hf.attrs.items()}
    if rec.ndim != 3:
        raise ReconError(f"{path.name}: {key} must be (S, H, W), got shape {rec.shape}")
    if np.iscomplexobj(rec):
        raise ReconError(f"{path.name}: {key} must be real magnitude, got {rec.dtype}")
    if not np.isfinite(rec).all():
        raise ReconError(f"{path.name}: {key} contains NaN or infinite values")
    return rec.astype(np.float32), attrs
