"""Render one slice of any series as an 8-bit PNG for the administrators' QA viewer.

This viewer is for unblinded quality control by site staff; readers use the blinded
DICOM viewer of the studies app.
"""

from __future__ import annotations

import io

import h5py
import numpy as np
import pydicom
import torch
from PIL import Image

from mriplatform.cases.ingest import DICOM_ERRORS
from mriplatform.cases.models import Series
from recon_engine.fft import ifftc, rss


class SliceError(ValueError):
    """The requested slice does not exist or the file cannot be read."""


class SliceDecodeError(SliceError):
    """The slice exists but its stored file cannot be decoded into an image."""


def slice_count(series: Series) -> int:
    if series.kind == Series.Kind.DICOM:
        return series.instances.count()
    return int(series.n_slices or 0)


def slice_image(series: Series, index: int) -> np.ndarray:
    """Magnitude image of slice ``index`` as float32 (H, W); SliceError if there is no
    such slice, SliceDecodeError if its file cannot be decoded."""
    count = slice_count(series)
    if not 0 <= index < count:
        raise SliceError(f"slice {index} is outside 0..{count - 1}")
    try:
        image = _read_slice(series, index)
    except SliceError:
        raise
    except (*DICOM_ERRORS, RuntimeError) as exc:
        raise SliceDecodeError(f"slice {index} cannot be decoded ({type(exc).__name__})") from exc
    image = np.asarray(image, dtype=np.float32)
    if image.ndim > 2:  # a multi-frame instance: its first frame
        image = image.reshape(-1, *image.shape[-2:])[0]
    if image.ndim != 2 or image.size == 0:
        raise SliceDecodeError(f"slice {index} is not a 2D image (shape {image.shape})")
    return image


def _read_slice(series: Series, index: int) -> np.ndarray:
    if series.kind == Series.Kind.DICOM:
        instance = series.instances.order_by("instance_number")[index]
        with instance.file.open("rb") as fh:
            ds = pydicom.dcmread(fh)
        return ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1) or 1)
    with series.file.open("rb") as fh, h5py.File(fh, "r") as h5:
        if series.kind == Series.Kind.RECONSTRUCTION:
            return np.asarray(h5["reconstruction"][index], dtype=np.float32)
        if series.is_raw:  # ISMRMRD uploads are stored converted to the fastMRI layout
            kspace = torch.from_numpy(np.asarray(h5["kspace"][index]))
            # Zero-filled root-sum-of-squares: what the raw data shows before reconstruction.
            return rss(ifftc(kspace), coil_dim=0).numpy().astype(np.float32)
    raise SliceError(f"no preview for {series.get_kind_display()}")


def to_png(image: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> bytes:
    """Window ``image`` between two percentiles and encode it as an 8-bit PNG."""
    finite = image[np.isfinite(image)]
    low, high = np.percentile(finite, [low_pct, high_pct]) if finite.size else (0.0, 1.0)
    image = np.nan_to_num(image, nan=low, posinf=high, neginf=low)
    scaled = np.clip((image - low) / max(high - low, 1e-12), 0, 1)
    buffer = io.BytesIO()
    Image.fromarray((scaled * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
