from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "mriplatform.audit"
    label = "audit"
    verbose_name = "Audit trail"
