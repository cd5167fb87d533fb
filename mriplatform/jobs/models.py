"""Reconstruction jobs: one protocol applied to one raw series, run on a Celery worker."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ReconJob(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    FINISHED = (Status.SUCCEEDED, Status.FAILED)

    input_series = models.ForeignKey("cases.Series", on_delete=models.PROTECT, related_name="jobs")
    protocol = models.ForeignKey(
        "protocols.Protocol", on_delete=models.PROTECT, related_name="jobs"
    )
    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    attempt_limit = models.PositiveIntegerField(
        default=3, help_text="Attempts allowed before the job fails (raised by each retry)."
    )
    celery_task_id = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=255, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Last sign of life of the running attempt (renewed every JOB_HEARTBEAT_SECONDS).",
    )
    lease_owner = models.CharField(
        max_length=255, blank=True, help_text="Worker, process and attempt holding the lease."
    )
    output_series = models.OneToOneField(
        "cases.Series", null=True, blank=True, on_delete=models.PROTECT, related_name="source_job"
    )
    metrics = models.JSONField(default=dict, blank=True, help_text="NMSE, PSNR, SSIM vs reference")
    provenance = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["input_series", "protocol"], name="one_job_per_series_and_protocol"
            )
        ]

    def __str__(self) -> str:
        return f"{self.protocol} on {self.input_series}"

    @property
    def case(self):
        return self.input_series.case

    @property
    def progress_percent(self) -> int:
        if self.status == self.Status.SUCCEEDED:
            return 100
        if not self.progress_total:
            return 0
        return int(100 * self.progress_done / self.progress_total)
