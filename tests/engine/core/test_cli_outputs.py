"""CLI reconstruction files keep the method's maps (with units) and unwritable outputs are
refused before anything is reconstructed (issue 17)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recon_engine import pipeline
from recon_engine.cli import main
from recon_engine.io import read_fastmri, read_maps, read_reconstruction
from recon_engine.pipeline import center_crop, reconstruct_kspace

ROOT = Path(__file__).resolve().parents[3]
BRAIN = ROOT / "data" / "mri" / "colin27_t1_1mm.nii.gz"


@pytest.fixture(scope="module")
def undersampled(tmp_path_factory) -> Path:
    """8-coil 64x48 brain slices, uniform R=2 with 12 ACS lines, RSS reference cropped to
    56x40 (so maps must be cropped like the image)."""
    work = tmp_path_factory.mktemp("cli_maps")
    full, us = work / "full.h5", work / "us.h5"
    common = ["--slices", "2", "--matrix", "64", "48", "--coils", "8", "--seed", "3"]
    assert main(["simulate", str(BRAIN), str(full), *common, "--rss-crop", "56", "40"]) == 0
    args = ["undersample", str(full), str(us), "--pattern", "uniform", "--acceleration", "2"]
    assert main([*args, "--center-fraction", "0.25"]) == 0
    return us


def test_sense_g_factor_map_is_written_with_units(undersampled, tmp_path, capsys):
    out = tmp_path / "sense.h5"
    assert main(["reconstruct", str(undersampled), str(out), "--method", "sense", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["maps"] == {"g_factor": "1"}
    image, _ = read_reconstruction(out)
    maps = read_maps(out)
    assert set(maps) == {"g_factor"}
    g, attrs = maps["g_factor"]
    assert attrs["units"] == "1" and "dimensionless" in attrs["description"]
    assert g.shape == image.shape == (2, 56, 40)
    # the same numbers the engine returns, cropped like the image (fastMRI convention)
    raw = read_fastmri(undersampled)
    direct = reconstruct_kspace(raw.kspace, raw.mask, "sense", device="cpu", progress=False)
    np.testing.assert_allclose(g, center_crop(direct.maps["g_factor"], (56, 40)), rtol=1e-5)
    # SENSE at R=2: no noise gain below 1 where there is coil signal (Pruessmann 1999)
    covered = g > 0
    assert covered.mean() > 0.5 and g[covered].min() >= 1 - 1e-3


def test_uncertainty_and_noise_maps_are_written_with_units(undersampled, tmp_path):
    out = tmp_path / "dn.h5"
    args = ["reconstruct", str(undersampled), str(out), "--method", "sense_dl_denoise"]
    assert main([*args, "--quiet", "--param", "mc_samples=4"]) == 0
    maps = read_maps(out)
    assert {"g_factor", "noise_sd", "uncertainty"} <= set(maps)
    for name in ("noise_sd", "uncertainty"):
        values, attrs = maps[name]
        assert attrs["units"] == "image units" and "same units" in attrs["description"]
        assert values.shape == (2, 56, 40) and np.isfinite(values).all()
        assert values.min() >= 0 and values.max() > 0


def test_method_without_maps_writes_none(undersampled, tmp_path):
    out = tmp_path / "zf.h5"
    assert main(["reconstruct", str(undersampled), str(out), "--method", "zero_filled"]) == 0
    assert read_maps(out) == {}


def test_unwritable_outputs_are_refused_before_reconstructing(
    undersampled, tmp_path, capsys, monkeypatch
):
    def must_not_run(*args, **kwargs):
        raise AssertionError("reconstructed before checking the output path")

    monkeypatch.setattr(pipeline, "reconstruct_kspace", must_not_run)
    cases = [
        ([str(tmp_path / "missing" / "out.h5")], "cannot write the output file"),
        ([str(tmp_path)], "is a directory"),
    ]
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases.append(([str(tmp_path / "ok.h5"), "--dicom", str(a_file)], "not a directory"))
    cases.append(([str(tmp_path / "ok.h5"), "--dicom", str(a_file / "sub")], "DICOM"))
    for extra, message in cases:
        args = ["reconstruct", str(undersampled), *extra, "--method", "zero_filled"]
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and message in err, err
        assert len(err.splitlines()) == 1
    assert not (tmp_path / "ok.h5").exists()
