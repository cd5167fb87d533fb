"""Demo cases: simulated multi-coil k-space from the MR volumes the project ships.

The volumes (``data/mri``, licences in ``data/README.md``) are real magnitude T1 images;
coils, phase and noise are simulated (8 birdcage coils, SNR 40). Each demo case goes
through the same validation and de-identification as an upload.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from mriplatform.cases.models import Anatomy, Case
from mriplatform.cases.services import create_case_with_series
from recon_engine.simulation import simulate_fastmri_file

DATA_DIR = Path(settings.BASE_DIR) / "data" / "mri"

# (subject code, volume, seed): two subjects with different anatomy.
DEMO_CASES = [
    ("DEMO-0001", "colin27_t1_1mm.nii.gz", 1),
    ("DEMO-0002", "mni152_2009a_t1_1mm.nii.gz", 2),
]


def create_demo_cases(institution, user, n_slices: int = 8, matrix=(256, 256)) -> list[Case]:
    """Create the demo cases that don't exist yet; returns all demo cases."""
    cases = []
    for code, volume, seed in DEMO_CASES:
        existing = Case.objects.filter(institution=institution, subject_code=code).first()
        if existing is not None:
            cases.append(existing)
            continue
        with tempfile.TemporaryDirectory(prefix="demo-case-") as tmp:
            out = Path(tmp) / "kspace.h5"
            simulate_fastmri_file(
                DATA_DIR / volume,
                out,
                n_slices=n_slices,
                matrix=matrix,
                n_coils=8,
                snr=40.0,
                spread=0.3,
                seed=seed,
            )
            upload = SimpleUploadedFile("kspace.h5", out.read_bytes())
        cases.append(
            create_case_with_series(
                {
                    "subject_code": code,
                    "anatomy": Anatomy.BRAIN,
                    "field_strength_t": 3.0,
                    "vendor": "Simulated",
                    "sequence": "T1-weighted 2D (simulated 8-coil k-space)",
                },
                institution,
                [upload],
                user,
                description="Fully sampled raw k-space (simulated)",
            )
        )
    return cases
