"""Builders of hostile uploads, one function per class of attack, shared by the hardening
tests and the fuzz suite. Every builder is deterministic for a given ``random.Random``.

DICOM inputs start from pydicom's ``MR_small.dcm`` (explicit VR little endian) and are
edited at the byte level where pydicom itself would refuse to write them; HDF5 inputs use
the storage features of the HDF5 User's Guide (external storage, virtual datasets, links).
"""

from __future__ import annotations

import functools
import io
import random
import struct
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from tests.cases import ismrmrd_header, random_kspace, write_fastmri, write_ismrmrd

Files = list[tuple[str, bytes]]

# ----------------------------------------------------------------------------- DICOM


def mr_dataset() -> pydicom.Dataset:
    return pydicom.dcmread(get_testdata_file("MR_small.dcm"))


def encode(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def mr_bytes(**changes) -> bytes:
    ds = mr_dataset()
    for key, value in changes.items():
        setattr(ds, key, value)
    return encode(ds)


def _element_start(data: bytes, tag: int) -> int:
    """Byte offset of the explicit-VR little-endian element ``tag`` in ``data``."""
    group, element = tag >> 16, tag & 0xFFFF
    offset = data.index(struct.pack("<HH", group, element), 132)
    return offset


def _replace_value(data: bytes, tag: int, value: bytes) -> bytes:
    """Replace the value of a short-VR (2-byte length) element, keeping its VR."""
    start = _element_start(data, tag)
    length = struct.unpack("<H", data[start + 6 : start + 8])[0]
    return data[: start + 6] + struct.pack("<H", len(value)) + value + data[start + 8 + length :]


def dicom_bit_flips(rng: random.Random) -> bytes:
    """1-4 random bit flips in the header of a valid MR instance (never in the pixels)."""
    data = bytearray(mr_bytes())
    pixels = data.index(b"\xe0\x7f\x10\x00")
    for _ in range(rng.randint(1, 4)):
        position = rng.randrange(132, pixels + 12)
        data[position] ^= 1 << rng.randrange(8)
    return bytes(data)


def dicom_unknown_vr(rng: random.Random) -> bytes:
    """An element whose VR is not a DICOM VR (pydicom: NotImplementedError on access)."""
    data = bytearray(mr_bytes())
    tag = rng.choice([0x00280030, 0x00180050, 0x00080070])
    start = _element_start(bytes(data), tag)
    data[start + 4 : start + 6] = rng.choice([b"FS", b"QQ", b"ZZ"])
    return bytes(data)


def dicom_wrong_length(rng: random.Random) -> bytes:
    """A US element whose length is not a multiple of 2 (pydicom: BytesLengthException)."""
    tag = rng.choice([0x00280010, 0x00280011, 0x00280100])
    return _replace_value(mr_bytes(), tag, bytes([rng.randrange(256) for _ in range(3)]))


def dicom_bad_integer_string(rng: random.Random) -> bytes:
    """An IS value that is not a number (``int('«')``)."""
    tag = rng.choice([0x00200013, 0x00200011, 0x00200012])
    text = rng.choice(["\xab ", "1A", "--", "\xbb\xab"])
    return _replace_value(mr_bytes(), tag, text.encode("latin-1").ljust(2, b" "))


def dicom_deep_sequence(depth: int) -> bytes:
    """Referenced Image Sequence items nested ``depth`` levels deep (undefined lengths)."""
    data = mr_bytes()
    ds = pydicom.dcmread(io.BytesIO(data))
    after = next(int(t) for t in ds.keys() if int(t) > 0x00081140)
    raw = ds.get_item(after)
    header = 12 if raw.VR in ("OB", "OW", "SQ", "UN", "UT", "UC", "UR", "OF", "OD", "OL") else 8
    start = raw.value_tell - header
    opening = struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    nested = (opening + item) * depth + closing * depth
    return data[:start] + nested + data[start:]


def dicom_bad_pixel_module(rng: random.Random) -> bytes:
    """Rows 0, BitsAllocated 0 or 12, or a corrupt PhotometricInterpretation."""
    change = rng.choice(
        [
            {"Rows": 0},
            {"Columns": 0},
            {"BitsAllocated": 0},
            {"BitsAllocated": 12},
            {"PhotometricInterpretation": "MONOCHROME9"},
            {"PhotometricInterpretation": "RGB"},
            {"PhotometricInterpretation": "\x01\x02"},
            {"SamplesPerPixel": 3},
        ]
    )
    return mr_bytes(**change)


def dicom_garbage_jpeg(rng: random.Random) -> bytes:
    """JPEG baseline transfer syntax with random bytes as the compressed frame."""
    ds = mr_dataset()
    frame = b"\xff\xd8" + bytes(rng.randrange(256) for _ in range(rng.randint(20, 400)))
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    return encode(ds)


# ------------------------------------------------------------------------------- zip


def zipped(members: Files, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members:
            archive.writestr(f"DICOM/{name}", data)
    return buffer.getvalue()


def zip_of_zeros(count: int = 10, size: int = 1024**2) -> bytes:
    """``count`` members of ``size`` zero bytes each (about 1000:1 each)."""
    return zipped([(f"IM{i:04d}.dcm", bytes(size)) for i in range(count)])


def zip_corrupt_deflate(rng: random.Random) -> bytes:
    """A zip of a valid instance whose deflate stream has random bytes overwritten."""
    data = bytearray(zipped([("IM0001.dcm", mr_bytes())]))
    name_end = data.index(b"IM0001.dcm") + len("IM0001.dcm")
    for _ in range(rng.randint(4, 32)):
        data[rng.randrange(name_end + 10, name_end + 400)] = rng.randrange(256)
    return bytes(data)


def zip_negative_offset() -> bytes:
    """End-of-central-directory record claiming the directory starts after itself, so
    zipfile computes a negative member offset ("negative seek value")."""
    data = bytearray(zipped([("IM0001.dcm", mr_bytes())]))
    end = data.rindex(b"PK\x05\x06")
    offset = struct.unpack("<I", data[end + 16 : end + 20])[0]
    data[end + 16 : end + 20] = struct.pack("<I", offset + 100_000)
    return bytes(data)


# ------------------------------------------------------------------------------ HDF5


def h5_bytes(build) -> bytes:
    """Run ``build(h5)`` on a new in-memory HDF5 file and return its bytes."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        build(h5)
    return buffer.getvalue()


def fastmri_bytes(seed: int = 0, shape=(3, 2, 16, 12)) -> bytes:
    buffer = io.BytesIO()
    write_fastmri(buffer, shape=shape, seed=seed)
    return buffer.getvalue()


def _header(h5: h5py.File, shape=(3, 2, 16, 12)) -> None:
    h5.create_dataset("ismrmrd_header", data=np.bytes_(ismrmrd_header(shape[-2:], *shape[:2])))


def h5_external_storage(target: str = "/etc/hostname") -> bytes:
    def build(h5):
        h5.create_dataset("kspace", shape=(1, 1, 2, 2), dtype="c8", external=[(target, 0, 32)])
        _header(h5, (1, 1, 2, 2))

    return h5_bytes(build)


def h5_virtual(target: str) -> bytes:
    """A k-space that maps ``target``'s ``kspace`` (another case's stored file)."""
    shape = (3, 2, 16, 12)
    layout = h5py.VirtualLayout(shape=shape, dtype="c8")
    layout[:] = h5py.VirtualSource(target, "kspace", shape=shape)

    def build(h5):
        h5.create_virtual_dataset("kspace", layout)
        _header(h5, shape)

    return h5_bytes(build)


def h5_external_link(target: str) -> bytes:
    def build(h5):
        h5["kspace"] = h5py.ExternalLink(target, "kspace")

    return h5_bytes(build)


def h5_soft_link() -> bytes:
    def build(h5):
        h5["hidden"] = random_kspace((3, 2, 16, 12))
        h5["kspace"] = h5py.SoftLink("/hidden")

    return h5_bytes(build)


def h5_million_slices() -> bytes:
    """About 1.4 kB declaring a million slices (no chunk written)."""
    return h5_bytes(
        lambda h5: h5.create_dataset(
            "kspace", shape=(1_000_000, 1, 16, 12), dtype="c8", chunks=(1, 1, 16, 12)
        )
    )


def h5_huge_slice(rng: random.Random) -> bytes:
    """A contiguous k-space declaring terabytes per slice."""
    side = rng.choice([2**18, 2**19, 2**20])
    return h5_bytes(lambda h5: h5.create_dataset("kspace", shape=(2, 4, side, side), dtype="c8"))


def h5_nan_slice(rng: random.Random, slices: int = 5) -> bytes:
    """A fastMRI file whose NaN or infinity is in a middle slice only."""
    kspace = random_kspace((slices, 2, 16, 12), rng.randrange(1000))
    kspace[rng.randrange(1, slices - 1), rng.randrange(2), rng.randrange(16), 3] = rng.choice(
        [np.nan, np.inf, -np.inf]
    )

    def build(h5):
        h5.create_dataset("kspace", data=kspace, chunks=(1, 2, 16, 12))
        _header(h5, kspace.shape)

    return h5_bytes(build)


def h5_ismrmrd_grid_bomb() -> bytes:
    """A small ISMRMRD file whose header declares an encoded matrix of 2**30 lines."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "raw.h5"
        write_ismrmrd(path, slices=1, coils=2, samples=8, width=8)
        with h5py.File(path, "r+") as h5:
            xml = h5["dataset/xml"][0]
            xml = xml.decode() if isinstance(xml, bytes) else str(xml)
            xml = xml.replace("<y>8</y>", f"<y>{2**30}</y>", 1).replace(
                "<center>4</center>", f"<center>{2**29}</center>", 1
            )
            del h5["dataset/xml"]
            h5["dataset"].create_dataset("xml", data=np.array([xml], dtype=h5py.string_dtype()))
        return path.read_bytes()


@functools.cache
def ismrmrd_bytes() -> bytes:
    """A valid two-slice ISMRMRD file (written once by the ``ismrmrd`` package)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "raw.h5"
        write_ismrmrd(path, slices=2, coils=2, samples=8, width=8)
        return path.read_bytes()


def h5_ismrmrd_nan(rng: random.Random) -> bytes:
    """An ISMRMRD file with NaN or infinity in the samples of one imaging readout."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "raw.h5"
        write_ismrmrd(path, slices=2, coils=2, samples=8, width=8)
        with h5py.File(path, "r+") as h5:
            table = h5["dataset/data"]
            index = rng.randrange(1, table.shape[0])  # row 0 is the noise readout
            row = table[index]
            row["data"][rng.randrange(row["data"].size)] = rng.choice([np.nan, np.inf])
            table[index] = row
        return path.read_bytes()


def h5_bad_companion(rng: random.Random) -> bytes:
    """A valid k-space beside a mask or reference image of the wrong type or shape."""
    kspace = random_kspace((3, 2, 16, 12), rng.randrange(1000))
    choice = rng.randrange(5)

    def build(h5):
        h5["kspace"] = kspace
        if choice == 0:
            h5.create_dataset("mask", data=np.array([b"1"] * 12))
        elif choice == 1:
            h5.create_dataset("mask", data=np.full(12, np.nan, np.float32))
        elif choice == 2:
            refs = np.array([h5["kspace"].ref] * 3, dtype=h5py.ref_dtype)
            h5.create_dataset("reconstruction_rss", data=refs)
        elif choice == 3:
            h5.create_dataset("reconstruction_rss", data=np.zeros((2, 8, 8), np.float32))
        else:
            h5.create_dataset("reconstruction_esc", data=np.array(["x"] * 3, dtype="O"))

    return h5_bytes(build)
