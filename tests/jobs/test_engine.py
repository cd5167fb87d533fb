"""The job engine on real fastMRI geometry: zero-padded phase-encode columns."""

from types import SimpleNamespace

import numpy as np
import torch

from mriplatform.jobs import engine
from recon_engine.io import make_ismrmrd_header, write_fastmri
from recon_engine.io.ismrmrd_header import acquired_window, parse_ismrmrd_header
from recon_engine.registry import get_method
from recon_engine.simulation import simulate_multicoil


def padded_fastmri_file(path, left=4, right=60):
    """A fully sampled 64-column k-space whose columns outside [left, right) are zero
    padding, with the encoding limits fastMRI's headers give for that layout."""
    image = torch.zeros(2, 64, 64)
    image[:, 16:48, 12:52] = 1.0
    kspace = simulate_multicoil(image, n_coils=4, snr=None, seed=0).kspace.clone()
    kspace[..., :left] = 0
    kspace[..., right:] = 0
    header = make_ismrmrd_header((64, 64), 4, 2)
    step1 = header.index("<kspace_encoding_step_1>")
    block_end = header.index("</kspace_encoding_step_1>", step1)
    block = header[step1:block_end]
    block = block.replace("<maximum>63</maximum>", f"<maximum>{right - left - 1}</maximum>")
    block = block.replace("<center>32</center>", f"<center>{32 - left}</center>")
    write_fastmri(path, kspace, header=header[:step1] + block + header[block_end:])
    return path


def protocol(pattern, acceleration, method="zero_filled"):
    return SimpleNamespace(
        name="p",
        method=method,
        mask_pattern=pattern,
        acceleration=acceleration,
        params=get_method(method).validate({}),
        sms_factor=1,
        mask_seed=0,
        center_fraction=0.25,
    )


def test_padding_columns_are_not_missing_lines(tmp_path):
    path = padded_fastmri_file(tmp_path / "raw.h5")
    from recon_engine.io.fastmri import read_fastmri

    info = parse_ismrmrd_header(read_fastmri(path).header)
    assert acquired_window(info, 64) == (4, 60)
    # As acquired: fully sampled, so metrics against the RSS reference exist.
    result = engine.reconstruct_series(path, protocol("as_acquired", 1.0))
    assert result.sampling["acquired_acceleration"] == 1.0
    assert result.metrics["nmse"] < 1e-10
    # Retrospective undersampling is allowed and never "samples" a padding column.
    result = engine.reconstruct_series(path, protocol("equispaced", 2.0))
    assert result.sampling["acquired_columns"] == [4, 60]
    assert np.isfinite(result.metrics["psnr"])
