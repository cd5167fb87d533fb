"""Celery application.

Queues: ``recon`` for reconstruction work (GPU workers when present) and
``default`` for everything else. Scale-out is Celery's own: start more workers
on more machines against the same broker.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mriplatform.settings")

app = Celery("mriplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
