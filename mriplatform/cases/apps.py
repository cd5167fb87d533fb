from django.apps import AppConfig


class CasesConfig(AppConfig):
    name = "mriplatform.cases"
    label = "cases"
