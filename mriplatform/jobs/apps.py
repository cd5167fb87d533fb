from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "mriplatform.jobs"
    label = "jobs"
