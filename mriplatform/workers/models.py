"""What the platform last learnt about each Celery worker."""

from __future__ import annotations

from django.db import models


class WorkerStatus(models.Model):
    """One Celery worker, as seen by the last broadcast ping and its last probe task.

    ``last_seen`` is when it last answered a broadcast; ``device`` and ``probed_at``
    come from :func:`mriplatform.workers.tasks.probe_worker` run on that worker.
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
