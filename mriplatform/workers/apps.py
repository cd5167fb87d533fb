from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "mriplatform.workers"
    label = "workers"
    verbose_name = "Celery workers"
