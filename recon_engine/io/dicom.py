"""DICOM magnitude series: read a series into a volume, write reconstructions as a series.

Reading sorts slices by their position along the slice normal (``ImagePositionPatient``
projected on the cross product of the ``ImageOrientationPatient`` row/column cosines),
falling back to ``InstanceNumber``, and applies the modality LUT (``RescaleSlope`` /
``RescaleIntercept``). Writing produces MR Image Storage objects marked ``DERIVED``
with fresh UIDs, 16-bit unsigned pixels and a stored linear scaling (``RescaleSlope``)
that maps them back to the floating-point reconstruction values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from recon_engine.registry import ReconError

__all__ = ["DicomSeries", "read_dicom_series", "write_dicom_series"]

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


@dataclass
class DicomSeries:
    """A DICOM series as a volume.

    volume: ``(S, rows, cols)`` float32 after the modality rescale, slices in order.
    spacing: ``(slice, row, col)`` voxel size in mm (slice spacing from the positions
        when available, else ``SpacingBetweenSlices`` / ``SliceThickness``).
    description: ``SeriesDescription``; series_uid / study_uid: the UIDs.
    positions: ``(S, 3)`` ``ImagePositionPatient`` of each slice (NaN if absent).
    """

    volume: np.ndarray
    spacing: tuple[float, float, float]
    description: str = ""
    series_uid: str = ""
    study_uid: str = ""
    positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))


def _normal(ds) -> np.ndarray | None:
    iop = getattr(ds, "ImageOrientationPatient", None)
    if iop is None or len(iop) != 6:
        return None
    row, col = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    return np.cross(row, col)


def read_dicom_series(path: str | Path, series_uid: str | None = None) -> DicomSeries:
    """Read the single-frame DICOM image series in directory ``path`` (non-DICOM files are
    ignored). With several series present, ``series_uid`` picks one (else ReconError)."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    path = Path(path)
    if not path.is_dir():
        raise ReconError(f"{path}: not a directory of DICOM files")
    datasets = []
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(f)
        except (InvalidDicomError, OSError, EOFError, ValueError):
            continue
        if "PixelData" in ds:
            datasets.append(ds)
    if not datasets:
        raise ReconError(f"{path}: no DICOM images found")
    uids = sorted({str(getattr(ds, "SeriesInstanceUID", "")) for ds in datasets})
    if series_uid is not None:
        datasets = [
            ds for ds in datasets if str(getattr(ds, "SeriesInstanceUID", "")) == series_uid
        ]
        if not datasets:
            raise ReconError(f"{path}: no images of series {series_uid}")
    elif len(uids) > 1:
        raise ReconError(f"{path}: {len(uids)} series found ({', '.join(uids)}); choose one")
    shapes = {(int(ds.Rows), int(ds.Columns)) for ds in datasets}
    if len(shapes) != 1:
        raise ReconError(f"{path}: images differ in size {sorted(shapes)}")
    normal = _normal(datasets[0])
    positions = np.array(
        [
            np.asarray(ds.ImagePositionPatient, float)
            if getattr(ds, "ImagePositionPatient", None) is not None
            else np.full(3, np.nan)
            for ds in datasets
        ]
    )
    if normal is not None and np.isfinite(positions).all():
        order = np.argsort(positions @ normal, kind="stable")
    else:
        order = np.argsort(
            [int(getattr(ds, "InstanceNumber", 0) or 0) for ds in datasets], kind="stable"
        )
    datasets = [datasets[i] for i in order]
    positions = positions[order]
    try:
        slices = [
            np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float32) for ds in datasets
        ]
    except Exception as exc:  # pixel handlers raise many types (compressed syntaxes, ...)
        raise ReconError(f"{path}: cannot decode pixel data ({exc})") from None
    volume = np.stack(slices)
    if volume.ndim != 3:
        raise ReconError(f"{path}: expected single-frame greyscale images, got {volume.shape}")
    first = datasets[0]
    pixel = [float(v) for v in getattr(first, "PixelSpacing", [1.0, 1.0])]
    if len(datasets) > 1 and normal is not None and np.isfinite(positions).all():
        gaps = np.diff(positions @ normal)
        slice_spacing = float(np.median(np.abs(gaps)))
    else:
        slice_spacing = float(
            getattr(first, "SpacingBetweenSlices", None) or getattr(first, "SliceThickness", 1.0)
        )
    return DicomSeries(
        volume=volume,
        spacing=(slice_spacing, pixel[0], pixel[1]),
        description=str(getattr(first, "SeriesDescription", "")),
        series_uid=str(getattr(first, "SeriesInstanceUID", "")),
        study_uid=str(getattr(first, "StudyInstanceUID", "")),
        positions=positions,
    )


