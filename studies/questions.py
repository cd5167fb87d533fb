"""Reading-form questions: answer validation per kind, locking, and which questions a read asks.

Every stored answer (reader answers through :func:`studies.services.save_answer`, reference
values through :mod:`studies.reference`) passes :func:`validate_answer`, so the tidy export
and the statistics can rely on one coding per question kind:

* ``likert``: int in ``[scale_min, scale_max]`` (1-5 when unset);
* ``finding``: one of ``choices`` (present/absent, or ordered grades), plus a confidence
  1-5 when ``with_confidence`` (the ROC rating of Obuchowski-Rockette / DBM analyses);
* ``number``: a finite float (in the question's ``unit``);
* ``text``: a string of at most :data:`MAX_TEXT` characters;
* ``choice``: one of ``choices``;
* ``roi``: the viewer's measurement JSON (``frontend/README.md``, "Measurement JSON"),
  reduced to a whitelisted dict with a finite mean, SD >= 0 and an area;
* ``preference``: ``"left"``, ``"right"`` or ``"equal"`` (side-by-side reads only).

A question is locked (:func:`ensure_editable`) once any answer or reference value of its
study uses its key:
changing its scale or choices afterwards would silently change the meaning of stored data.
"""

from __future__ import annotations

import math
import re
from typing import Any

from django.core.exceptions import ValidationError

from studies.models import Answer, Question, ReadItem, ReferenceRead, ReferenceStandard

MAX_TEXT = 5000
CONFIDENCE_MIN, CONFIDENCE_MAX = 1, 5
DEFAULT_SCALE = (1, 5)
PREFERENCES = ("left", "right", "equal")
ROI_SHAPES = ("ellipse", "rectangle", "polygon", "circle")
MAX_ROI_POINTS = 256


def choice_values(question: Question) -> list[Any]:
    """The stored values of a finding's or choice's options, in form order.

    ``choices`` holds plain values (``["absent", "present"]``), ``[value, label]`` pairs or
    ``{"value", "label"}`` dicts.
    """
    values = []
    for choice in question.choices or []:
        if isinstance(choice, dict):
            values.append(choice.get("value", choice.get("key")))
        elif isinstance(choice, list | tuple) and len(choice) == 2:
            values.append(choice[0])
        else:
            values.append(choice)
    return values


def choice_label(question: Question, value: Any) -> str:
    """The display label of a stored choice value (the value itself when unlabelled)."""
    for choice in question.choices or []:
        if isinstance(choice, dict) and choice.get("value", choice.get("key")) == value:
            return str(choice.get("label", value))
        if isinstance(choice, list | tuple) and len(choice) == 2 and choice[0] == value:
            return str(choice[1])
    return str(value)


def scale(question: Question) -> tuple[int, int]:
    """(min, max) of a Likert question's scale."""
    lo = question.scale_min if question.scale_min is not None else DEFAULT_SCALE[0]
    hi = question.scale_max if question.scale_max is not None else DEFAULT_SCALE[1]
    return int(lo), int(hi)


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ValidationError(f"{what} must be a whole number, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]{1,9}", value.strip()):
        return int(value.strip())
    raise ValidationError(f"{what} must be a whole number, not {value!r}")


