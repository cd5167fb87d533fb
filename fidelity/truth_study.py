"""Known-truth reader studies: cases made from lesion-present/absent twins.

Each case is a fully sampled 8-coil acquisition of the shipped Colin27 T1 slice, with a
synthetic finding inserted before coil weighting in a seeded, balanced half of the cases
(:mod:`recon_engine.fidelity.lesions`). Cases are stored through the normal upload path
(validation, de-identification), their subject codes say nothing about the truth, and the
inserted truth goes in as each case's reference standard (source "import", note "inserted
synthetic finding"), so the study's existing MRMC/ROC analysis uses it directly: no
reference panel. The study is a draft with one arm per protocol and a single finding
question (present/absent with a 1-5 confidence: the ROC rating); the coordinator adds
readers and opens it once the reconstructions are done, as for any study.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from fidelity.services import FidelityInputError
from mriplatform.audit.services import record
from mriplatform.cases.models import Anatomy
from mriplatform.cases.services import create_case_with_series
from mriplatform.jobs.services import submit_jobs
from studies.models import Arm, Question, ReferenceStandard, Study, StudyCase

QUESTION_KEY = "inserted_finding"
TRUTH_NOTE = "inserted synthetic finding (fidelity lab): the truth is known by construction"


def _twin_file(
    path: Path, image: np.ndarray, lesion, pixel_mm: float, present: bool, snr: float, seed: int
) -> None:
    from recon_engine.fidelity.lesions import lesion_twins
    from recon_engine.io.fastmri import write_fastmri

    twins = lesion_twins(image, lesion, pixel_mm, n_realisations=1, snr=snr, seed=seed)
    kspace = twins.kspace_present if present else twins.kspace_absent
    truth_image = (twins.image_present if present else twins.image_absent).abs()
    write_fastmri(path, kspace, reconstruction_rss=truth_image[None].numpy())


@transaction.atomic
def create_known_truth_study(
    coordinator,
    institution,
    title: str,
    protocols,
    n_cases: int = 8,
    lesion_kind: str = "focus",
    size_mm: float = 3.0,
    contrast: float = -0.4,
    matrix: int = 128,
    pixel_mm: float = 1.0,
    snr: float = 20.0,
    seed: int = 0,
) -> Study:
    """A draft study over ``n_cases`` twin cases (half with the finding), one arm per
    protocol, reconstruction jobs queued; raises FidelityInputError for bad input."""
    from recon_engine.fidelity.cli import DEFAULT_VOLUME, background_slice
    from recon_engine.fidelity.detectability import brightest_tissue_center
    from recon_engine.fidelity.lesions import Lesion
    from recon_engine.registry import ParameterError

    protocols = list(protocols)
    if not protocols:
        raise FidelityInputError("choose at least one protocol (one arm each)")
    if not 2 <= int(n_cases) <= 200:
        raise FidelityInputError(f"a known-truth study needs 2 to 200 cases, got {n_cases}")
    image, pixel_mm = background_slice(DEFAULT_VOLUME, int(matrix), pixel_mm=pixel_mm)
    lesion = Lesion(lesion_kind, float(size_mm), float(contrast), brightest_tissue_center(image))
    try:
        lesion.validate(image.shape, pixel_mm)
    except ParameterError as exc:
        raise FidelityInputError(str(exc)) from None
    rng = np.random.default_rng(seed)
    present = rng.permutation(np.arange(n_cases) < (n_cases + 1) // 2)
    study = Study.objects.create(
        title=title,
        coordinator=coordinator,
        institution=institution,
        washout_days=0,
        repeat_washout_days=0,
    )
    arms = [
        Arm.objects.create(study=study, protocol=protocol, label=chr(ord("A") + i))
        for i, protocol in enumerate(protocols)
    ]
    study.reference_arm = arms[0]
    study.save(update_fields=["reference_arm"])
    Question.objects.create(
        study=study,
        key=QUESTION_KEY,
        kind=Question.Kind.FINDING,
        order=0,
        label=f"Is there a focal {lesion_kind.replace('_', ' ')} lesion?",
        structure="",
        choices=["absent", "present"],
        with_confidence=True,
    )
    series = []
    for index, has_finding in enumerate(present):
        code = f"FID-{study.pk:04d}-{int(rng.integers(10**6)):06d}"
        with tempfile.TemporaryDirectory(prefix="fidelity-case-") as tmp:
            out = Path(tmp) / "kspace.h5"
            _twin_file(out, image, lesion, pixel_mm, bool(has_finding), snr, seed + index)
            upload = SimpleUploadedFile("kspace.h5", out.read_bytes())
        case = create_case_with_series(
            {
                "subject_code": code,
                "anatomy": Anatomy.BRAIN,
                "vendor": "Simulated",
                "sequence": "T1-weighted 2D (simulated 8-coil k-space)",
            },
            institution,
            [upload],
            coordinator,
            description="Fully sampled raw k-space (simulated, fidelity lab)",
        )
        study_case = StudyCase.objects.create(study=study, case=case)
        ReferenceStandard.objects.create(
            study_case=study_case,
            question=QUESTION_KEY,
            value="present" if has_finding else "absent",
            source=ReferenceStandard.Source.IMPORT,
            entered_by=coordinator,
            note=TRUTH_NOTE,
        )
        series.append(case.series.first())
    submit_jobs(series, protocols, coordinator)
    record(
        coordinator,
        "study.create",
        study,
        details={
            "known_truth": True,
            "lesion": lesion.kind,
            "size_mm": lesion.size_mm,
            "contrast": lesion.contrast,
            "n_cases": int(n_cases),
        },
    )
    return study


def case_truth(study: Study) -> dict[int, str]:
    """``{case pk: "present"|"absent"}`` as stored for the study (for checks and reports)."""
    return {
        truth.study_case.case_id: truth.value
        for truth in ReferenceStandard.objects.filter(
            study_case__study=study, question=QUESTION_KEY
        ).select_related("study_case")
    }
