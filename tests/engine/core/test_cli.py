"""``python -m recon_engine`` end to end (subprocess) and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from recon_engine.cli import main
from recon_engine.io import read_fastmri, read_reconstruction
from recon_engine.pipeline import evaluate_file

ROOT = Path(__file__).resolve().parents[3]
BRAIN = ROOT / "data" / "mri" / "colin27_t1_1mm.nii.gz"


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), RECON_DEVICE="cpu")
    return subprocess.run(
        [sys.executable, "-m", "recon_engine", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


def ok(*args) -> subprocess.CompletedProcess:
    res = cli(*args)
    assert res.returncode == 0, res.stderr
    return res


def bad(*args, capsys) -> str:
    """Run the CLI in-process (fast): exit status 2, no traceback, the error on one line."""
    try:
        status = main([str(a) for a in args])
    except SystemExit as exc:  # argparse usage errors
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith(("error:", "python -m recon_engine")), err
    return last


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def full(workdir) -> Path:
    out = workdir / "full.h5"
    ok(
        "simulate",
        BRAIN,
        out,
        "--coils",
        "4",
        "--snr",
        "25",
        "--slices",
        "3",
        "--matrix",
        "64",
        "48",
        "--seed",
        "1",
    )
    return out


def test_simulate_writes_fully_sampled_fastmri_file(full):
    data = read_fastmri(full)
    assert data.kspace.shape == (3, 4, 64, 48) and data.mask is None
    assert data.reconstruction_rss.shape == (3, 64, 48)
    assert data.attrs["max"] == pytest.approx(float(data.reconstruction_rss.max()))
    sim = json.loads(data.attrs["simulation"])
    assert sim["snr"] == 25 and sim["coils"] == 4
    assert "<encoding>" in data.header and data.attrs["patient_id"]


def test_simulate_undersample_reconstruct_evaluate(full, workdir):
    us = workdir / "us.h5"
    res = ok(
        "undersample",
        full,
        us,
        "--pattern",
        "equispaced",
        "--acceleration",
        "4",
        "--center-fraction",
        "0.125",
        "--seed",
        "0",
    )
    assert "equispaced" in res.stdout
    with h5py.File(us) as hf:
        assert hf["mask"].shape == (48,)
        assert hf.attrs["acceleration"] == 4
        mask = hf["mask"][()]
        k = hf["kspace"][()]
    assert np.all(k[..., mask == 0] == 0) and np.all(k[..., mask == 1] != 0)

    zf = workdir / "zf.h5"
    res = ok(
        "reconstruct",
        us,
        zf,
        "--method",
        "zero_filled",
        "--quiet",
        "--json",
        "--dicom",
        workdir / "dcm",
    )
    summary = json.loads(res.stdout)
    assert summary["method"] == "zero_filled" and summary["shape"] == [3, 64, 48]
    assert len(list((workdir / "dcm").glob("*.dcm"))) == 3
    rec, attrs = read_reconstruction(zf)
    assert attrs["method"] == "zero_filled"

    res = ok("evaluate", zf, full, "--json")
    scores = json.loads(res.stdout)
    assert scores == pytest.approx(evaluate_file(zf, full))
    assert 0 < scores["ssim"] < 1 and scores["nmse"] > 0


def test_in_process_reconstruct_and_text_output(full, workdir, capsys):
    full_rec = workdir / "rss.h5"
    assert main(["reconstruct", str(full), str(full_rec), "--method", "rss", "--quiet"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["evaluate", str(full_rec), str(full), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["nmse"] < 1e-10 and scores["ssim"] == pytest.approx(1.0)
    assert main(["evaluate", str(full_rec), str(full)]) == 0
    text = capsys.readouterr().out
    assert "PSNR" in text and "SSIM" in text


def test_undersample_2d_pattern_stores_2d_mask(full, workdir):
    out = workdir / "caipi.h5"
    args = [
        "undersample",
        full,
        out,
        "--pattern",
        "caipirinha",
        "--acceleration",
        "4",
        "--center-fraction",
        "0.125",
    ]
    assert main([str(a) for a in args]) == 0
    with h5py.File(out) as hf:
        assert hf["mask"].shape == (64, 48)
        assert hf.attrs["pattern"] == "caipirinha"


def test_methods_listing(capsys):
    assert main(["methods", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    by_name = {m["name"]: m for m in listing}
    assert {"zero_filled", "rss"} <= set(by_name)
    assert by_name["zero_filled"]["family"] == "baseline"
    assert by_name["zero_filled"]["params"][0]["choices"] == ["rss", "sensitivities"]
    assert main(["methods"]) == 0
    assert "zero_filled  [baseline]" in capsys.readouterr().out


def test_bad_input_exits_2_with_one_line_in_a_subprocess(workdir):
    res = cli("reconstruct", workdir / "nope.h5", workdir / "x.h5", "--method", "zero_filled")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [f"error: {workdir / 'nope.h5'}: no such file"]


def test_bad_input_gives_one_line_errors(full, workdir, capsys):
    def err(*args):
        return bad(*args, capsys=capsys)

    assert "no such file" in err("simulate", workdir / "nope.nii.gz", workdir / "x.h5")
    assert "unknown method" in err("reconstruct", full, workdir / "x.h5", "--method", "magic")
    assert "combine" in err(
        "reconstruct", full, workdir / "x.h5", "--method", "zero_filled", "--param", "combine=max"
    )
    assert "key=value" in err(
        "reconstruct", full, workdir / "x.h5", "--method", "zero_filled", "--param", "combine"
    )
    assert "acceleration" in err("undersample", full, workdir / "x.h5", "--acceleration", "0.5")
    us = workdir / "us2.h5"
    assert (
        main(["undersample", str(full), str(us), "--pattern", "uniform", "--acceleration", "2"])
        == 0
    )
    assert "already undersampled" in err("undersample", us, workdir / "x.h5")
    assert "fully sampled" in err("reconstruct", us, workdir / "x.h5", "--method", "rss")
    truncated = workdir / "trunc.h5"
    truncated.write_bytes(full.read_bytes()[:5000])
    assert "trunc.h5" in err("reconstruct", truncated, workdir / "x.h5", "--method", "rss")
    with h5py.File(workdir / "nan.h5", "w") as hf:
        hf["kspace"] = np.full((1, 2, 8, 8), np.nan, np.complex64)
    assert "NaN" in err("reconstruct", workdir / "nan.h5", workdir / "x.h5", "--method", "rss")
    if not torch.cuda.is_available():
        assert "CUDA" in err(
            "reconstruct", full, workdir / "x.h5", "--method", "zero_filled", "--device", "cuda"
        )
    assert "required" in err("undersample", full)  # argparse: missing output


def test_simulate_with_rss_crop_and_dicom_input(workdir, capsys, brain_slices):
    from recon_engine.io import write_dicom_series

    write_dicom_series(workdir / "series", brain_slices.numpy() * 500, "T1")
    out = workdir / "crop.h5"
    args = [
        "simulate",
        workdir / "series",
        out,
        "--slices",
        "2",
        "--matrix",
        "40",
        "40",
        "--coils",
        "2",
        "--rss-crop",
        "32",
        "30",
        "--snr",
        "0",
    ]
    assert main([str(a) for a in args]) == 0
    data = read_fastmri(out)
    assert data.reconstruction_rss.shape == (2, 32, 30)
    assert json.loads(data.attrs["simulation"])["snr"] is None
    rec = workdir / "crop_rec.h5"
    assert main(["reconstruct", str(out), str(rec), "--method", "rss", "--quiet"]) == 0
    assert read_reconstruction(rec)[0].shape == (2, 32, 30)
    capsys.readouterr()
    assert "crop" in bad(
        "simulate",
        workdir / "series",
        workdir / "x.h5",
        "--slices",
        "2",
        "--matrix",
        "40",
        "40",
        "--rss-crop",
        "50",
        "30",
        capsys=capsys,
    )