def _as_float(value: Any, what: str) -> float:
    if isinstance(value, bool) or value is None:
        raise ValidationError(f"{what} must be a number, not {value!r}")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValidationError(f"{what} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise ValidationError(f"{what} must be a finite number, not {value!r}")
    return number


def _match_choice(question: Question, value: Any) -> Any:
    """The stored choice equal to ``value`` (strings compared case-insensitively)."""
    options = choice_values(question)
    if not options:
        raise ValidationError(f"“{question.label}” has no choices configured")
    for option in options:
        if option == value and type(option) is type(value):
            return option
    if isinstance(value, str):
        wanted = value.strip().lower()
        for option in options:
            if str(option).lower() == wanted or choice_label(question, option).lower() == wanted:
                return option
    listed = ", ".join(str(o) for o in options)
    raise ValidationError(f"“{question.label}”: {value!r} is not one of {listed}")


def _confidence(question: Question, confidence: Any) -> int | None:
    if confidence is None or confidence == "":
        return None
    conf = _as_int(confidence, f"the confidence of “{question.label}”")
    if not CONFIDENCE_MIN <= conf <= CONFIDENCE_MAX:
        raise ValidationError(
            f"the confidence of “{question.label}” must lie between {CONFIDENCE_MIN} and "
            f"{CONFIDENCE_MAX}, not {conf}"
        )
    return conf


def _roi(question: Question, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(f"“{question.label}” needs a region of interest drawn on the image")
    shape = value.get("shape", value.get("type"))
    if shape not in ROI_SHAPES:
        raise ValidationError(
            f"“{question.label}”: a region of interest must be an area "
            f"({', '.join(ROI_SHAPES)}), not {shape!r}"
        )
    mean = _as_float(value.get("mean"), f"the ROI mean of “{question.label}”")
    sd = _as_float(value.get("sd"), f"the ROI SD of “{question.label}”")
    if sd < 0:
        raise ValidationError(f"the ROI SD of “{question.label}” cannot be negative")
    area = value.get("area_mm2")
    if area is not None:
        area = _as_float(area, f"the ROI area of “{question.label}”")
    pixels = value.get("pixel_count")
    if pixels is not None:
        pixels = _as_int(pixels, f"the ROI pixel count of “{question.label}”")
    if (area is None or area <= 0) and (pixels is None or pixels <= 0):
        raise ValidationError(
            f"“{question.label}”: the region of interest has no area (area_mm2 or pixel_count)"
        )
    cleaned: dict[str, Any] = {
        "shape": shape,
        "mean": mean,
        "sd": sd,
        "area_mm2": area,
        "pixel_count": pixels,
    }
    for key in ("viewport", "slice_index"):
        if value.get(key) is not None:
            cleaned[key] = _as_int(value[key], f"the ROI {key} of “{question.label}”")
    if value.get("uid") is not None:
        cleaned["uid"] = str(value["uid"])[:64]
    points = value.get("points")
    if points is not None:
        if not isinstance(points, list) or len(points) > MAX_ROI_POINTS:
            raise ValidationError(f"“{question.label}”: the ROI points are malformed")
        cleaned["points"] = [
            [_as_float(c, "an ROI point coordinate") for c in p]
            for p in points
            if isinstance(p, list | tuple) and len(p) == 2
        ]
        if len(cleaned["points"]) != len(points):
            raise ValidationError(f"“{question.label}”: each ROI point must be [x, y]")
    return cleaned


def _contains_nul(value: Any) -> bool:
    """Whether a NUL character (U+0000, refused by PostgreSQL jsonb) occurs anywhere in
    ``value``: in a string, a dict key or value, or a list element, at any depth."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_contains_nul(v) for v in value)
    return False


def validate_answer(
    question: Question, value: Any, confidence: Any = None, item: ReadItem | None = None
) -> tuple[Any, int | None]:
    """Check and normalise one answer to ``question``; returns ``(value, confidence)``.

    ``value=None`` clears the answer (confidence is then dropped too). ``item``, when
    given, is the read answered: preference questions are only valid on paired reads.
    Raises :class:`ValidationError` with a message a reader can act on.
    """
    if value is None:
        return None, None
    if _contains_nul(value) or _contains_nul(confidence):
        raise ValidationError(f"“{question.label}” contains a NUL character, which is not allowed")
    kind = question.kind
    if item is not None and kind == Question.Kind.PREFERENCE and item.second_arm_id is None:
        raise ValidationError(f"“{question.label}” is only asked in side-by-side reads")
    if kind == Question.Kind.LIKERT:
        score = _as_int(value, f"“{question.label}”")
        lo, hi = scale(question)
        if not lo <= score <= hi:
            raise ValidationError(f"“{question.label}” must lie between {lo} and {hi}, not {score}")
        return score, None
    if kind == Question.Kind.FINDING:
        chosen = _match_choice(question, value)
        conf = _confidence(question, confidence)
        if question.with_confidence and conf is None and item is not None:
            raise ValidationError(
                f"“{question.label}” needs your confidence ({CONFIDENCE_MIN}-{CONFIDENCE_MAX})"
            )
        return chosen, conf if question.with_confidence else None
    if kind == Question.Kind.NUMBER:
        return _as_float(value, f"“{question.label}”"), None
    if kind == Question.Kind.TEXT:
        if not isinstance(value, str):
            raise ValidationError(f"“{question.label}” must be text")
        text = value.strip()
        if len(text) > MAX_TEXT:
            raise ValidationError(
                f"“{question.label}” is limited to {MAX_TEXT} characters ({len(text)} given)"
            )
        return text, None
    if kind == Question.Kind.CHOICE:
        return _match_choice(question, value), None
    if kind == Question.Kind.ROI:
        return _roi(question, value), None
    if kind == Question.Kind.PREFERENCE:
        if not isinstance(value, str) or value.strip().lower() not in PREFERENCES:
            raise ValidationError(
                f"“{question.label}” must be one of {', '.join(PREFERENCES)}, not {value!r}"
            )
        return value.strip().lower(), None
    raise ValidationError(f"unknown question kind {kind!r}")


def is_answered(question: Question, answer: Answer | None) -> bool:
    """Whether ``answer`` counts as complete for ``question`` (value, and confidence where
    the finding asks for one; empty text counts as unanswered)."""
    if answer is None or answer.value is None or answer.value == "":
        return False
    if question.kind == Question.Kind.FINDING and question.with_confidence:
        return answer.confidence is not None
    return True


def ensure_editable(question: Question) -> None:
    """Refuse changing or deleting a question once its study has any answer (or reference
    read or reference-standard value) with its key.

    Compares with the stored row, so a question whose key was just changed is checked
    under its stored key. Raises :class:`ValidationError`.
    """
    if question.pk is None:
        return
    stored = Question.objects.filter(pk=question.pk).values("study_id", "key").first()
    if stored is None:
        return
    study_id, key = stored["study_id"], stored["key"]
    if Answer.objects.filter(read_item__session__study_id=study_id, question=key).exists():
        raise ValidationError(f"question “{key}” is locked: readers have already answered it")
    if (
        ReferenceRead.objects.filter(study_case__study_id=study_id, question=key).exists()
        or ReferenceStandard.objects.filter(study_case__study_id=study_id, question=key).exists()
    ):
        raise ValidationError(f"question “{key}” is locked: it has reference-standard values")


def is_locked(question: Question) -> bool:
    """Whether :func:`ensure_editable` would refuse a change of ``question``."""
    try:
        ensure_editable(question)
    except ValidationError:
        return True
    return False


def questions_for(item: ReadItem) -> list[Question]:
    """The questions a read asks, in form order.

    As in the published side-by-side designs, a paired read asks only the preference
    questions (the independent reads already hold every score); independent and repeat
    reads ask everything except preferences.
    """
    questions = Question.objects.filter(study_id=item.session.study_id).order_by("order", "pk")
    if item.second_arm_id is not None:
        return list(questions.filter(kind=Question.Kind.PREFERENCE))
    return list(questions.exclude(kind=Question.Kind.PREFERENCE))


def missing_required(item: ReadItem) -> list[Question]:
    """The required questions of ``item`` not (completely) answered yet."""
    answers = {a.question: a for a in Answer.objects.filter(read_item=item)}
    return [q for q in questions_for(item) if q.required and not is_answered(q, answers.get(q.key))]
