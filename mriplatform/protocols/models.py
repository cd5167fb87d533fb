"""Reconstruction protocols: method + parameters + sampling + sequence timing, versioned.

A protocol row never changes once saved (studies and jobs point at exact versions);
editing makes a new version in the same lineage and marks it current.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction

from recon_engine.registry import ParameterError, get_method

# Fields that define what a protocol does; none may change after creation.
SCIENTIFIC_FIELDS = (
    "name",
    "method",
    "params",
    "mask_pattern",
    "acceleration",
    "center_fraction",
    "mask_seed",
    "tr_ms",
    "phase_encodes",
    "nsa",
    "sms_factor",
    "partitions",
    "echo_train_length",
    "reference",
)

# Sequence timing that, when it differs from the reference protocol's, makes the time
# reduction compare two different sequences rather than two accelerations of one.
TIMING_FIELDS = ("tr_ms", "phase_encodes", "nsa", "partitions", "echo_train_length")


class ProtocolImmutableError(Exception):
    """A saved protocol version was about to change; make a new version instead."""


class MaskPattern(models.TextChoices):
    AS_ACQUIRED = "as_acquired", "As acquired (use the data's own sampling)"
    UNIFORM = "uniform", "Uniform with ACS lines (1D)"
    EQUISPACED = "equispaced", "Equispaced, fastMRI (1D)"
    RANDOM = "random", "Random, fastMRI (1D)"
    VARIABLE_DENSITY = "variable_density", "Variable density (1D)"
    POISSON = "poisson", "Poisson disc (2D)"
    CAIPIRINHA = "caipirinha", "CAIPIRINHA (2D)"


class Protocol(models.Model):
    lineage = models.UUIDField(default=uuid.uuid4, editable=False, db_index=True)
    version = models.PositiveIntegerField(default=1, editable=False)
    is_current = models.BooleanField(default=True, editable=False)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    method = models.CharField(max_length=64, help_text="A method of the engine's registry.")
    params = models.JSONField(default=dict, blank=True)
    mask_pattern = models.CharField(
        max_length=20, choices=MaskPattern.choices, default=MaskPattern.AS_ACQUIRED
    )
    acceleration = models.FloatField(default=1.0, help_text="Nominal acceleration factor R.")
    center_fraction = models.FloatField(
        default=0.08, help_text="Fully sampled centre (ACS) as a fraction of phase encodes."
    )
    mask_seed = models.PositiveIntegerField(default=0)
    tr_ms = models.FloatField("TR (ms)", default=3000.0)
    phase_encodes = models.PositiveIntegerField(default=256)
    nsa = models.FloatField("NSA (averages)", default=1.0)
    sms_factor = models.PositiveIntegerField("SMS factor", default=1)
    partitions = models.PositiveIntegerField(default=1, help_text="Slice partitions for 3D")
    echo_train_length = models.PositiveIntegerField(default=1)
    reference = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Protocol whose acquisition time is the 100% for the time reduction.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["lineage", "version"], name="unique_protocol_version"),
            models.UniqueConstraint(
                fields=["lineage"],
                condition=models.Q(is_current=True),
                name="one_current_version",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            stored = Protocol.objects.filter(pk=self.pk).values(*SCIENTIFIC_FIELDS).first()
            if stored is not None:
                mine = {
                    f: getattr(self, f if f != "reference" else "reference_id")
                    for f in SCIENTIFIC_FIELDS
                }
                changed = [f for f in SCIENTIFIC_FIELDS if stored[f] != mine[f]]
                if changed:
                    raise ProtocolImmutableError(
                        f"protocol versions are immutable ({', '.join(changed)}); use new_version()"
                    )
        super().save(*args, **kwargs)

    def clean(self) -> None:
        try:
            spec = get_method(self.method)
        except KeyError as exc:
            raise ValidationError({"method": str(exc.args[0])}) from None
        try:
            self.params = spec.validate(self.params)
        except ParameterError as exc:
            raise ValidationError({"params": str(exc)}) from None
        if spec.family == "simultaneous_multislice" and self.sms_factor != self.params.get(
            "multiband", self.sms_factor
        ):
            raise ValidationError(
                {
                    "sms_factor": f"must equal the method's multiband ({self.params['multiband']}):"
                    " it sets the acquisition time of the slices excited together"
                }
            )
        if self.acceleration < 1:
            raise ValidationError({"acceleration": "must be at least 1"})
        if self.mask_pattern == MaskPattern.AS_ACQUIRED and self.acceleration != 1:
            raise ValidationError(
                {"acceleration": "leave at 1 for 'as acquired': the data's mask decides"}
            )
        if not 0 < self.center_fraction < 1:
            raise ValidationError({"center_fraction": "must lie between 0 and 1"})
        if self.reference_id and self.reference_id == self.pk:
            raise ValidationError({"reference": "a protocol cannot be its own reference"})

    def new_version(self, user=None, **changes) -> Protocol:
        """Save a copy with ``changes`` as the lineage's next (current) version."""
        with transaction.atomic():
            # Lock every version of the lineage (not just one row), so two concurrent
            # edits queue up and each gets its own version number.
            latest = list(
                Protocol.objects.select_for_update()
                .filter(lineage=self.lineage)
                .order_by("-version")
            )[0]
            Protocol.objects.filter(lineage=self.lineage).update(is_current=False)
            fields = {f: getattr(self, f) for f in SCIENTIFIC_FIELDS}
            fields["description"] = self.description
            fields.update(changes)
            version = Protocol(
                lineage=self.lineage, version=latest.version + 1, created_by=user, **fields
            )
            version.full_clean()
            version.save()
        return version

    @property
    def method_spec(self):
        return get_method(self.method)

    # Acquisition time ------------------------------------------------------------
    @property
    def effective_acceleration(self) -> float:
        """The R the protocol's own mask achieves on its phase-encode grid.

        ACS lines and random draws make it differ from the nominal R (uniform R=4 with 8 %
        ACS on 256 lines acquires 79 lines: R=3.24), and the acquisition time follows the
        lines actually acquired. 1D patterns are evaluated on ``phase_encodes`` lines, 2D
        patterns on ``partitions x phase_encodes`` (3D); the nominal R is used for data
        sampled as acquired and for 2D patterns on a 2D acquisition (no second phase axis).
        """
        nominal = float(self.acceleration)
        if self.mask_pattern == MaskPattern.AS_ACQUIRED or nominal <= 1:
            return nominal
        if self.mask_pattern in (MaskPattern.POISSON, MaskPattern.CAIPIRINHA):
            if self.partitions <= 1:
                return nominal
            shape = (self.partitions, self.phase_encodes)
        else:
            shape = (1, self.phase_encodes)
        from recon_engine.registry import ParameterError
        from recon_engine.sampling import make_mask

        try:
            made = make_mask(
                self.mask_pattern,
                shape,
                nominal,
                seed=self.mask_seed,
                center_fraction=self.center_fraction,
            )
        except ParameterError:
            return nominal  # form validation reports the bad combination; TA stays defined
        return float(made.effective_acceleration)

    @property
    def acquisition_time_s(self) -> float:
        from recon_engine.timing import acquisition_time

        return acquisition_time(
            phase_encodes=self.phase_encodes,
            tr_ms=self.tr_ms,
            nsa=self.nsa,
            acceleration=self.effective_acceleration,
            sms_factor=self.sms_factor,
            partitions=self.partitions,
            echo_train_length=self.echo_train_length,
        )

    @property
    def time_reduction(self) -> float | None:
        """Fraction of the reference protocol's acquisition time saved (None without one)."""
        if self.reference is None:
            return None
        from recon_engine.timing import time_reduction

        return time_reduction(self.acquisition_time_s, self.reference.acquisition_time_s)

    def timing_differences(self) -> list[tuple[str, object, object]]:
        """(label, this protocol's value, the reference's) for each timing field that differs.

        Empty without a reference. SMS factor and acceleration are not listed: reducing
        time through them is what a comparison against the reference is for.
        """
        if self.reference is None:
            return []
        return [
            (self._meta.get_field(name).verbose_name, getattr(self, name), value)
            for name in TIMING_FIELDS
            if (value := getattr(self.reference, name)) != getattr(self, name)
        ]


def external_model_upload_path(instance: ExternalModel, filename: str) -> str:
    suffix = ".onnx" if instance.format == "onnx" else ".pt"
    return f"external_models/{instance.name}-{instance.sha256[:12]}{suffix}"


class ExternalModel(models.Model):
    """A site's own network (TorchScript/ONNX), offered as the engine method ``ext_<name>``.

    The file lives in the default storage (S3 in production); every process that needs it
    copies it into its own model cache (:mod:`mriplatform.protocols.external_models`).
    Rows are never changed or deleted: protocol versions may name the method.
    """

    class Format(models.TextChoices):
        TORCHSCRIPT = "torchscript", "TorchScript"
        ONNX = "onnx", "ONNX"

    name = models.CharField(max_length=48, unique=True)
    format = models.CharField(max_length=12, choices=Format.choices)
    file = models.FileField(upload_to=external_model_upload_path, max_length=255)
    sha256 = models.CharField(max_length=64)
    card = models.JSONField()
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"ext_{self.name}"

    @property
    def method(self) -> str:
        return f"ext_{self.name}"
