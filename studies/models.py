"""Blinded reader studies: arms (protocol versions), cases, readers, sessions, reads, answers.

Readers see only :class:`ReadItem` aliases, never arms. :class:`AnswerHistory` is
append-only (model, queryset and a database trigger, migration 0002).
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone


def _random_seed() -> int:
    # Stored as a signed 64-bit column: 63 random bits keep it non-negative for numpy.
    return secrets.randbits(63)


def new_alias() -> str:
    return secrets.token_urlsafe(16)


class Study(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open"
        CLOSED = "closed_for_analysis", "Closed for analysis"

    title = models.CharField(max_length=200)
    coordinator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="coordinated_studies"
    )
    institution = models.ForeignKey(
        "accounts.Institution", on_delete=models.PROTECT, related_name="studies"
    )
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.DRAFT)
    seed = models.BigIntegerField(default=_random_seed, editable=False)
    washout_days = models.PositiveIntegerField(default=28)
    allow_edit_until_session_end = models.BooleanField(default=False)
    paired_reads = models.BooleanField(
        default=False, help_text="Also read every pair of arms of a case side by side."
    )
    repeat_fraction = models.FloatField(
        default=0.0, help_text="Fraction of (case, arm) reads repeated for intra-reader agreement."
    )
    repeat_washout_days = models.PositiveIntegerField(default=28)
    window_presets = models.JSONField(
        default=dict,
        blank=True,
        help_text="Window presets per sequence type (PD, PD-FS, T1, T2): "
        '{"PD": [{"name": "Cartilage", "width": 1800, "center": 1200}, ...]} in the '
        "display units of the blinded images; types left out use the defaults.",
    )
    reference_arm = models.ForeignKey(
        "Arm",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The standard-of-care arm: reference readers read it; analyses compare to it.",
    )
    opened = models.DateTimeField(null=True, blank=True)
    closed = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]
        verbose_name_plural = "studies"
        permissions = [
            ("read_study", "Can read the cases of this study as a reader"),
            ("reference_study", "Can enter reference-standard reads for this study"),
            ("adjudicate_study", "Can adjudicate reference-standard disagreements"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(repeat_fraction__gte=0) & models.Q(repeat_fraction__lte=1),
                name="study_repeat_fraction_0_1",
            )
        ]

    def __str__(self) -> str:
        return self.title


class Arm(models.Model):
    """One reconstruction under comparison: a specific (immutable) protocol version."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="arms")
    protocol = models.ForeignKey(
        "protocols.Protocol", on_delete=models.PROTECT, related_name="study_arms"
    )
    label = models.CharField(max_length=32, help_text="Coordinator-facing, e.g. 'A'.")

    class Meta:
        ordering = ["study", "label"]
        constraints = [
            models.UniqueConstraint(fields=["study", "label"], name="unique_arm_label"),
            models.UniqueConstraint(fields=["study", "protocol"], name="unique_arm_protocol"),
        ]

    def __str__(self) -> str:
        return f"{self.study}: arm {self.label}"


class StudyCase(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="study_cases")
    case = models.ForeignKey("cases.Case", on_delete=models.PROTECT, related_name="+")
    raw_series = models.ForeignKey(
        "cases.Series",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The raw series reconstructed per arm; blank if the case has only one.",
    )

    class Meta:
        ordering = ["study", "case"]
        constraints = [models.UniqueConstraint(fields=["study", "case"], name="unique_study_case")]

    def __str__(self) -> str:
        return f"{self.study}: {self.case.subject_code}"


class StudyReader(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="study_readers")
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    added = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "reader"]
        constraints = [
            models.UniqueConstraint(fields=["study", "reader"], name="unique_study_reader")
        ]

    def __str__(self) -> str:
        return f"{self.study}: reader {self.reader}"


class ReadingSession(models.Model):
    class Kind(models.TextChoices):
        INDEPENDENT = "independent", "Independent reads"
        REPEAT = "repeat", "Repeat reads"
        PAIRED = "paired", "Paired reads"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="sessions")
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    index = models.PositiveIntegerField()
    kind = models.CharField(max_length=12, choices=Kind.choices)
    washout_days = models.PositiveIntegerField(
        default=0, help_text="Days after the previous session's completion before this opens."
    )
    available_from = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    release_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["study", "reader", "index"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "reader", "index"], name="unique_session_index"
            )
        ]

    def __str__(self) -> str:
        return f"{self.study}: session {self.index + 1} of {self.reader}"

    def is_available(self, now=None) -> bool:
        now = now or timezone.now()
        return self.available_from is not None and self.available_from <= now