def write_dicom_series(
    out_dir: str | Path,
    volume: np.ndarray | torch.Tensor,
    description: str,
    pixel_spacing: tuple[float, float] = (1.0, 1.0),
    slice_thickness: float = 1.0,
    slice_spacing: float | None = None,
    series_number: int = 1001,
    study_uid: str | None = None,
    patient_id: str = "ANONYMOUS",
    patient_name: str = "Anonymous",
    derivation: str = "",
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
) -> list[Path]:
    """Write ``volume`` ``(S, rows, cols)`` (real, >= 0 magnitudes) as an MR Image Storage
    series in ``out_dir`` (``IM_0001.dcm`` ...); returns the file paths.

    Pixels are uint16 with ``RescaleSlope = max / 65535`` (one scaling for the series,
    so grey levels compare across slices); the stored values reproduce the volume to
    ``slope / 2``. ``description`` becomes ``SeriesDescription``; ``derivation``
    (e.g. method and parameters) ``DerivationDescription``. A new study UID is made
    unless ``study_uid`` places the series in an existing study.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    vol = np.asarray(volume.detach().cpu() if isinstance(volume, torch.Tensor) else volume)
    if vol.ndim == 2:
        vol = vol[None]
    if vol.ndim != 3 or np.iscomplexobj(vol):
        raise ReconError(f"DICOM export needs a real (S, rows, cols) volume, got {vol.shape}")
    if vol.size == 0 or not np.isfinite(vol).all():
        raise ReconError("DICOM export: volume is empty or contains NaN/infinite values")
    if vol.min() < 0:
        raise ReconError("DICOM export expects magnitude images (values >= 0)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    peak = float(vol.max())
    slope = peak / 65535.0 if peak > 0 else 1.0
    stored = np.round(vol / slope).clip(0, 65535).astype(np.uint16)
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    frame_uid = generate_uid()
    now = dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    row_cos = np.asarray(orientation[:3], float)
    col_cos = np.asarray(orientation[3:], float)
    normal = np.cross(row_cos, col_cos)
    step = float(slice_spacing if slice_spacing is not None else slice_thickness)
    paths = []
    for i, img in enumerate(stored):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        file = out_dir / f"IM_{i + 1:04d}.dcm"
        ds = FileDataset(str(file), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = MR_IMAGE_STORAGE
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "MR"
        ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
        ds.SeriesDescription = description[:64]
        if derivation:
            ds.DerivationDescription = derivation[:1024]
        ds.SeriesNumber = int(series_number)
        ds.InstanceNumber = i + 1
        ds.PatientID = patient_id
        ds.PatientName = patient_name
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
        ds.Manufacturer = "ReconTrial"
        # type 2 attributes of the MR Image IOD (present, may be empty)
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.ReferringPhysicianName = ""
        ds.StudyID = ""
        ds.AccessionNumber = ""
        ds.PositionReferenceIndicator = ""
        ds.EchoTime = None
        ds.EchoTrainLength = None
        ds.RepetitionTime = None
        ds.ScanningSequence = "RM"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        position = np.asarray(origin, float) + i * step * normal
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.SliceLocation = float(position @ normal)
        ds.PixelSpacing = [float(pixel_spacing[0]), float(pixel_spacing[1])]
        ds.SliceThickness = float(slice_thickness)
        ds.SpacingBetweenSlices = step
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(img.shape[0]), int(img.shape[1])
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleSlope = f"{slope:.10g}"
        ds.RescaleIntercept = "0"
        ds.RescaleType = "US"
        ds.WindowCenter = f"{peak / 2:.6g}"
        ds.WindowWidth = f"{max(peak, 1e-12):.6g}"
        ds.PixelData = np.ascontiguousarray(img).tobytes()
        try:
            pydicom.dcmwrite(file, ds, enforce_file_format=True)
        except OSError as exc:
            raise ReconError(f"{file}: cannot write DICOM ({exc})") from None
        paths.append(file)
    return paths
