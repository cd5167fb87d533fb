from django.apps import AppConfig


class StudiesConfig(AppConfig):
    name = "studies"
    label = "studies"
    verbose_name = "Reader studies"
    default_auto_field = "django.db.models.BigAutoField"