class ReadItem(models.Model):
    """One blinded read: the reader sees only ``alias`` (and ``second_alias`` when paired)."""

    class Kind(models.TextChoices):
        INDEPENDENT = "independent", "Independent"
        REPEAT = "repeat", "Repeat"
        PAIRED = "paired", "Paired"

    session = models.ForeignKey(ReadingSession, on_delete=models.CASCADE, related_name="items")
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    order_index = models.PositiveIntegerField()
    study_case = models.ForeignKey(StudyCase, on_delete=models.PROTECT, related_name="reads")
    arm = models.ForeignKey(Arm, on_delete=models.PROTECT, related_name="reads")
    second_arm = models.ForeignKey(
        Arm, null=True, blank=True, on_delete=models.PROTECT, related_name="paired_reads"
    )
    read_index = models.PositiveIntegerField(
        default=0, help_text="0 for the first read of (case, arm), 1 for its repeat."
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    alias = models.CharField(max_length=32, unique=True, default=new_alias, editable=False)
    second_alias = models.CharField(max_length=32, unique=True, null=True, blank=True)
    image_series = models.ForeignKey(
        "cases.Series",
        null=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The arm's reconstruction shown, fixed when the study opens.",
    )
    second_image_series = models.ForeignKey(
        "cases.Series", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    time_on_case_s = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["session", "order_index"]
        constraints = [
            models.UniqueConstraint(fields=["session", "order_index"], name="unique_read_order")
        ]

    def __str__(self) -> str:
        return f"read {self.alias}"


class ImageSet(models.Model):
    """One side of one read as its reader receives it: ``token`` (HMAC of the image alias,
    :func:`studies.reading.image_token`) is the only name the reader sees, and the database
    resolves it in every web process. ``series`` is the image set shown (pinned)."""

    read_item = models.ForeignKey(ReadItem, on_delete=models.CASCADE, related_name="image_sets")
    side = models.PositiveSmallIntegerField(help_text="0 the left/only image set, 1 the right.")
    token = models.CharField(max_length=32, unique=True)
    series = models.ForeignKey("cases.Series", on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["read_item", "side"], name="unique_image_set_side")
        ]

    def __str__(self) -> str:
        return f"image set {self.side} of {self.read_item}"


class BlindedSeries(models.Model):
    """The blinded, display-normalised instances of one image series, built once.

    ``blob`` is one ``multipart/related`` body (``boundary``) of the instances in anatomical
    order, written with placeholder UIDs; ``parts`` lists per instance its [start, end) byte
    range in the blob and the offsets of each placeholder UID, so serving a reader only
    writes the reader's own UIDs into those offsets. ``digest`` names the source content and
    the blinding version: a different digest means rebuild."""

    series = models.OneToOneField(
        "cases.Series", on_delete=models.CASCADE, related_name="blinded_display"
    )
    digest = models.CharField(max_length=64)
    blob = models.FileField(upload_to="blinded/", max_length=300)
    boundary = models.CharField(max_length=70)
    parts = models.JSONField(default=list)
    built_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "blinded series"

    def __str__(self) -> str:
        return f"blinded display of series {self.series_id}"


class Answer(models.Model):
    read_item = models.ForeignKey(ReadItem, on_delete=models.PROTECT, related_name="answers")
    question = models.CharField(max_length=64)
    value = models.JSONField(null=True)
    confidence = models.PositiveSmallIntegerField(null=True, blank=True)
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["read_item", "question"]
        constraints = [
            models.UniqueConstraint(fields=["read_item", "question"], name="unique_answer")
        ]

    def __str__(self) -> str:
        return f"{self.read_item}: {self.question}"


class Question(models.Model):
    """One item of a study's reading form; answers refer to it by ``key``.

    ``kind`` fixes the shape of an answer's value (checked by
    :func:`studies.questions.validate_answer`): Likert -> int in [scale_min, scale_max];
    finding -> one of ``choices`` (present/absent or grades), with a confidence 1-5 when
    ``with_confidence`` (the ROC rating); number -> float in ``unit``; text -> str; choice
    -> one of ``choices``; roi -> ``{"shape", "mean", "sd", "area_mm2", ...}`` from the
    viewer; preference (paired reads only) -> "left" | "right" | "equal".
    """

    class Kind(models.TextChoices):
        LIKERT = "likert", "Likert score"
        FINDING = "finding", "Diagnostic finding"
        NUMBER = "number", "Measurement"
        TEXT = "text", "Free text"
        CHOICE = "choice", "Single choice"
        ROI = "roi", "Region of interest"
        PREFERENCE = "preference", "Side-by-side preference"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="questions")
    key = models.SlugField(max_length=64)
    order = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    label = models.CharField(max_length=200)
    help_text = models.CharField(max_length=500, blank=True)
    criterion = models.CharField(
        max_length=64, blank=True, help_text="e.g. overall quality, noise, sharpness, artifacts"
    )
    structure = models.CharField(max_length=64, blank=True, help_text="Anatomical structure.")
    scale_min = models.SmallIntegerField(null=True, blank=True)
    scale_max = models.SmallIntegerField(null=True, blank=True)
    anchors = models.JSONField(
        default=dict, blank=True, help_text='Likert anchors, {"1": "non-diagnostic", ...}.'
    )
    choices = models.JSONField(default=list, blank=True)
    with_confidence = models.BooleanField(default=False)
    unit = models.CharField(max_length=16, blank=True)
    required = models.BooleanField(default=True)

    class Meta:
        ordering = ["study", "order", "pk"]
        constraints = [models.UniqueConstraint(fields=["study", "key"], name="unique_question_key")]

    def __str__(self) -> str:
        return f"{self.study}: {self.key}"

    def save(self, *args, **kwargs):
        from studies.questions import ensure_editable

        ensure_editable(self)
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        from studies.questions import ensure_editable

        ensure_editable(self)
        return super().delete(*args, **kwargs)


