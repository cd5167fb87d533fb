"""HDF5 structure audit: files that would make h5py read outside themselves (external raw
storage, virtual datasets, soft and external links) or that declare far more data than they
store are refused before any value is read; ordinary fastMRI/ISMRMRD files pass.

The HDF5 features exercised are those of the HDF5 User's Guide, "Datasets" (storage
layouts, external storage: H5Pset_external) and "Virtual Dataset" (H5Pset_virtual), written
here with h5py's documented high-level API.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from recon_engine.io import read_fastmri, read_ismrmrd, write_fastmri
from recon_engine.io.hdf5_safety import UnsafeHDF5Error, audit_hdf5, first_non_finite_slice
from recon_engine.registry import ReconError


def audit(path):
    with h5py.File(path, "r") as h5:
        return audit_hdf5(h5, path.stat().st_size)


def kspace(shape=(3, 2, 8, 6), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.fixture
def secret(tmp_path):
    """A file outside the upload that a hostile HDF5 file tries to read."""
    path = tmp_path / "server_secret.txt"
    path.write_bytes(b"SERVER-SECRET-" * 8)
    return path


def test_plain_files_pass_with_their_facts(tmp_path):
    path = tmp_path / "ok.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("kspace", data=kspace(), chunks=(1, 2, 8, 6), compression="gzip")
        h5.create_dataset("mask", data=np.ones(6, np.float32))
        group = h5.create_group("dataset")
        group["again"] = h5["mask"]  # a second hard link to the same object is fine
    facts = audit(path)
    assert set(facts) == {"kspace", "mask"}
    assert facts["kspace"].layout == "chunked" and facts["kspace"].shape == (3, 2, 8, 6)
    assert facts["kspace"].declared_bytes == 3 * 2 * 8 * 6 * 8
    assert facts["mask"].layout == "contiguous" and facts["mask"].stored_bytes == 24


def test_external_raw_storage_refused(tmp_path, secret):
    path = tmp_path / "external.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("kspace", shape=(1, 1, 2, 2), dtype="c8", external=[(str(secret), 0, 32)])
    with pytest.raises(UnsafeHDF5Error, match="'kspace': external raw storage"):
        audit(path)
    with pytest.raises(ReconError, match="external raw storage"):
        read_fastmri(path)


def test_virtual_dataset_refused(tmp_path):
    other = tmp_path / "other_case.h5"
    with h5py.File(other, "w") as h5:
        h5["kspace"] = kspace()
    layout = h5py.VirtualLayout(shape=(3, 2, 8, 6), dtype="c8")
    layout[:] = h5py.VirtualSource(str(other), "kspace", shape=(3, 2, 8, 6))
    path = tmp_path / "virtual.h5"
    with h5py.File(path, "w") as h5:
        h5.create_virtual_dataset("kspace", layout)
    with pytest.raises(UnsafeHDF5Error, match="'kspace': virtual datasets"):
        audit(path)


@pytest.mark.parametrize(
    "link, kind",
    [
        (lambda other: h5py.ExternalLink(str(other), "kspace"), "external"),
        (lambda other: h5py.SoftLink("/real"), "soft"),
    ],
)
def test_soft_and_external_links_refused(tmp_path, link, kind):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["kspace"] = kspace()
    path = tmp_path / "linked.h5"
    with h5py.File(path, "w") as h5:
        h5.create_group("dataset")["real"] = kspace()
        h5["real"] = kspace()
        h5["dataset"]["kspace"] = link(other)
    with pytest.raises(UnsafeHDF5Error, match=f"'dataset/kspace': {kind} links are refused"):
        audit(path)


def test_compact_layout_refused(tmp_path):
    path = tmp_path / "compact.h5"
    with h5py.File(path, "w") as h5:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        space = h5py.h5s.create_simple((4,))
        h5py.h5d.create(h5.id, b"mask", h5py.h5t.NATIVE_FLOAT, space, dcpl=dcpl)
    with pytest.raises(UnsafeHDF5Error, match="'mask': compact storage is refused"):
        audit(path)


def test_declared_slices_without_data_refused(tmp_path):
    # A ~1.5 kB file that declares a million slices: no chunk is written.
    path = tmp_path / "million.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("kspace", shape=(1_000_000, 1, 16, 12), dtype="c8", chunks=(1, 1, 16, 12))
    assert path.stat().st_size < 4096
    with pytest.raises(UnsafeHDF5Error, match="in 1000000 chunks but the file holds 0"):
        audit(path)


def test_terabyte_declaration_refused_before_allocation(tmp_path):
    path = tmp_path / "tib.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("kspace", shape=(2, 64, 4096, 4096 * 64), dtype="c8", chunks=True)
    with pytest.raises(UnsafeHDF5Error, match="more than the limit"):
        audit(path)


def test_contiguous_data_beyond_end_of_file_refused(tmp_path):
    path = tmp_path / "truncated.h5"
    with h5py.File(path, "w") as h5:
        h5["kspace"] = kspace((4, 2, 32, 32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 4096])
    with pytest.raises((UnsafeHDF5Error, OSError)):
        audit(path)


def test_compression_bomb_refused(tmp_path):
    path = tmp_path / "zeros.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset(
            "kspace", data=np.zeros((64, 4, 64, 64), np.complex64), chunks=True, compression=9
        )
    with pytest.raises(UnsafeHDF5Error, match="decompression bomb"):
        audit(path)
    # The same array with a ratio limit it fits passes.
    with h5py.File(path, "r") as h5:
        assert audit_hdf5(h5, path.stat().st_size, max_ratio=1e9)["kspace"].shape[0] == 64


def test_first_non_finite_slice_reads_every_slice(tmp_path):
    data = kspace((7, 2, 8, 6))
    data[4, 1, 3, 2] = np.nan
    path = tmp_path / "nan.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("chunked", data=data, chunks=(3, 2, 8, 6))
        h5.create_dataset("contiguous", data=data)
        h5.create_dataset("finite", data=np.nan_to_num(data))
    with h5py.File(path, "r") as h5:
        assert first_non_finite_slice(h5["chunked"]) == 4
        assert first_non_finite_slice(h5["contiguous"]) == 4
        assert first_non_finite_slice(h5["finite"]) is None
        with pytest.raises(UnsafeHDF5Error, match="one slice is"):
            first_non_finite_slice(h5["finite"], max_block_bytes=100)


def test_engine_readers_still_read_their_own_files(tmp_path):
    import torch

    path = tmp_path / "engine.h5"
    write_fastmri(path, torch.from_numpy(kspace()))
    assert read_fastmri(path).kspace.shape == (3, 2, 8, 6)


def test_ismrmrd_reader_refuses_external_storage(tmp_path, secret):
    path = tmp_path / "raw.h5"
    with h5py.File(path, "w") as h5:
        group = h5.create_group("dataset")
        group["xml"] = np.bytes_(b"<ismrmrdHeader/>")
        group.create_dataset("data", shape=(4,), dtype="u1", external=[(str(secret), 0, 4)])
    with pytest.raises(ReconError, match="external raw storage"):
        read_ismrmrd(path)
