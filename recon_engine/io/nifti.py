"""NIfTI volumes (nibabel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon_engine.registry import ReconError

__all__ = ["read_nifti"]


def read_nifti(path: str | Path, canonical: bool = True) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read a NIfTI-1/2 file: ``(volume float32, voxel size in mm)``.

    ``canonical=True`` reorients to the closest RAS+ orientation first (voxel axes
    ``x`` = left->right, ``y`` = posterior->anterior, ``z`` = inferior->superior), so slice
    axes mean the same for every file. 4D files must have a single volume.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise ReconError(f"{path}: no such NIfTI file")
    try:
        img = nib.load(str(path))
        if canonical:
            img = nib.as_closest_canonical(img)
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise ReconError(f"{path.name}: not a readable NIfTI file ({exc})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ReconError(f"{path.name}: expected a 3D volume, got shape {data.shape}")
    if not np.isfinite(data).all():
        raise ReconError(f"{path.name}: volume contains NaN or infinite values")
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return data, zooms