class ReferenceRead(models.Model):
    """One reference-panel member's value for (case, question), before adjudication."""

    study_case = models.ForeignKey(
        StudyCase, on_delete=models.CASCADE, related_name="reference_reads"
    )
    question = models.CharField(max_length=64)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    value = models.JSONField()
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["study_case", "question", "user"]
        constraints = [
            models.UniqueConstraint(
                fields=["study_case", "question", "user"], name="unique_reference_read"
            )
        ]

    def __str__(self) -> str:
        return f"{self.study_case}: {self.question} by {self.user}"


class ReferenceStandard(models.Model):
    """The truth for (case, question): by consensus, CSV import, agreement or adjudication."""

    class Source(models.TextChoices):
        CONSENSUS = "consensus", "Consensus panel"
        IMPORT = "import", "Imported (e.g. arthroscopy)"
        AGREEMENT = "agreement", "Two reference readers agreed"
        ADJUDICATED = "adjudicated", "Adjudicated"

    study_case = models.ForeignKey(StudyCase, on_delete=models.CASCADE, related_name="truths")
    question = models.CharField(max_length=64)
    value = models.JSONField()
    source = models.CharField(max_length=12, choices=Source.choices)
    entered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    entered_at = models.DateTimeField(default=timezone.now)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["study_case", "question"]
        constraints = [
            models.UniqueConstraint(
                fields=["study_case", "question"], name="unique_reference_standard"
            )
        ]

    def __str__(self) -> str:
        return f"{self.study_case}: {self.question} = {self.value}"


class HistoryImmutableError(Exception):
    """Raised on any attempt to change or delete an answer-history row."""


class AnswerHistoryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise HistoryImmutableError("answer history is append-only: update refused")

    def delete(self):
        raise HistoryImmutableError("answer history is append-only: delete refused")

    def bulk_update(self, objs, fields, batch_size=None):
        raise HistoryImmutableError("answer history is append-only: bulk_update refused")


class AnswerHistory(models.Model):
    answer = models.ForeignKey(Answer, on_delete=models.PROTECT, related_name="history")
    old_value = models.JSONField(null=True)
    new_value = models.JSONField(null=True)
    old_confidence = models.PositiveSmallIntegerField(null=True)
    new_confidence = models.PositiveSmallIntegerField(null=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    timestamp = models.DateTimeField(default=timezone.now)

    objects = AnswerHistoryQuerySet.as_manager()

    class Meta:
        ordering = ["answer", "timestamp", "id"]
        verbose_name_plural = "answer history"

    def __str__(self) -> str:
        return f"{self.answer} at {self.timestamp:%Y-%m-%d %H:%M:%S}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise HistoryImmutableError("answer history is append-only: change refused")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise HistoryImmutableError("answer history is append-only: delete refused")


class AnalysisRun(models.Model):
    """One statistician's analysis of a closed study, run on a Celery worker.

    ``parameters`` holds exactly what the analysis used (chosen analyses, reference arm,
    margins, bootstrap count, seed) so the bundle can reproduce it; ``result`` the numbers
    (every result's ``to_dict()``); report files live under ``output_dir`` of the default storage.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="analysis_runs")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    parameters = models.JSONField(default=dict)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    message = models.TextField(blank=True)
    result = models.JSONField(null=True, blank=True)
    output_dir = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"analysis {self.pk} of {self.study}"


class StudyPlan(models.Model):
    """A sample-size plan saved with a study before it opens: the readers x cases needed
    for the chosen power, from a pilot (a closed study) or stated assumptions.

    ``parameters`` holds the inputs (source, pilot question and arms, effect, alpha,
    power, variance components); ``result`` the power table and the recommendation, as
    :func:`studies.planning_service.compute_plan` returns them.
    """

    class Source(models.TextChoices):
        PILOT = "pilot", "Pilot study"
        ASSUMPTIONS = "assumptions", "Stated assumptions"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="plans")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    source = models.CharField(max_length=12, choices=Source.choices)
    pilot = models.ForeignKey(
        Study, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    parameters = models.JSONField(default=dict)
    result = models.JSONField(default=dict)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"plan {self.pk} of {self.study}"
