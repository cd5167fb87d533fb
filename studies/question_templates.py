"""Reading-form templates for knee, lumbar spine, shoulder and ankle MRI reader studies.

Each template follows the design of the published musculoskeletal accelerated /
deep-learning reconstruction reader studies:

* Likert 1-5 image-quality criteria (overall quality, noise, sharpness, artifacts,
  contrast, diagnostic confidence) with the usual verbal anchors, higher = better, and a
  per-structure visibility score (Recht et al., AJR 2020;215:1421-1429; Johnson et al.,
  Radiology 2023;307:e220425; Almansour et al., Radiology 2023;306:e212922; Hahn et al.,
  AJR 2022;218:506-516).
* The diagnostic findings those studies report, each with a 1-5 confidence (the rating
  of the ROC / Obuchowski-Rockette analysis); graded where the literature grades them:
  cartilage by ICRS (Brittberg & Winalski, J Bone Joint Surg Am 2003;85-A Suppl 2:58-69),
  central canal stenosis by Lee et al. (Skeletal Radiol 2011;40:1033-1039), foraminal
  stenosis by Lee et al. (AJR 2010;194:1095-1098), disc herniation by the lumbar disc
  nomenclature 2.0 (Fardon et al., Spine J 2014;14:2525-2545), rotator-cuff tears as
  partial / full thickness (Hahn et al. 2022), osteochondral lesions of the talus by Hepple
  et al. (Foot Ankle Int 1999;20:789-793).
* Two tissue ROIs and a background ROI (outside the anatomy, free of ghosting) for SNR and
  CNR by the background method, and one linear measurement in mm.

ROIs, measurements and the comment are optional (``required=False``): they cost reading
time and a coordinator may drop them before opening; every Likert score and finding is
required. Finding choices are plain strings, ordered from normal to most severe, so that
the tidy export codes them as the choice index (0 = absent / normal).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from studies.models import Question, Study

QUALITY_ANCHORS = {
    "1": "non-diagnostic",
    "2": "poor",
    "3": "fair (diagnostic)",
    "4": "good",
    "5": "excellent",
}
NOISE_ANCHORS = {
    "1": "severe noise, non-diagnostic",
    "2": "marked noise",
    "3": "moderate noise, diagnostic",
    "4": "mild noise",
    "5": "no perceptible noise",
}
SHARPNESS_ANCHORS = {
    "1": "severely blurred, non-diagnostic",
    "2": "markedly blurred",
    "3": "moderately blurred, diagnostic",
    "4": "mildly blurred",
    "5": "sharp edges",
}
ARTIFACT_ANCHORS = {
    "1": "severe artifacts, non-diagnostic",
    "2": "marked artifacts",
    "3": "moderate artifacts, diagnostic",
    "4": "minor artifacts",
    "5": "no artifacts",
}
CONTRAST_ANCHORS = {
    "1": "no tissue contrast, non-diagnostic",
    "2": "poor contrast",
    "3": "fair contrast, diagnostic",
    "4": "good contrast",
    "5": "excellent contrast",
}
CONFIDENCE_ANCHORS = {
    "1": "cannot make a diagnosis",
    "2": "low confidence",
    "3": "moderate confidence",
    "4": "high confidence",
    "5": "complete confidence",
}
VISIBILITY_ANCHORS = {
    "1": "not visible",
    "2": "poorly delineated",
    "3": "fairly delineated, diagnostic",
    "4": "well delineated",
    "5": "excellently delineated",
}
PRESENT_ABSENT = ["absent", "present"]


def _likert(key: str, label: str, criterion: str, anchors: dict[str, str], **kw: Any) -> dict:
    return {
        "key": key,
        "kind": Question.Kind.LIKERT,
        "label": label,
        "criterion": criterion,
        "scale_min": 1,
        "scale_max": 5,
        "anchors": anchors,
        **kw,
    }


def _quality_items(region: str) -> list[dict]:
    return [
        _likert("overall_quality", "Overall image quality", "overall quality", QUALITY_ANCHORS),
        _likert("noise", "Image noise", "noise", NOISE_ANCHORS),
        _likert("sharpness", "Sharpness / edge definition", "sharpness", SHARPNESS_ANCHORS),
        _likert("artifacts", "Artifacts", "artifacts", ARTIFACT_ANCHORS),
        _likert("contrast", "Tissue contrast", "contrast", CONTRAST_ANCHORS),
        _likert(
            "diagnostic_confidence",
            f"Diagnostic confidence for the {region} examination",
            "diagnostic confidence",
            CONFIDENCE_ANCHORS,
        ),
    ]


def _visibility(structure: str, label: str) -> dict:
    return _likert(
        f"visibility_{structure}",
        f"Visibility of the {label}",
        "visibility",
        VISIBILITY_ANCHORS,
        structure=structure,
    )


def _finding(key: str, label: str, structure: str, choices: list[str], help_text: str = "") -> dict:
    return {
        "key": key,
        "kind": Question.Kind.FINDING,
        "label": label,
        "criterion": "finding",
        "structure": structure,
        "choices": choices,
        "with_confidence": True,
        "help_text": help_text
        or "Confidence 1-5: 1 = very unsure of this call, 5 = certain (ROC rating).",
    }


def _roi(structure: str, label: str) -> dict:
    background = structure == "background"
    return {
        "key": f"roi_{structure}",
        "kind": Question.Kind.ROI,
        "label": label,
        "criterion": "roi",
        "structure": structure,
        "required": False,
        "help_text": (
            "Draw an ellipse in air outside the anatomy, away from phase-encode ghosting"
            if background
            else "Draw an ellipse in homogeneous tissue, avoiding vessels and partial volume"
        ),
    }


def _measurement(key: str, label: str, structure: str, help_text: str) -> dict:
    return {
        "key": key,
        "kind": Question.Kind.NUMBER,
        "label": label,
        "criterion": "measurement",
        "structure": structure,
        "unit": "mm",
        "required": False,
        "help_text": help_text,
    }


COMMENT = {
    "key": "comment",
    "kind": Question.Kind.TEXT,
    "label": "Comments",
    "required": False,
}

KNEE = [
    *_quality_items("knee"),
    _visibility("meniscus", "menisci"),
    _visibility("cartilage", "articular cartilage"),
    _visibility("cruciate_ligaments", "cruciate ligaments"),
    _visibility("collateral_ligaments", "collateral ligaments"),
    _visibility("bone_marrow", "bone marrow / trabecular bone"),
    _visibility("tendons", "extensor mechanism tendons"),
    _finding("meniscal_tear", "Meniscal tear", "meniscus", PRESENT_ABSENT),
    _finding("acl_tear", "Anterior cruciate ligament tear", "cruciate_ligaments", PRESENT_ABSENT),
    _finding("pcl_tear", "Posterior cruciate ligament tear", "cruciate_ligaments", PRESENT_ABSENT),
    _finding(
        "cartilage_defect",
        "Cartilage defect (worst ICRS grade)",
        "cartilage",
        ["ICRS 0", "ICRS 1", "ICRS 2", "ICRS 3", "ICRS 4"],
        "ICRS: 0 normal, 1 superficial, 2 < 50 % depth, 3 > 50 % depth, 4 to subchondral "
        "bone. Confidence 1-5 (ROC rating).",
    ),
    _finding("bone_marrow_edema", "Bone marrow edema", "bone_marrow", PRESENT_ABSENT),
    _roi("cartilage", "ROI: femoral cartilage"),
    _roi("muscle", "ROI: muscle (medial gastrocnemius)"),
    _roi("background", "ROI: background (air)"),
    _measurement(
        "cartilage_thickness",
        "Medial femoral condyle cartilage thickness",
        "cartilage",
        "Weight-bearing medial femoral condyle, perpendicular to the subchondral bone, in mm",
    ),
    COMMENT,
]

SPINE = [
    *_quality_items("lumbar spine"),
    _visibility("spinal_cord", "spinal cord / conus and cauda equina"),
    _visibility("intervertebral_discs", "intervertebral discs"),
    _visibility("neural_foramina", "neural foramina and exiting nerve roots"),
    _visibility("vertebral_bone_marrow", "vertebral bone marrow"),
    _visibility("facet_joints", "facet joints"),
    _finding(
        "disc_herniation",
        "Disc herniation (worst level)",
        "intervertebral_discs",
        ["none", "bulge", "protrusion", "extrusion"],
        "Lumbar disc nomenclature 2.0. Confidence 1-5 (ROC rating).",
    ),
    _finding(
        "canal_stenosis",
        "Central canal stenosis (worst level)",
        "spinal_canal",
        ["grade 0", "grade 1", "grade 2", "grade 3"],
        "Lee 2011: 0 none, 1 mild (anterior CSF obliterated), 2 moderate (rootlets "
        "clumped), 3 severe (no CSF). Confidence 1-5 (ROC rating).",
    ),
    _finding(
        "foraminal_stenosis",
        "Foraminal stenosis (worst foramen)",
        "neural_foramina",
        ["grade 0", "grade 1", "grade 2", "grade 3"],
        "Lee 2010: 0 normal, 1 perineural fat obliterated in 2 directions, 2 in 4 "
        "directions, 3 nerve root morphologic change. Confidence 1-5 (ROC rating).",
    ),
    _finding("nerve_root_compression", "Nerve root compression", "nerve_roots", PRESENT_ABSENT),
    _finding(
        "bone_marrow_lesion",
        "Vertebral bone marrow lesion (edema / Modic type 1)",
        "vertebral_bone_marrow",
        PRESENT_ABSENT,
    ),
    _roi("csf", "ROI: cerebrospinal fluid"),
    _roi("vertebral_body", "ROI: vertebral body bone marrow"),
    _roi("background", "ROI: background (air)"),
    _measurement(
        "canal_ap_diameter",
        "Spinal canal anteroposterior diameter at L4-L5",
        "spinal_canal",
        "Mid-sagittal, from the posterior disc margin to the ligamentum flavum, in mm",
    ),
    COMMENT,
]

SHOULDER = [
    *_quality_items("shoulder"),
    _visibility("supraspinatus_tendon", "supraspinatus tendon"),
    _visibility("infraspinatus_tendon", "infraspinatus tendon"),
    _visibility("subscapularis_tendon", "subscapularis tendon"),
    _visibility("labrum", "glenoid labrum"),
    _visibility("cartilage", "glenohumeral cartilage"),
    _visibility("bone_marrow", "humeral head bone marrow"),
    _finding(
        "supraspinatus_tear",
        "Supraspinatus tendon tear",
        "supraspinatus_tendon",
        ["no tear", "partial-thickness tear", "full-thickness tear"],
    ),
    _finding(
        "subscapularis_tear", "Subscapularis tendon tear", "subscapularis_tendon", PRESENT_ABSENT
    ),
    _finding("labral_tear", "Labral tear", "labrum", PRESENT_ABSENT),
    _finding(
        "bursal_thickening",
        "Subacromial-subdeltoid bursal thickening",
        "subacromial_bursa",
        PRESENT_ABSENT,
    ),
    _finding("biceps_tendinopathy", "Long head of biceps tendinopathy", "biceps", PRESENT_ABSENT),
    _roi("deltoid_muscle", "ROI: deltoid muscle"),
    _roi("humeral_head", "ROI: humeral head bone marrow"),
    _roi("background", "ROI: background (air)"),
    _measurement(
        "bursal_thickness",
        "Subacromial-subdeltoid bursa thickness",
        "subacromial_bursa",
        "Thickest point on the coronal fluid-sensitive image, in mm",
    ),
    COMMENT,
]

ANKLE = [
    *_quality_items("ankle"),
    _visibility("lateral_ligaments", "lateral ligament complex (ATFL, CFL)"),
    _visibility("deltoid_ligament", "deltoid ligament"),
    _visibility("peroneal_tendons", "peroneal tendons"),
    _visibility("achilles_tendon", "Achilles tendon"),
    _visibility("talar_cartilage", "talar dome cartilage"),
    _visibility("bone_marrow", "bone marrow"),
    _finding(
        "atfl_tear",
        "Anterior talofibular ligament tear",
        "lateral_ligaments",
        ["intact", "partial tear", "complete tear"],
    ),
    _finding(
        "osteochondral_lesion",
        "Osteochondral lesion of the talus",
        "talar_cartilage",
        ["none", "Hepple 1", "Hepple 2a", "Hepple 2b", "Hepple 3", "Hepple 4", "Hepple 5"],
        "Hepple 1999: 1 cartilage only, 2a with fracture and edema, 2b without edema, 3 "
        "detached non-displaced, 4 displaced, 5 subchondral cyst. Confidence 1-5 (ROC rating).",
    ),
    _finding(
        "peroneal_split_tear", "Peroneus brevis split tear", "peroneal_tendons", PRESENT_ABSENT
    ),
    _finding("achilles_tendinopathy", "Achilles tendinopathy", "achilles_tendon", PRESENT_ABSENT),
    _finding("bone_marrow_edema", "Bone marrow edema", "bone_marrow", PRESENT_ABSENT),
    _roi("muscle", "ROI: muscle (soleus)"),
    _roi("talus", "ROI: talar bone marrow"),
    _roi("background", "ROI: background (air)"),
    _measurement(
        "achilles_thickness",
        "Achilles tendon anteroposterior thickness",
        "achilles_tendon",
        "Axial image at the thickest point, in mm",
    ),
    COMMENT,
]

TEMPLATES: dict[str, dict[str, Any]] = {
    "knee": {"label": "Knee MRI (image quality, menisci, ligaments, cartilage)", "items": KNEE},
    "spine": {"label": "Lumbar spine MRI (discs, canal and foraminal stenosis)", "items": SPINE},
    "shoulder": {"label": "Shoulder MRI (rotator cuff, labrum, bursa)", "items": SHOULDER},
    "ankle": {"label": "Ankle MRI (ligaments, tendons, osteochondral lesions)", "items": ANKLE},
}


def template_choices() -> list[tuple[str, str]]:
    """(name, label) of every template, for a form's choice field."""
    return [(name, spec["label"]) for name, spec in TEMPLATES.items()]


@transaction.atomic
def apply_template(study: Study, name: str, keys: Iterable[str] | None = None) -> list[Question]:
    """Add template ``name``'s questions (only those in ``keys`` when given) to a draft
    ``study``, after its existing ones.

    Idempotent by key: questions whose key the study already has are left as they are.
    Returns the questions created. Raises ValidationError for an unknown template and
    :class:`studies.services.StudyError` when the study is not a draft.
    """
    from studies.services import StudyError

    if name not in TEMPLATES:
        raise ValidationError(f"there is no template “{name}”; choose {', '.join(TEMPLATES)}")
    study = Study.objects.select_for_update().get(pk=study.pk)
    if study.status != Study.Status.DRAFT:
        raise StudyError("templates can only be applied to a draft study")
    existing = set(study.questions.values_list("key", flat=True))
    order = max(study.questions.values_list("order", flat=True), default=-1) + 1
    created = []
    wanted = set(keys) if keys is not None else None
    for spec in TEMPLATES[name]["items"]:
        if spec["key"] in existing or (wanted is not None and spec["key"] not in wanted):
            continue
        question = Question(study=study, order=order, **spec)
        question.full_clean()
        question.save()
        created.append(question)
        order += 1
    return created
