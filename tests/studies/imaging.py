"""Finished reconstructions with real stored DICOM instances, for tests that serve images
to readers (permission matrix, end-to-end browser test) without running the engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

ROOT = Path(__file__).resolve().parents[2]
T1 = ROOT / "data/mri/colin27_t1_1mm.nii.gz"


def _volume(n_slices: int, size: int) -> np.ndarray:
    from recon_engine.simulation import load_slices

    key = (n_slices, size)
    if key not in _volume.cache:
        _volume.cache[key] = np.abs(load_slices(T1, n_slices, size=(size, size)).numpy())
    return _volume.cache[key]


_volume.cache = {}


def imaged_reconstruction(raw_series, protocol, n_slices: int = 3, size: int = 48, noise=0.02):
    """A succeeded ReconJob of ``protocol`` on ``raw_series`` whose output Series holds
    ``n_slices`` MR DICOM instances (``size`` x ``size``, the T1 volume plus Gaussian noise
    of ``noise`` x max, seeded by the protocol pk) in the default storage."""
    import tempfile

    from mriplatform.cases.models import Instance, Series
    from recon_engine.io.dicom import write_dicom_series
    from tests.factories import ReconJobFactory

    volume = _volume(n_slices, size)
    rng = np.random.default_rng(protocol.pk)
    noisy = np.abs(volume + rng.normal(0, noise * volume.max(), volume.shape))
    output = Series.objects.create(
        case=raw_series.case,
        kind=Series.Kind.RECONSTRUCTION,
        description=f"{protocol.name} v{protocol.version}",
        n_slices=n_slices,
        matrix=[size, size],
    )
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_dicom_series(
            tmp, noisy, description=protocol.name, derivation=f"method={protocol.method}"
        )
        import pydicom

        for number, path in enumerate(paths, start=1):
            uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
            name = default_storage.save(
                f"tests/recon/{output.uuid}/{number:04d}.dcm", ContentFile(path.read_bytes())
            )
            Instance.objects.create(
                series=output, file=name, sop_instance_uid=uid, instance_number=number
            )
    return ReconJobFactory(input_series=raw_series, protocol=protocol, output_series=output)
