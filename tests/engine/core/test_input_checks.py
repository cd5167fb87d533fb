"""Bad inputs named for what they are (issue 17): single-coil data for parallel imaging,
all-zero k-space, accelerations the matrix cannot hold."""

from __future__ import annotations

import pytest
import torch

from recon_engine.cli import main
from recon_engine.grappa import grappa_kspace
from recon_engine.io import write_fastmri
from recon_engine.pipeline import reconstruct_kspace
from recon_engine.registry import ParameterError, ReconError
from recon_engine.sampling import make_mask


@pytest.fixture(scope="module")
def undersampled(sim8):
    mask = make_mask("uniform", (96, 96), 2, acs_lines=24)
    return sim8.kspace[:1] * mask.mask, mask.mask


@pytest.mark.parametrize("method", ["grappa", "sense", "cg_sense"])
def test_single_coil_parallel_imaging_is_refused_as_such(undersampled, method):
    kspace, mask = undersampled
    with pytest.raises(ReconError, match="needs multi-coil k-space.*1 coil"):
        reconstruct_kspace(kspace[:, :1], mask, method, device="cpu", progress=False)


def test_single_coil_still_works_where_it_makes_sense(undersampled):
    kspace, mask = undersampled
    out = reconstruct_kspace(kspace[:, :1], mask, "zero_filled", device="cpu", progress=False)
    assert out.volume.shape == (1, 96, 96) and out.volume.max() > 0


@pytest.mark.parametrize("method", ["grappa", "sense", "zero_filled"])
def test_all_zero_kspace_is_refused_as_such(undersampled, method):
    kspace, mask = undersampled
    with pytest.raises(ReconError, match="all zero"):
        reconstruct_kspace(torch.zeros_like(kspace), mask, method, device="cpu", progress=False)


def test_grappa_library_names_the_problem(undersampled):
    kspace, mask = undersampled
    with pytest.raises(ReconError, match="1 coil"):
        grappa_kspace(kspace[:, :1], mask)
    with pytest.raises(ReconError, match="all zero"):
        grappa_kspace(torch.zeros_like(kspace), mask)


@pytest.mark.parametrize(
    "pattern,shape,r,kw",
    [
        ("uniform", (128, 128), 64, {"acs_lines": 10}),
        ("uniform", (128, 128), 64, {"acs_lines": 0}),
        ("variable_density", (128, 128), 12, {"acs_lines": 10}),  # 10.7 lines, 10 ACS
        ("equispaced", (128, 128), 16, {"center_fraction": 0.08}),  # 8 lines, 10 ACS
        ("poisson", (32, 32), 400, {"calib": (4, 4)}),
    ],
)
def test_infeasible_acceleration_is_refused(pattern, shape, r, kw):
    with pytest.raises(ParameterError, match="not feasible|impossible"):
        make_mask(pattern, shape, r, **kw)


def test_feasible_accelerations_still_work():
    assert make_mask("uniform", (128, 128), 4, acs_lines=10).effective_acceleration > 2.5
    assert make_mask("equispaced", (128, 128), 8, center_fraction=0.04).mask.sum() >= 16
    assert make_mask("random", (320, 320), 8, center_fraction=0.04).mask.sum() > 30


def test_cli_undersample_refuses_r64_on_128_lines(tmp_path, capsys):
    full = tmp_path / "full.h5"
    write_fastmri(full, torch.ones(1, 2, 128, 128, dtype=torch.complex64))
    args = ["undersample", str(full), str(tmp_path / "us.h5"), "--pattern", "uniform"]
    assert main([*args, "--acceleration", "64"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: R=64 is not feasible on 128") and len(err.splitlines()) == 1
    assert not (tmp_path / "us.h5").exists()
