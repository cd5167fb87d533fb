"""Demo reader studies, created by ``manage.py setup_demo``.

* :func:`create_knee_demo_study`: "Demo reader study", a real blinded study over the demo
  cases (2 arms: fully sampled RSS as the reference and GRAPPA R3) read by the demo
  accounts ``reader1`` and ``reader2`` with the knee template. It can only open once
  every (case, arm) reconstruction exists, and the demo jobs run asynchronously on the
  worker, so the study is created as a draft and a Celery task
  (:func:`studies.tasks.open_when_reconstructed`) opens it when the image sets are there:
  retried every :data:`OPEN_RETRY_S` seconds, at most :data:`OPEN_MAX_TRIES` times, giving
  up at once (audited) if a needed job failed. This keeps ``setup_demo`` fast and still
  uses the normal :func:`studies.services.open_study` path, unlike running the
  reconstructions synchronously, which would delay the demo's start by minutes.
* :func:`build_demo_analysis_study`: "Demo analysis study (simulated reads)", a closed
  study whose reads are SIMULATED (see :func:`simulate_read`) so statisticians have data to
  analyse. Its subjects are the demo cases (when they exist at the site) and subject
  records ``SIM-nnnn`` without images: nobody reads them, the reads are generated, so
  simulating k-space for them would only slow the demo down.

Simulated reader model (seeded, reproducible; all draws from
``numpy.random.default_rng([seed, stream, ...])`` so values do not depend on database ids
or reading order):

* per case c: latent image quality q_c ~ N(3.9, 0.55); meniscal tear, ACL tear and bone
  marrow edema present with probability 0.45, 0.30, 0.35; ICRS cartilage grade G_c with
  probabilities (0.35, 0.2, 0.2, 0.15, 0.1); cartilage thickness t_c ~ N(2.3, 0.35) mm;
  tissue signal cartilage ~ N(320, 25), muscle ~ N(190, 15);
* per reader r: Likert bias b_r ~ N(0, 0.3), decision-threshold shift s_r ~ N(0, 0.25);
* per arm (:data:`SIMULATED_ARMS`): Likert shift (0 reference, -0.4 accelerated; x1.5 for
  noise, x1.2 for sharpness), detectability d' (2.4 vs 2.0), noise sigma (8 vs 12), a
  thickness bias (0 vs +0.05 mm), grade error SD (0.55 vs 0.7);
* Likert score = clip(round(q_c + shift + b_r + N(0, 0.45)), 1, 5);
* binary finding: evidence z = d' D + N(0, 1), call "present" when z > d'/2 + s_r,
  confidence = min(5, 1 + floor(|z - cut| / 0.6)) (signal-detection model of ROC ratings);
* graded finding: round(G_c + N(0, SD)) clipped to 0-4, confidence 5 - floor(|error| / 0.3);
* ROIs of 80 pixels (20 mm^2): tissue mean ~ N(signal, sigma / sqrt(80)), SD ~ sigma;
  background (single-channel magnitude noise in air) mean sigma sqrt(pi/2), SD
  sigma sqrt(2 - pi/2) (Rayleigh), each with 3-5 % jitter;
* measurement = t_c + bias + N(0, 0.12) mm; repeat reads redraw every read-level term.

The reference standard (ReferenceStandard, source "import") is the simulated truth.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from mriplatform.accounts.models import Institution, User
from mriplatform.accounts.roles import Role, assign_role
from mriplatform.audit.services import record
from mriplatform.cases.models import Anatomy, Case
from mriplatform.jobs.models import ReconJob
from mriplatform.protocols.models import Protocol
from studies.models import (
    Answer,
    AnswerHistory,
    Arm,
    ReadingSession,
    ReadItem,
    ReferenceStandard,
    Study,
    StudyCase,
    new_alias,
)
from studies.question_templates import apply_template
from studies.questions import validate_answer
from studies.services import StudyError, add_reader, close_study, open_study, reading_plan

KNEE_TITLE = "Demo reader study"
ANALYSIS_TITLE = "Demo analysis study (simulated reads)"
KNEE_ARMS = ("Fully sampled (RSS)", "GRAPPA R3")  # (reference, accelerated) demo protocols
DEMO_READERS = ("reader1", "reader2")
OPEN_RETRY_S = 15
OPEN_MAX_TRIES = 160  # 40 minutes of demo reconstructions

SIMULATED_KEYS = (
    "overall_quality",
    "noise",
    "sharpness",
    "artifacts",
    "contrast",
    "diagnostic_confidence",
    "visibility_meniscus",
    "visibility_cartilage",
    "meniscal_tear",
    "acl_tear",
    "cartilage_defect",
    "bone_marrow_edema",
    "roi_cartilage",
    "roi_muscle",
    "roi_background",
    "cartilage_thickness",
)
LIKERT_MULTIPLIER = {"noise": 1.5, "sharpness": 1.2}
BINARY_PREVALENCE = {"meniscal_tear": 0.45, "acl_tear": 0.30, "bone_marrow_edema": 0.35}
GRADE_PROBABILITIES = (0.35, 0.2, 0.2, 0.15, 0.1)
ROI_PIXELS, ROI_AREA_MM2 = 80, 20.0
RAYLEIGH_MEAN, RAYLEIGH_SD = math.sqrt(math.pi / 2), math.sqrt(2 - math.pi / 2)
# arm index 0 = reference, 1 = accelerated
SIMULATED_ARMS: tuple[dict[str, float], ...] = (
    {"likert": 0.0, "dprime": 2.4, "sigma": 8.0, "thickness_bias": 0.0, "grade_sd": 0.55},
    {"likert": -0.4, "dprime": 2.0, "sigma": 12.0, "thickness_bias": 0.05, "grade_sd": 0.7},
)
ANALYSIS_ARMS = ("Fully sampled (RSS)", "CG-SENSE R4")


# ------------------------------------------------------------------------- accounts


def demo_reader(username: str, institution: Institution, password: str | None = None) -> User:
    """The reader account ``username`` (created with the reader role when missing; an
    unusable password unless ``password`` is given)."""
    user, created = User.objects.get_or_create(
        username=username, defaults={"institution": institution, "email": ""}
    )
    if created:
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save()
    if not user.has_role(Role.READER):
        assign_role(user, Role.READER)
    return user


def _coordinator(institution: Institution) -> User:
    user, created = User.objects.get_or_create(
        username="coordinator", defaults={"institution": institution, "email": ""}
    )
    if created:
        user.set_unusable_password()
        user.save()
    if not user.has_role(Role.COORDINATOR):
        assign_role(user, Role.COORDINATOR)
    return user


def _demo_protocols(names: tuple[str, ...]) -> list[Protocol]:
    from mriplatform.protocols.demo import create_demo_protocols

    by_name = {p.name: p for p in create_demo_protocols()}
    return [by_name[name] for name in names]


# ------------------------------------------------------------------ knee demo study


@transaction.atomic
def create_knee_demo_study(
    institution: Institution, coordinator: User, cases: list[Case], readers: list[User]
) -> Study:
    """The draft "Demo reader study" (created once per site) over ``cases``, two arms, the
    knee template and ``readers``; opening is left to :func:`open_when_reconstructed`."""
    existing = Study.objects.filter(institution=institution, title=KNEE_TITLE).first()
    if existing is not None:
        return existing
    study = Study.objects.create(
        title=KNEE_TITLE,
        coordinator=coordinator,
        institution=institution,
        washout_days=0,
        repeat_washout_days=0,
    )
    arms = [
        Arm.objects.create(study=study, protocol=protocol, label=label)
        for protocol, label in zip(_demo_protocols(KNEE_ARMS), "AB")
    ]
    study.reference_arm = arms[0]
    study.save(update_fields=["reference_arm"])
    for case in cases:
        StudyCase.objects.create(study=study, case=case)
    for reader in readers:
        add_reader(study, reader, actor=coordinator)
    apply_template(study, "knee")
    record(coordinator, "study.create", study, details={"demo": True, "template": "knee"})
    return study


def open_when_reconstructed(study: Study, user: User, give_up: bool = False) -> str:
    """Open ``study`` if every (case, arm) reconstruction exists.

    Returns "opened", "not a draft" (nothing to do), "waiting" (jobs still running) or
    "failed": a needed reconstruction failed, or ``give_up`` and still waiting; both are
    audited (``study.auto_open_failed``) so the coordinator sees why it stayed a draft.
    """
    study.refresh_from_db()
    if study.status != Study.Status.DRAFT:
        return "not a draft"
    arms = list(study.arms.all())
    failed = ReconJob.objects.filter(
        status=ReconJob.Status.FAILED,
        protocol__in=[a.protocol_id for a in arms],
        input_series__case__in=study.study_cases.values("case"),
    )
    reason = None
    if failed.exists():
        reason = f"{failed.count()} needed reconstruction(s) failed; retry them, then open"
    else:
        try:
            open_study(study, user)
            return "opened"
        except StudyError as exc:
            if not give_up:
                return "waiting"
            reason = f"gave up waiting for the reconstructions: {exc}"
    record(user, "study.auto_open_failed", study, details={"reason": reason})
    return "failed"


def queue_opening(study: Study, user: User) -> None:
    """Ask the worker to open ``study`` once its reconstructions are done (after commit)."""
    from studies.tasks import open_when_reconstructed as task

    transaction.on_commit(
        lambda: task.apply_async(args=[study.pk, user.pk], countdown=OPEN_RETRY_S)
    )


# --------------------------------------------------------- simulated analysis study


def _case_truth(seed: int, c: int) -> dict[str, Any]:
    g = np.random.default_rng([seed, 1, c])
    truth: dict[str, Any] = {"quality": g.normal(3.9, 0.55)}
    for key, p in BINARY_PREVALENCE.items():
        truth[key] = int(g.random() < p)
    truth["cartilage_grade"] = int(g.choice(len(GRADE_PROBABILITIES), p=GRADE_PROBABILITIES))
    truth["thickness"] = round(float(g.normal(2.3, 0.35)), 2)
    truth["signal"] = {"cartilage": g.normal(320, 25), "muscle": g.normal(190, 15)}
    return truth


def _reader_traits(seed: int, r: int) -> dict[str, float]:
    g = np.random.default_rng([seed, 2, r])
    return {"bias": g.normal(0, 0.3), "threshold": g.normal(0, 0.25)}


def simulate_read(
    seed: int, reader: int, case: int, arm: int, read_index: int
) -> dict[str, tuple[Any, int | None]]:
    """{question key: (value, confidence)} of one simulated read (model in the module
    docstring); ``arm`` 0 is the reference, 1 the accelerated arm; indices are 0-based."""
    truth, traits, effects = (
        _case_truth(seed, case),
        _reader_traits(seed, reader),
        SIMULATED_ARMS[arm],
    )
    g = np.random.default_rng([seed, 3, reader, case, arm, read_index])
    out: dict[str, tuple[Any, int | None]] = {}
    for key in SIMULATED_KEYS[:8]:
        shift = effects["likert"] * LIKERT_MULTIPLIER.get(key, 1.0)
        score = round(truth["quality"] + shift + traits["bias"] + g.normal(0, 0.45))
        out[key] = (int(min(5, max(1, score))), None)
    for key in BINARY_PREVALENCE:
        z = effects["dprime"] * truth[key] + g.normal()
        cut = effects["dprime"] / 2 + traits["threshold"]
        confidence = min(5, 1 + int(abs(z - cut) / 0.6))
        out[key] = ("present" if z > cut else "absent", confidence)
    error = g.normal(0, effects["grade_sd"])
    grade = int(min(4, max(0, round(truth["cartilage_grade"] + error))))
    out["cartilage_defect"] = (f"ICRS {grade}", max(1, 5 - int(abs(error) / 0.3)))
    sigma = effects["sigma"] * g.normal(1, 0.05)
    for tissue in ("cartilage", "muscle"):
        mean = truth["signal"][tissue] + g.normal(0, sigma / math.sqrt(ROI_PIXELS))
        out[f"roi_{tissue}"] = (_roi(mean, abs(sigma * g.normal(1, 0.08))), None)
    background = _roi(
        sigma * RAYLEIGH_MEAN * g.normal(1, 0.03), sigma * RAYLEIGH_SD * g.normal(1, 0.05)
    )
    out["roi_background"] = (background, None)
    thickness = truth["thickness"] + effects["thickness_bias"] + g.normal(0, 0.12)
    out["cartilage_thickness"] = (round(float(thickness), 2), None)
    return out


def _roi(mean: float, sd: float) -> dict[str, Any]:
    return {
        "shape": "ellipse",
        "mean": round(float(mean), 3),
        "sd": round(float(sd), 3),
        "pixel_count": ROI_PIXELS,
        "area_mm2": ROI_AREA_MM2,
    }


def _simulated_cases(institution: Institution, n_cases: int, user: User | None) -> list[Case]:
    demo = list(Case.objects.filter(institution=institution, subject_code__startswith="DEMO-"))
    cases = demo[:n_cases]
    for i in range(1, n_cases - len(cases) + 1):
        case, _ = Case.objects.get_or_create(
            institution=institution,
            subject_code=f"SIM-{i:04d}",
            defaults={
                "anatomy": Anatomy.KNEE,
                "created_by": user,
                "notes": "Simulated subject of the demo analysis study: no images.",
            },
        )
        cases.append(case)
    return cases


def _store_plan(study: Study, readers: list[User], start: datetime) -> None:
    """The readers' sessions and reads as :func:`studies.services.open_study` stores them
    (same reading plan), without its image-set check: the reads are simulated."""
    for reader in readers:
        for session in reading_plan(study, reader.pk):
            available = start + timedelta(days=session["index"] * (study.washout_days + 2))
            obj = ReadingSession.objects.create(
                study=study,
                reader=reader,
                index=session["index"],
                kind=session["kind"],
                washout_days=study.washout_days if session["index"] else 0,
                available_from=available,
                completed_at=available + timedelta(hours=2),
            )
            ReadItem.objects.bulk_create(
                ReadItem(
                    session=obj,
                    reader=reader,
                    order_index=i,
                    study_case_id=case_pk,
                    arm_id=arm_pk,
                    second_arm_id=second_pk,
                    kind=kind,
                    read_index=read_index,
                    alias=new_alias(),
                    second_alias=new_alias() if second_pk else None,
                )
                for i, (case_pk, arm_pk, second_pk, kind, read_index) in enumerate(session["reads"])
            )


@transaction.atomic
def build_demo_analysis_study(
    institution: Institution | None = None,
    coordinator: User | None = None,
    n_cases: int = 12,
    n_readers: int = 3,
    repeat_fraction: float = 0.25,
    seed: int = 2026,
) -> Study:
    """A closed two-arm knee study with SIMULATED reads (module docstring), its reference
    standard and audit trail; created once per site (the existing one is returned).

    Without arguments it uses (or creates) the demo site and coordinator; readers are
    ``simreader1..n`` accounts without a usable password.
    """
    institution = (
        institution
        or Institution.objects.get_or_create(
            code="demo", defaults={"name": "Demo University Hospital", "country": "—"}
        )[0]
    )
    existing = Study.objects.filter(institution=institution, title=ANALYSIS_TITLE).first()
    if existing is not None:
        return existing
    coordinator = coordinator or _coordinator(institution)
    start = timezone.now() - timedelta(days=90)
    study = Study.objects.create(
        title=ANALYSIS_TITLE,
        coordinator=coordinator,
        institution=institution,
        seed=seed,
        washout_days=28,
        repeat_washout_days=28,
        repeat_fraction=repeat_fraction,
    )
    arms = [
        Arm.objects.create(study=study, protocol=protocol, label=label)
        for protocol, label in zip(_demo_protocols(ANALYSIS_ARMS), "AB")
    ]
    study.reference_arm = arms[0]
    study.save(update_fields=["reference_arm"])
    cases = _simulated_cases(institution, n_cases, coordinator)
    study_cases = [StudyCase.objects.create(study=study, case=case) for case in cases]
    readers = [demo_reader(f"simreader{i}", institution) for i in range(1, n_readers + 1)]
    for reader in readers:
        add_reader(study, reader, actor=coordinator)
    apply_template(study, "knee", keys=SIMULATED_KEYS)
    questions = {q.key: q for q in study.questions.all()}
    _store_plan(study, readers, start)

    case_index = {sc.pk: i for i, sc in enumerate(study_cases)}
    arm_index = {arm.pk: i for i, arm in enumerate(arms)}
    reader_index = {reader.pk: i for i, reader in enumerate(readers)}
    answers, history = [], []
    items = list(ReadItem.objects.filter(session__study=study).select_related("session"))
    for item in items:
        read = simulate_read(
            seed,
            reader_index[item.reader_id],
            case_index[item.study_case_id],
            arm_index[item.arm_id],
            item.read_index,
        )
        started = item.session.available_from + timedelta(minutes=3 * item.order_index)
        duration = float(np.random.default_rng([seed, 4, item.pk % 2**31]).lognormal(4.4, 0.3))
        submitted = started + timedelta(seconds=duration)
        item.started_at, item.submitted_at = started, submitted
        item.time_on_case_s = round(duration, 1)
        for key, (value, confidence) in read.items():
            value, confidence = validate_answer(questions[key], value, confidence, item=item)
            answers.append(
                Answer(
                    read_item=item,
                    question=key,
                    value=value,
                    confidence=confidence,
                    updated=submitted,
                )
            )
    ReadItem.objects.bulk_update(items, ["started_at", "submitted_at", "time_on_case_s"])
    Answer.objects.bulk_create(answers)
    for answer in answers:
        history.append(
            AnswerHistory(
                answer=answer,
                old_value=None,
                new_value=answer.value,
                old_confidence=None,
                new_confidence=answer.confidence,
                user_id=answer.read_item.reader_id,
                timestamp=answer.updated,
            )
        )
    AnswerHistory.objects.bulk_create(history)
    _store_truth(study, study_cases, coordinator, seed, start)
    study.status, study.opened = Study.Status.OPEN, start
    study.save(update_fields=["status", "opened"])
    record(
        coordinator,
        "study.simulate_reads",
        study,
        details={"seed": seed, "cases": n_cases, "readers": n_readers, "answers": len(answers)},
    )
    close_study(
        study,
        coordinator,
        reason="demo: simulated reads complete",
        now=start + timedelta(days=80),
    )
    study.refresh_from_db()
    return study


def _store_truth(
    study: Study, study_cases: list[StudyCase], user: User, seed: int, when: datetime
) -> None:
    rows = []
    for c, sc in enumerate(study_cases):
        truth = _case_truth(seed, c)
        values = {key: "present" if truth[key] else "absent" for key in BINARY_PREVALENCE}
        values["cartilage_defect"] = f"ICRS {truth['cartilage_grade']}"
        values["cartilage_thickness"] = truth["thickness"]
        for key, value in values.items():
            rows.append(
                ReferenceStandard(
                    study_case=sc,
                    question=key,
                    value=value,
                    source=ReferenceStandard.Source.IMPORT,
                    entered_by=user,
                    entered_at=when,
                    note="simulated arthroscopy (demo)",
                )
            )
    ReferenceStandard.objects.bulk_create(rows)


# ------------------------------------------------------------------------ entry point


def create_demo_studies(institution: Institution, cases: list[Case]) -> list[Study]:
    """Both demo studies (idempotent), for ``setup_demo``; queues the knee study's opening."""
    coordinator = _coordinator(institution)
    readers = [demo_reader(name, institution) for name in DEMO_READERS]
    knee = create_knee_demo_study(institution, coordinator, cases, readers)
    if knee.status == Study.Status.DRAFT:
        queue_opening(knee, coordinator)
    analysis = build_demo_analysis_study(institution, coordinator)
    return [knee, analysis]
