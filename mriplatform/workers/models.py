"""What the platform last learnt about each Celery worker."""

from __future__ import annotations

from django.db import models


class WorkerStatus(models.Model):
    """One Celery worker, as its last answer to the probe broadcast described it.

    ``last_seen``/``probed_at`` are when it last answered
    (:mod:`mriplatform.workers.control`); ``queues``, ``device`` and ``software`` are what
    it said then.
    """

    hostname = models.CharField(max_length=255, unique=True)
    queues = models.JSONField(default=list, blank=True)
    device = models.JSONField(default=dict, blank=True)
    software = models.JSONField(default=dict, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    probed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["hostname"]
        verbose_name_plural = "worker statuses"

    def __str__(self) -> str:
        return self.hostname

    @property
    def has_gpu(self) -> bool:
        return str(self.device.get("device", "")).startswith("cuda")
