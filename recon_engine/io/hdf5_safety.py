"""Check the structure of an untrusted HDF5 file before any of its values is read.

HDF5 can make a file read data that is not in it: a dataset's raw data may live in
*external* files (``H5Pset_external``, any path on the reader's disk), a *virtual* dataset
maps other files' datasets, and soft/external links redirect a name to another object or
file. Declared shapes can also promise far more data than the file holds (missing chunks
read as the fill value, so a 1 kB file can "hold" terabytes). :func:`audit_hdf5` walks
every link and object of an open file with h5py's low-level API, following only hard
links and never reading a value, and refuses all of that with :class:`UnsafeHDF5Error`.

What passes: hard links only; groups and datasets only (committed datatypes too); dataset
layouts contiguous or chunked with their data inside the file (every chunk present, no
external storage), filters built into HDF5/h5py only (no plugin is ever loaded), each
dataset's declared size within ``max_dataset_bytes`` and ``max_ratio`` times what it
stores, each chunk within ``max_chunk_bytes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import h5py
import numpy as np
from h5py import h5d, h5i, h5l, h5o, h5z

__all__ = ["DatasetFacts", "UnsafeHDF5Error", "audit_hdf5", "first_non_finite_slice"]

# Filters compiled into HDF5 or h5py. Any other id would make HDF5 look for a plugin
# library (HDF5_PLUGIN_PATH) and run its code.
SAFE_FILTERS = {
    h5z.FILTER_DEFLATE: "deflate",
    h5z.FILTER_SHUFFLE: "shuffle",
    h5z.FILTER_FLETCHER32: "fletcher32",
    h5z.FILTER_SCALEOFFSET: "scaleoffset",
    h5z.FILTER_NBIT: "nbit",
    h5z.FILTER_LZF: "lzf",
}
LAYOUT_NAMES = {
    h5d.COMPACT: "compact",
    h5d.CONTIGUOUS: "contiguous",
    h5d.CHUNKED: "chunked",
    h5d.VIRTUAL: "virtual",
}
LINK_NAMES = {h5l.TYPE_HARD: "hard", h5l.TYPE_SOFT: "soft", h5l.TYPE_EXTERNAL: "external"}

MAX_DATASET_BYTES = 16 * 1024**3
MAX_CHUNK_BYTES = 256 * 1024**2
MAX_RATIO = 200  # declared bytes / stored bytes of a chunked dataset (compression ratio)
MAX_OBJECTS = 10_000


class UnsafeHDF5Error(ValueError):
    """The file uses a feature the platform refuses; the message names the object."""


@dataclass(frozen=True)
class DatasetFacts:
    """What the audit learnt of one dataset: ``path`` from the root, declared ``shape``,
    ``declared_bytes`` (shape x item size; variable-length items count their handle only),
    ``stored_bytes`` in the file and the ``layout`` name."""

    path: str
    shape: tuple[int, ...]
    declared_bytes: int
    stored_bytes: int
    layout: str


def _refuse(path: str, problem: str) -> UnsafeHDF5Error:
    return UnsafeHDF5Error(f"HDF5 object '{path}': {problem}")


def _dataset_facts(
    dataset: h5d.DatasetID,
    path: str,
    file_size: int,
    max_dataset_bytes: int,
    max_chunk_bytes: int,
    max_ratio: float,
) -> DatasetFacts:
    plist = dataset.get_create_plist()
    layout = plist.get_layout()
    layout_name = LAYOUT_NAMES.get(layout, f"layout {layout}")
    if layout == h5d.VIRTUAL:
        raise _refuse(path, "virtual datasets (data mapped from other files) are refused")
    if layout not in (h5d.CONTIGUOUS, h5d.CHUNKED):
        raise _refuse(path, f"{layout_name} storage is refused (contiguous or chunked only)")
    if plist.get_external_count() != 0:
        raise _refuse(path, "external raw storage (data kept in other files) is refused")
    space = dataset.get_space()
    if space.get_simple_extent_type() not in (h5py.h5s.SIMPLE, h5py.h5s.SCALAR):
        raise _refuse(path, "null dataspace")
    shape = tuple(int(n) for n in space.shape)
    item = int(dataset.get_type().get_size())
    declared = item * math.prod(shape)
    if declared > max_dataset_bytes:
        raise _refuse(
            path,
            f"declares {declared / 1024**3:.1f} GiB {shape}, more than the limit of "
            f"{max_dataset_bytes / 1024**3:.1f} GiB",
        )
    for index in range(plist.get_nfilters()):
        code = plist.get_filter(index)[0]
        if code not in SAFE_FILTERS:
            raise _refuse(path, f"HDF5 filter {code} is not a built-in filter; refused")
    stored = int(dataset.get_storage_size())
    if stored > file_size:
        raise _refuse(path, f"claims {stored} stored bytes in a file of {file_size}")
    if declared == 0:
        return DatasetFacts(path, shape, 0, stored, layout_name)
    if layout == h5d.CONTIGUOUS:
        offset = dataset.get_offset()
        if offset is None or stored < declared:
            raise _refuse(path, f"declares {declared} bytes {shape} but stores {stored}")
        if offset + declared > file_size:
            raise _refuse(path, "its data lies beyond the end of the file (truncated?)")
        return DatasetFacts(path, shape, declared, stored, layout_name)
    chunk = tuple(int(n) for n in plist.get_chunk())
    if item * math.prod(chunk) > max_chunk_bytes:
        raise _refuse(path, f"chunks of {chunk} exceed {max_chunk_bytes // 1024**2} MiB")
    expected = math.prod(math.ceil(n / c) for n, c in zip(shape, chunk, strict=True))
    present = int(dataset.get_num_chunks())
    if present != expected:
        raise _refuse(
            path,
            f"declares {shape} in {expected} chunks but the file holds {present} of them",
        )
    if declared > max_ratio * max(stored, 1):
        raise _refuse(
            path,
            f"declares {declared} bytes from {stored} stored (more than {max_ratio}:1), "
            "refused as a possible decompression bomb",
        )
    return DatasetFacts(path, shape, declared, stored, layout_name)


def audit_hdf5(
    h5: h5py.File,
    file_size: int,
    max_dataset_bytes: int = MAX_DATASET_BYTES,
    max_chunk_bytes: int = MAX_CHUNK_BYTES,
    max_ratio: float = MAX_RATIO,
    max_objects: int = MAX_OBJECTS,
) -> dict[str, DatasetFacts]:
    """Walk every link of ``h5`` (opened read-only, ``file_size`` bytes on disk) and refuse
    what could read outside the file, load code or allocate more than it stores.

    Returns the facts of every dataset by path (``"kspace"``, ``"dataset/data"``).
    Raises :class:`UnsafeHDF5Error`. Nothing is followed but hard links, and no dataset
    value is read, so calling this first makes the following h5py reads safe.
    """
    facts: dict[str, DatasetFacts] = {}
    seen: set[int] = set()
    pending: list[tuple[h5py.h5g.GroupID, str]] = [(h5.id, "")]
    count = 0
    while pending:
        group, prefix = pending.pop()
        names: list[bytes] = []
        group.links.iterate(names.append)  # append returns None: iteration continues
        for raw_name in names:
            count += 1
            if count > max_objects:
                raise UnsafeHDF5Error(f"more than {max_objects} HDF5 objects; refused")
            name = raw_name.decode("utf-8", errors="replace")
            path = f"{prefix}{name}"
            link_type = group.links.get_info(raw_name).type
            if link_type != h5l.TYPE_HARD:
                kind = LINK_NAMES.get(link_type, f"user-defined ({link_type})")
                raise _refuse(path, f"{kind} links are refused (hard links only)")
            obj = h5o.open(group, raw_name)
            address = h5o.get_info(obj).addr
            if address in seen:
                continue  # the same object under a second name (or a cycle of groups)
            seen.add(address)
            obj_type = h5i.get_type(obj)
            if obj_type == h5i.GROUP:
                pending.append((obj, f"{path}/"))
            elif obj_type == h5i.DATASET:
                facts[path] = _dataset_facts(
                    obj, path, file_size, max_dataset_bytes, max_chunk_bytes, max_ratio
                )
            elif obj_type != h5i.DATATYPE:
                raise _refuse(path, f"unexpected object type {obj_type}")
    return facts


def first_non_finite_slice(
    dataset: h5py.Dataset, max_block_bytes: int = MAX_CHUNK_BYTES
) -> int | None:
    """Index of the first slice (along axis 0) of ``dataset`` that holds NaN or infinity,
    ``None`` when every value is finite. Reads blocks of whole chunks along axis 0, never
    more than ``max_block_bytes`` at once (audit the file first)."""
    slice_bytes = dataset.dtype.itemsize * math.prod(dataset.shape[1:])
    if slice_bytes > max_block_bytes:
        raise UnsafeHDF5Error(
            f"HDF5 object '{dataset.name}': one slice is {slice_bytes} bytes, more than "
            f"the limit of {max_block_bytes}"
        )
    step = dataset.chunks[0] if dataset.chunks else 1
    if step * slice_bytes > max_block_bytes:
        step = 1
    for start in range(0, dataset.shape[0], step):
        block = dataset[start : start + step]
        finite = np.isfinite(block).reshape(len(block), -1).all(axis=1)
        if not finite.all():
            return start + int(np.argmin(finite))
    return None
