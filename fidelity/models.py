"""A fidelity run: detectability of inserted findings per protocol, case and lesion size."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from mriplatform.cases.models import Case
from mriplatform.protocols.models import Protocol


class FidelityRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    name = models.CharField(max_length=120)
    protocols = models.ManyToManyField(Protocol, related_name="fidelity_runs")
    cases = models.ManyToManyField(
        Case,
        blank=True,
        related_name="fidelity_runs",
        help_text="Cases with fully sampled raw k-space; none: the shipped simulated slice.",
    )
    lesion_kind = models.CharField(max_length=24, default="focus")
    contrast = models.FloatField(default=-0.3, help_text="Fraction of the local signal.")
    sizes_mm = models.JSONField(default=list, help_text="Lesion sizes in mm.")
    n_realisations = models.PositiveIntegerField(default=50)
    snr = models.FloatField(default=20.0)
    pixel_mm = models.FloatField(default=1.0, help_text="Pixel size of the background slice.")
    matrix = models.PositiveIntegerField(default=128, help_text="Simulated slice size (pixels).")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0, help_text="Share of the work done, 0-1.")
    results = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="fidelity_runs"
    )
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_status_display()})"
