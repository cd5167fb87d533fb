"""ISMRMRD raw data (HDF5, ``/dataset/data`` acquisitions + ``/dataset/xml`` header).

Cartesian 2D multi-slice data is gathered into fastMRI layout ``(S, C, H, W)``: each
acquisition is one readout (``H`` samples, ``C`` channels) placed at phase-encode column
``kspace_encode_step_1 + (W // 2 - centre)`` of slice ``idx.slice``, where ``W`` and
the centre line come from the header's encoded matrix and encoding limits. The sampling
mask records which lines were acquired; lines flagged as parallel-imaging calibration
form the ACS mask. Noise scans, navigators and phase-correction lines are skipped;
repeated averages are averaged.

Writing uses the ``ismrmrd`` package's ``Dataset`` API (one acquisition per line). Reading
loads the acquisition table in one HDF5 read (the per-acquisition ``read_acquisition``
API costs one HDF5 call per line, far too slow for whole scans) and uses the
``ismrmrd`` package for the header and flag definitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from recon_engine.io.hdf5_safety import UnsafeHDF5Error, audit_hdf5
from recon_engine.io.ismrmrd_header import HeaderInfo, make_ismrmrd_header, parse_ismrmrd_header
from recon_engine.registry import ReconError

__all__ = ["IsmrmrdData", "read_ismrmrd", "write_ismrmrd"]


@dataclass
class IsmrmrdData:
    """k-space gathered from an ISMRMRD file.

    kspace: ``(S, C, H, W)`` complex64, zeros where not acquired.
    mask: float32 ``(1, 1, 1, W)`` when every slice has the same lines, else
        ``(S, 1, 1, W)``.
    acs_mask: lines flagged as parallel calibration, same layout, or ``None``.
    header: the XML header; info: its parsed encoding facts.
    """

    kspace: torch.Tensor
    mask: torch.Tensor
    acs_mask: torch.Tensor | None
    header: str
    info: HeaderInfo


def _flag(name: str) -> int:
    import ismrmrd

    return 1 << (getattr(ismrmrd, name) - 1)


_SKIP = (
    "ACQ_IS_NOISE_MEASUREMENT",
    "ACQ_IS_NAVIGATION_DATA",
    "ACQ_IS_PHASECORR_DATA",
    "ACQ_IS_DUMMYSCAN_DATA",
    "ACQ_IS_HPFEEDBACK_DATA",
    "ACQ_IS_RTFEEDBACK_DATA",
    "ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA",
    "ACQ_IS_PHASE_STABILIZATION_REFERENCE",
    "ACQ_IS_PHASE_STABILIZATION",
)


def read_ismrmrd(
    path: str | Path, dataset: str = "dataset", contrast: int = 0, repetition: int = 0
) -> IsmrmrdData:
    """Read Cartesian 2D ISMRMRD raw data (module doc); ``contrast`` / ``repetition``
    select one volume of multi-contrast or repeated scans."""
    path = Path(path)
    if not path.is_file():
        raise ReconError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as hf:
            try:
                audit_hdf5(hf, path.stat().st_size)
            except UnsafeHDF5Error as exc:
                raise ReconError(f"{path.name}: {exc}") from None
            if dataset not in hf or "data" not in hf[dataset] or "xml" not in hf[dataset]:
                raise ReconError(
                    f"{path.name}: not an ISMRMRD file (needs /{dataset}/data and /{dataset}/xml)"
                )
            xml = hf[dataset]["xml"][()]
            table = hf[dataset]["data"][()]
    except OSError as exc:
        raise ReconError(f"{path.name}: not a readable HDF5 file ({exc})") from None
    if isinstance(xml, np.ndarray):
        xml = xml.ravel()[0]
    xml = xml.decode("utf-8") if isinstance(xml, bytes) else str(xml)
    info = parse_ismrmrd_header(xml)
    if info.trajectory != "cartesian":
        raise ReconError(f"{path.name}: only Cartesian data is supported, got {info.trajectory}")
    if info.encoded_matrix[2] > 1:
        raise ReconError(
            f"{path.name}: 3D encoded data (z = {info.encoded_matrix[2]}) is not supported"
        )
    try:
        head = table["head"]
        data_col = table["data"]
    except (ValueError, KeyError):
        raise ReconError(f"{path.name}: acquisition table lacks head/data fields") from None
    flags = head["flags"].astype(np.uint64)
    skip = np.uint64(sum(_flag(n) for n in _SKIP))
    idx = head["idx"]
    keep = ((flags & skip) == 0) & (idx["contrast"] == contrast) & (idx["repetition"] == repetition)
    if not keep.any():
        raise ReconError(
            f"{path.name}: no imaging acquisitions (contrast {contrast}, repetition {repetition})"
        )
    head, data_col, flags, idx = head[keep], data_col[keep], flags[keep], idx[keep]
    n_ch = np.unique(head["active_channels"])
    n_samp = np.unique(head["number_of_samples"])
    if n_ch.size != 1 or n_samp.size != 1:
        raise ReconError(
            f"{path.name}: acquisitions differ in channel count {n_ch.tolist()} or "
            f"readout length {n_samp.tolist()}"
        )
    c, n = int(n_ch[0]), int(n_samp[0])
    lengths = np.array([d.size for d in data_col])
    if not np.all(lengths == 2 * c * n):
        raise ReconError(
            f"{path.name}: acquisition data sizes do not match {c} channels x {n} samples"
        )
    data = np.stack(data_col).astype(np.float32).view(np.complex64).reshape(-1, c, n)
    h = max(info.encoded_matrix[0], n)
    w = info.encoded_matrix[1]
    centre = info.center_line if info.center_line is not None else w // 2
    cols = idx["kspace_encode_step_1"].astype(np.int64) + (w // 2 - centre)
    if cols.min() < 0 or cols.max() >= w:
        raise ReconError(
            f"{path.name}: phase-encode counters {int(cols.min())}..{int(cols.max())} fall "
            f"outside the encoded matrix (W = {w})"
        )
    slices = idx["slice"].astype(np.int64)
    s = max(int(slices.max()) + 1, info.n_slices)
    centre_sample = head["center_sample"].astype(np.int64)
    starts = np.where(n == h, 0, h // 2 - centre_sample)
    if starts.min() < 0 or (starts + n).max() > h:
        raise ReconError(f"{path.name}: readouts do not fit the encoded readout length {h}")
    kspace = np.zeros((s, c, h, w), dtype=np.complex64)
    counts = np.zeros((s, w), dtype=np.int64)
    acs = np.zeros((s, w), dtype=bool)
    calib = np.uint64(
        _flag("ACQ_IS_PARALLEL_CALIBRATION") | _flag("ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING")
    )
    for start in np.unique(starts):
        sel = starts == start
        np.add.at(kspace, (slices[sel], slice(None), slice(start, start + n), cols[sel]), data[sel])
    np.add.at(counts, (slices, cols), 1)
    acs[slices[(flags & calib) != 0], cols[(flags & calib) != 0]] = True
    sampled = counts > 0
    kspace /= np.maximum(counts, 1)[:, None, None, :].astype(np.float32)
    same = bool(np.all(sampled == sampled[:1]))
    mask = torch.from_numpy((sampled[:1] if same else sampled).astype(np.float32))
    mask = mask.reshape(mask.shape[0], 1, 1, w)
    acs_mask = None
    if acs.any():
        a = acs[:1] if bool(np.all(acs == acs[:1])) else acs
        acs_mask = torch.from_numpy(a.astype(np.float32)).reshape(a.shape[0], 1, 1, w)
    return IsmrmrdData(torch.from_numpy(kspace), mask, acs_mask, xml, info)


def write_ismrmrd(
    path: str | Path,
    kspace: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None = None,
    acs_mask: torch.Tensor | np.ndarray | None = None,
    header: str | None = None,
    dataset: str = "dataset",
) -> Path:
    """Write ``(S, C, H, W)`` k-space as ISMRMRD acquisitions, one per acquired line.

    ``mask`` / ``acs_mask`` are 1D line masks (``(W,)`` or broadcastable ``(.., W)``,
    possibly per slice ``(S, 1, 1, W)``); ACS lines are flagged
    ``ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING``. Without ``header`` a minimal one is made
    (:func:`~recon_engine.io.ismrmrd_header.make_ismrmrd_header`).
    """
    import ismrmrd

    path = Path(path)
    k = np.asarray(kspace.cpu() if isinstance(kspace, torch.Tensor) else kspace)
    if k.ndim != 4 or k.dtype.kind != "c":
        raise ReconError(f"kspace must be complex (S, C, H, W), got {k.dtype} {k.shape}")
    s, c, h, w = k.shape

    def lines(m) -> np.ndarray:
        if m is None:
            return np.ones((s, w), dtype=bool)
        arr = np.asarray(m.cpu() if isinstance(m, torch.Tensor) else m)
        if arr.ndim == 1 and arr.shape[0] == w:
            flat = arr[None]
        elif arr.ndim == 4 and arr.shape[1:] == (1, 1, w) and arr.shape[0] in (1, s):
            flat = arr.reshape(arr.shape[0], w)
        else:
            raise ReconError(f"ISMRMRD export needs a 1D line mask over W = {w}, got {arr.shape}")
        return np.broadcast_to(flat.astype(bool), (s, w))

    sampled, acs = lines(mask), lines(acs_mask) if acs_mask is not None else np.zeros((s, w), bool)
    if header is None:
        header = make_ismrmrd_header((h, w), c, s)
    if path.exists():
        path.unlink()
    try:
        dset = ismrmrd.Dataset(str(path), dataset, create_if_needed=True)
    except OSError as exc:
        raise ReconError(f"{path}: cannot write ISMRMRD file ({exc})") from None
    try:
        dset.write_xml_header(header)
        counter = 0
        for sl in range(s):
            cols = np.flatnonzero(sampled[sl])
            for i, col in enumerate(cols):
                acq = ismrmrd.Acquisition.from_array(
                    np.ascontiguousarray(k[sl, :, :, col]), center_sample=h // 2
                )
                acq.idx.kspace_encode_step_1 = int(col)
                acq.idx.slice = sl
                acq.scan_counter = counter
                counter += 1
                if i == 0:
                    acq.set_flag(ismrmrd.ACQ_FIRST_IN_SLICE)
                if i == len(cols) - 1:
                    acq.set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
                if acs[sl, col]:
                    acq.set_flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
                dset.append_acquisition(acq)
    finally:
        dset.close()
    return path
