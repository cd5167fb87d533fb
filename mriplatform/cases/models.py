"""Cases (one de-identified examination) and the series they hold.

Everything stored here has been de-identified on ingest (:mod:`mriplatform.cases.deid`):
files are renamed to random names, UIDs remapped per case and dates shifted per case.
"""

from __future__ import annotations

import math
import re
import secrets
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.db import models

MAX_NOTES_LENGTH = 4000
SUBJECT_CODE_FORBIDDEN = re.compile(r"[\\^=\x00-\x1f\x7f]")
MAX_FIELD_STRENGTH_T = 30.0  # above every human and preclinical MR magnet built so far


def validate_subject_code(value: str) -> None:
    """A subject code becomes a DICOM PN and LO value: no ``\\``, ``^``, ``=`` or control
    characters (tab included), and not blank."""
    if not value.strip():
        raise ValidationError("the subject code must not be blank")
    if bad := sorted(set(SUBJECT_CODE_FORBIDDEN.findall(value))):
        shown = ", ".join(repr(c) for c in bad)
        raise ValidationError(
            f"the subject code may not contain {shown} (\\, ^, = and control characters "
            "have a meaning in DICOM names)"
        )


def validate_field_strength(value: float | None) -> None:
    """Field strength in tesla: finite, above 0 and at most 30 T."""
    if value is None:
        return
    if not math.isfinite(value) or not 0 < value <= MAX_FIELD_STRENGTH_T:
        raise ValidationError(
            f"the field strength must be a number of tesla above 0 and at most "
            f"{MAX_FIELD_STRENGTH_T:g}"
        )


def _random_shift() -> int:
    # Shift dates back by 1-3 years (in days), a different amount per case.
    return -secrets.randbelow(2 * 365) - 365


def _uid_secret() -> str:
    return secrets.token_hex(32)


class Anatomy(models.TextChoices):
    KNEE = "knee", "Knee"
    SPINE = "spine", "Spine"
    SHOULDER = "shoulder", "Shoulder"
    ANKLE = "ankle", "Ankle"
    BRAIN = "brain", "Brain"
    OTHER = "other", "Other"


class Case(models.Model):
    """One patient examination, de-identified: only a subject code names the patient."""

    institution = models.ForeignKey(
        "accounts.Institution", on_delete=models.PROTECT, related_name="cases"
    )
    subject_code = models.CharField(max_length=64, validators=[validate_subject_code])
    anatomy = models.CharField(max_length=16, choices=Anatomy.choices, default=Anatomy.OTHER)
    field_strength_t = models.FloatField(
        "field strength (T)", null=True, blank=True, validators=[validate_field_strength]
    )
    vendor = models.CharField(max_length=64, blank=True)
    sequence = models.CharField(max_length=128, blank=True, help_text="e.g. PD-weighted FSE")
    notes = models.TextField(blank=True, validators=[MaxLengthValidator(MAX_NOTES_LENGTH)])
    source_key = models.CharField(
        max_length=64,
        blank=True,
        db_index=True,
        editable=False,
        help_text="Keyed hash of the sender's patient and study identifiers (DICOM receiver): "
        "links later sends of the same study to this case without storing the identifiers.",
    )
    date_shift_days = models.IntegerField(default=_random_shift, editable=False)
    uid_secret = models.CharField(max_length=64, default=_uid_secret, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["institution", "subject_code"]
        constraints = [
            models.UniqueConstraint(
                fields=["institution", "subject_code"], name="unique_subject_per_site"
            ),
            # NaN and infinity fail this too (PostgreSQL sorts NaN above every number).
            models.CheckConstraint(
                condition=models.Q(field_strength_t__isnull=True)
                | models.Q(field_strength_t__gt=0, field_strength_t__lte=MAX_FIELD_STRENGTH_T),
                name="field_strength_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject_code} ({self.get_anatomy_display()})"


def series_upload_path(instance: Series, filename: str) -> str:
    # Never keep the uploaded file name: it often carries the patient's name.
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    return f"cases/{instance.case_id}/series/{uuid.uuid4().hex}.{suffix}"


def instance_upload_path(instance: Instance, filename: str) -> str:
    return f"cases/{instance.series.case_id}/dicom/{instance.series_id}/{uuid.uuid4().hex}.dcm"


class Series(models.Model):
    """Raw k-space, an image series, or a reconstruction made by a job."""

    class Kind(models.TextChoices):
        FASTMRI = "fastmri_h5", "Raw k-space (fastMRI HDF5)"
        ISMRMRD = "ismrmrd_h5", "Raw k-space (ISMRMRD HDF5)"
        DICOM = "dicom", "DICOM image series"
        RECONSTRUCTION = "reconstruction", "Reconstruction"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="series")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    description = models.CharField(
        max_length=200, blank=True, help_text="Shown to administrators only, never to readers."
    )
    file = models.FileField(upload_to=series_upload_path, max_length=300, blank=True)
    series_instance_uid = models.CharField(max_length=64, blank=True)
    n_slices = models.PositiveIntegerField(null=True, blank=True)
    n_coils = models.PositiveIntegerField(null=True, blank=True)
    matrix = models.JSONField(default=list, blank=True, help_text="[height, width] of k-space")
    fully_sampled = models.BooleanField(null=True)
    metadata = models.JSONField(default=dict, blank=True)
    deid_report = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["case", "created"]
        verbose_name_plural = "series"

    def __str__(self) -> str:
        return f"{self.case.subject_code}: {self.description or self.get_kind_display()}"

    @property
    def is_raw(self) -> bool:
        return self.kind in (self.Kind.FASTMRI, self.Kind.ISMRMRD)


class Instance(models.Model):
    """One DICOM file of an image series (original upload or reconstruction output)."""

    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="instances")
    file = models.FileField(upload_to=instance_upload_path, max_length=300)
    sop_instance_uid = models.CharField(max_length=64)
    instance_number = models.IntegerField(default=0)
    slice_location = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["series", "instance_number", "slice_location"]
        constraints = [
            models.UniqueConstraint(fields=["series", "sop_instance_uid"], name="unique_sop")
        ]

    def __str__(self) -> str:
        return f"{self.series} #{self.instance_number}"
