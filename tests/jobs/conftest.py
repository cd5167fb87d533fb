"""Fixtures of the job tests: raw files (fully sampled and already undersampled)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def undersampled_raw_file(raw_case_file, tmp_path_factory):
    """``raw_case_file`` as an R=4 equispaced acquisition: masked k-space and its mask."""
    from recon_engine.io.fastmri import read_fastmri, write_fastmri
    from recon_engine.sampling import make_mask

    raw = read_fastmri(raw_case_file)
    made = make_mask("equispaced", tuple(raw.kspace.shape[-2:]), 4, center_fraction=0.08)
    out = tmp_path_factory.mktemp("raw") / "undersampled.h5"
    write_fastmri(out, raw.kspace * made.mask, mask=made.mask, header=raw.header)
    return out
