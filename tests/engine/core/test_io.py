"""File formats: fastMRI HDF5 layout, ISMRMRD raw + header, DICOM series, NIfTI; bad files."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import h5py
import ismrmrd
import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from recon_engine.io import (
    make_ismrmrd_header,
    parse_ismrmrd_header,
    read_dicom_series,
    read_fastmri,
    read_ismrmrd,
    read_nifti,
    read_reconstruction,
    write_dicom_series,
    write_fastmri,
    write_ismrmrd,
    write_reconstruction,
)
from recon_engine.registry import ReconError
from recon_engine.sampling import caipirinha_mask, equispaced_mask, uniform_mask

NS = {"m": "http://www.ismrm.org/ISMRMRD"}


def _kspace(s=2, c=3, h=16, w=12, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(s, c, h, w, generator=g), torch.randn(s, c, h, w, generator=g))


# --------------------------------------------------------------------------- fastMRI


def test_fastmri_layout_matches_fastmri_files(tmp_path):
    k = _kspace()
    mask = equispaced_mask((16, 12), 2, 0.25, seed=0)
    rss = np.random.default_rng(0).random((2, 10, 10)).astype(np.float32)
    header = make_ismrmrd_header((16, 12), 3, 2, recon_matrix=(10, 10))
    path = write_fastmri(
        tmp_path / "f.h5",
        k * mask.mask,
        mask.mask,
        header,
        rss,
        attrs={"acquisition": "AXT1", "patient_id": "abc", "acceleration": 2},
    )
    with h5py.File(path) as hf:
        assert hf["kspace"].dtype == np.complex64 and hf["kspace"].shape == (2, 3, 16, 12)
        assert hf["mask"].shape == (12,)
        assert hf["reconstruction_rss"].dtype == np.float32
        assert hf.attrs["max"] == pytest.approx(rss.max())
        assert hf.attrs["norm"] == pytest.approx(np.linalg.norm(rss))
        assert hf.attrs["acquisition"] == "AXT1"
        # fastMRI's SliceDataset parses the header with etree and the ISMRMRD namespace
        root = ET.fromstring(hf["ismrmrd_header"][()])
    enc = root.find("m:encoding/m:encodedSpace/m:matrixSize", NS)
    assert (int(enc.find("m:x", NS).text), int(enc.find("m:y", NS).text)) == (16, 12)
    rec = root.find("m:encoding/m:reconSpace/m:matrixSize", NS)
    assert int(rec.find("m:x", NS).text) == 10
    lim = root.find("m:encoding/m:encodingLimits/m:kspace_encoding_step_1", NS)
    assert int(lim.find("m:center", NS).text) == 6 and int(lim.find("m:maximum", NS).text) == 11

    data = read_fastmri(path)
    torch.testing.assert_close(data.kspace, k * mask.mask)
    torch.testing.assert_close(data.mask, mask.mask)
    np.testing.assert_array_equal(data.reconstruction_rss, rss)
    assert data.attrs["patient_id"] == "abc" and data.attrs["acceleration"] == 2
    assert parse_ismrmrd_header(data.header).recon_matrix == (10, 10, 1)


def test_fastmri_2d_mask_and_singlecoil(tmp_path):
    m = caipirinha_mask((16, 12), 2, 2, 1, calib=(4, 4))
    path = write_fastmri(tmp_path / "f.h5", _kspace() * m.mask, m.mask)
    with h5py.File(path) as hf:
        assert hf["mask"].shape == (16, 12)
    torch.testing.assert_close(read_fastmri(path).mask, m.mask)
    single = tmp_path / "single.h5"
    with h5py.File(single, "w") as hf:
        hf["kspace"] = _kspace()[:, 0].numpy()
    assert read_fastmri(single).kspace.shape == (2, 1, 16, 12)


def test_reconstruction_roundtrip(tmp_path):
    rec = np.random.default_rng(1).random((3, 8, 8)).astype(np.float32)
    path = write_reconstruction(tmp_path / "r.h5", rec, {"method": "x", "params": {"a": 1}})
    out, attrs = read_reconstruction(path)
    np.testing.assert_array_equal(out, rec)
    assert attrs["method"] == "x" and attrs["params"] == '{"a": 1}'
    with h5py.File(path) as hf:
        assert list(hf) == ["reconstruction"] and hf["reconstruction"].dtype == np.float32
    raw = write_fastmri(tmp_path / "raw.h5", _kspace(s=3, h=8, w=8), reconstruction_rss=rec)
    np.testing.assert_array_equal(read_reconstruction(raw)[0], rec)


def _write(path, **datasets):
    with h5py.File(path, "w") as hf:
        for k, v in datasets.items():
            hf[k] = v
    return path


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p.write_text("not hdf5"), "not a readable HDF5"),
        (lambda p: _write(p, other=np.zeros(3)), "no 'kspace'"),
        (lambda p: _write(p, kspace=np.zeros((4, 4), np.complex64)), "rank 2"),
        (lambda p: _write(p, kspace=np.zeros((1, 1, 2, 4, 4), np.complex64)), "rank 5"),
        (lambda p: _write(p, kspace=np.zeros((1, 2, 4, 4), np.float32)), "complex"),
        (lambda p: _write(p, kspace=np.full((1, 2, 4, 4), np.nan, np.complex64)), "NaN"),
        (
            lambda p: _write(p, kspace=np.zeros((1, 2, 4, 4), np.complex64), mask=np.ones(5)),
            "mask has 5 lines",
        ),
        (
            lambda p: _write(p, kspace=np.zeros((1, 2, 4, 4), np.complex64), mask=np.ones((3, 4))),
            "does not match",
        ),
        (
            lambda p: _write(p, kspace=np.zeros((1, 2, 4, 4), np.complex64), mask=np.full(4, 0.5)),
            "only 0 and 1",
        ),
        (
            lambda p: _write(
                p,
                kspace=np.zeros((2, 2, 4, 4), np.complex64),
                reconstruction_rss=np.zeros((3, 4, 4)),
            ),
            "one (H, W) image",
        ),
    ],
)
def test_bad_fastmri_files(tmp_path, make, message):
    path = tmp_path / "bad.h5"
    make(path)
    with pytest.raises(ReconError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_fastmri(path)


def test_truncated_file_is_a_clear_error(tmp_path):
    path = write_fastmri(tmp_path / "t.h5", _kspace(s=4, c=4, h=64, w=64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReconError, match="t.h5"):
        read_fastmri(path)
    with pytest.raises(ReconError, match="no such file"):
        read_fastmri(tmp_path / "missing.h5")


# --------------------------------------------------------------------------- ISMRMRD


def test_ismrmrd_header_roundtrip_is_schema_valid():
    xml = make_ismrmrd_header(
        (32, 24),
        8,
        5,
        fov_mm=(200, 180),
        slice_thickness_mm=3,
        acceleration=(3, 1),
        tr_ms=500,
        te_ms=12,
    )
    header = ismrmrd.xsd.CreateFromDocument(xml)  # the package's own schema parser
    assert header.encoding[0].trajectory.value == "cartesian"
    info = parse_ismrmrd_header(xml)
    assert info.encoded_matrix == (32, 24, 1)
    assert info.encoded_fov_mm == (200.0, 180.0, 3.0)
    assert info.acceleration == (3, 1) and info.n_slices == 5 and info.n_coils == 8
    assert info.center_line == 12 and info.tr_ms == 500 and info.te_ms == 12
    with pytest.raises(ReconError):
        parse_ismrmrd_header("<ismrmrdHeader><bogus/></ismrmrdHeader>")


def test_ismrmrd_roundtrip_with_acs_and_per_slice_masks(tmp_path):
    k = _kspace(s=2, c=4, h=16, w=20).to(torch.complex64)
    m = uniform_mask((16, 20), 3, acs_lines=6)
    path = write_ismrmrd(tmp_path / "raw.h5", k * m.mask, m.mask, m.acs_mask)
    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    n_lines = int(m.mask.sum())
    assert dset.number_of_acquisitions() == 2 * n_lines
    acq = dset.read_acquisition(n_lines)
    assert acq.idx.slice == 1 and acq.data.shape == (4, 16)
    np.testing.assert_array_equal(acq.data, k[1, :, :, acq.idx.kspace_encode_step_1].numpy())
    dset.close()
    data = read_ismrmrd(path)
    torch.testing.assert_close(data.kspace, k * m.mask)
    torch.testing.assert_close(data.mask, m.mask)
    torch.testing.assert_close(data.acs_mask, m.acs_mask)
    assert data.info.encoded_matrix == (16, 20, 1)

    per_slice = torch.stack([uniform_mask((16, 20), 2, 4, offset=o).mask[0] for o in (0, 1)])
    path2 = write_ismrmrd(tmp_path / "raw2.h5", k * per_slice, per_slice)
    data2 = read_ismrmrd(path2)
    assert data2.mask.shape == (2, 1, 1, 20)
    torch.testing.assert_close(data2.mask, per_slice)
    assert data2.acs_mask is None


def test_ismrmrd_reader_averages_and_skips_noise(tmp_path):
    """Written with the ismrmrd API directly: two averages of each line and a noise scan."""
    path = tmp_path / "avg.h5"
    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dset.write_xml_header(make_ismrmrd_header((8, 6), 2, 1))
    noise = ismrmrd.Acquisition.from_array(np.full((2, 8), 99, np.complex64))
    noise.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    dset.append_acquisition(noise)
    for avg in range(2):
        for ky in (0, 2, 3, 4):
            acq = ismrmrd.Acquisition.from_array(
                np.full((2, 8), ky + 1j * avg, np.complex64), center_sample=4
            )
            acq.idx.kspace_encode_step_1 = ky
            acq.idx.average = avg
            dset.append_acquisition(acq)
    dset.close()
    data = read_ismrmrd(path)
    np.testing.assert_array_equal(data.mask.numpy().ravel(), [1, 0, 1, 1, 1, 0])
    assert complex(data.kspace[0, 1, 3, 2]) == pytest.approx(2 + 0.5j)
    assert float(data.kspace[..., 1].abs().max()) == 0


def test_ismrmrd_bad_files(tmp_path):
    with pytest.raises(ReconError, match="not an ISMRMRD"):
        read_ismrmrd(write_fastmri(tmp_path / "f.h5", _kspace()))
    radial = make_ismrmrd_header((8, 8), 1).replace(">cartesian<", ">radial<")
    path = tmp_path / "radial.h5"
    write_ismrmrd(path, _kspace(s=1, c=1, h=8, w=8), header=radial)
    with pytest.raises(ReconError, match="Cartesian"):
        read_ismrmrd(path)


# --------------------------------------------------------------------------- DICOM


def test_dicom_roundtrip_scaling_uids_and_sorting(tmp_path):
    vol = np.random.default_rng(2).random((4, 12, 10)).astype(np.float32) * 37.5
    files = write_dicom_series(
        tmp_path / "s",
        vol,
        "ZF [zero_filled]",
        pixel_spacing=(0.8, 0.9),
        slice_thickness=3.0,
        derivation="recon",
    )
    assert len(files) == 4
    datasets = [pydicom.dcmread(f) for f in files]
    first = datasets[0]
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert list(first.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert first.BitsAllocated == 16 and first.pixel_array.dtype == np.uint16
    assert first.SeriesDescription == "ZF [zero_filled]"
    assert len({d.SOPInstanceUID for d in datasets}) == 4
    assert len({d.SeriesInstanceUID for d in datasets}) == 1
    slope = float(first.RescaleSlope)
    np.testing.assert_allclose(first.pixel_array * slope, vol[0], atol=slope / 2 + 1e-6)
    # shuffle file names so directory order disagrees with slice position
    for f in files:
        f.rename(f.with_name(f"z{99 - int(f.stem[3:])}.dcm"))
    (tmp_path / "s" / "notes.txt").write_text("not dicom")
    series = read_dicom_series(tmp_path / "s")
    np.testing.assert_allclose(series.volume, vol, atol=slope / 2 + 1e-6)
    assert series.spacing == pytest.approx((3.0, 0.8, 0.9))
    assert series.description == "ZF [zero_filled]"


def test_dicom_reader_applies_rescale_and_orders_by_position(tmp_path):
    vol = np.stack([np.full((4, 4), float(i + 1)) for i in range(3)])
    files = write_dicom_series(tmp_path, vol, "x", slice_spacing=2.0)
    # rewrite with an intercept and reversed positions: reading must undo both
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.RescaleIntercept = "-5"
        ds.ImagePositionPatient = [0.0, 0.0, float(10 - 2 * i)]
        ds.InstanceNumber = i + 1
        ds.save_as(f)
    series = read_dicom_series(tmp_path)
    means = series.volume.mean(axis=(1, 2))
    np.testing.assert_allclose(means, [3 - 5, 2 - 5, 1 - 5], atol=1e-3)
    assert series.spacing[0] == pytest.approx(2.0)


def test_dicom_bad_input(tmp_path):
    with pytest.raises(ReconError, match="no DICOM images"):
        read_dicom_series(tmp_path)
    write_dicom_series(tmp_path / "a", np.ones((2, 4, 4)), "a")
    for f in write_dicom_series(tmp_path / "b", np.ones((2, 4, 4)), "b"):
        f.rename(tmp_path / "a" / f"b_{f.name}")  # a second series in the same folder
    with pytest.raises(ReconError, match="2 series"):
        read_dicom_series(tmp_path / "a")
    with pytest.raises(ReconError, match="magnitude"):
        write_dicom_series(tmp_path / "c", -np.ones((1, 4, 4)), "neg")
    with pytest.raises(ReconError, match="NaN"):
        write_dicom_series(tmp_path / "c", np.full((1, 4, 4), np.nan), "nan")


# --------------------------------------------------------------------------- NIfTI


def test_nifti_volume_and_voxel_size(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    affine = np.diag([-0.5, 0.7, 2.0, 1.0])  # x flipped (LAS): canonical reorients to RAS
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "v.nii.gz")
    vol, zooms = read_nifti(tmp_path / "v.nii.gz")
    assert zooms == pytest.approx((0.5, 0.7, 2.0))
    np.testing.assert_array_equal(vol, data[::-1])
    raw, _ = read_nifti(tmp_path / "v.nii.gz", canonical=False)
    np.testing.assert_array_equal(raw, data)


def test_nifti_bad_input(tmp_path):
    with pytest.raises(ReconError, match="no such"):
        read_nifti(tmp_path / "missing.nii")
    (tmp_path / "bad.nii").write_bytes(b"\0" * 100)
    with pytest.raises(ReconError, match="not a readable NIfTI"):
        read_nifti(tmp_path / "bad.nii")
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2), np.float32), np.eye(4)), tmp_path / "4d.nii")
    with pytest.raises(ReconError, match="3D volume"):
        read_nifti(tmp_path / "4d.nii")


def test_image_geometry_uses_the_encoded_fov_like_fastmri_knee():
    """fastMRI knee: 640 x 368 k-space over an encoded FOV of 280 x 140 mm (readout 2x
    oversampled), recon FOV 140 x 140 mm on 320 x 320: pixels are 0.4375 mm, not half."""
    from recon_engine.io.ismrmrd_header import HeaderInfo, image_geometry

    info = HeaderInfo(
        encoded_matrix=(640, 368, 1),
        recon_matrix=(320, 320, 1),
        encoded_fov_mm=(280.0, 161.0, 4.5),
        recon_fov_mm=(140.0, 140.0, 4.5),
        **{k: v for k, v in _header_defaults().items()},
    )
    (row, col), thickness = image_geometry(info, (640, 368))
    assert row == pytest.approx(0.4375) and col == pytest.approx(161.0 / 368)
    assert thickness == 4.5


def _header_defaults() -> dict:
    import dataclasses

    from recon_engine.io.ismrmrd_header import HeaderInfo

    given = {"encoded_matrix", "recon_matrix", "encoded_fov_mm", "recon_fov_mm"}
    out = {}
    for f in dataclasses.fields(HeaderInfo):
        if f.name in given:
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = None
    return out
