from django.contrib import admin

from mriplatform.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit trail is append-only."""

    list_display = ("timestamp", "actor_username", "action", "object_repr", "ip_address")
    list_filter = ("action",)
    search_fields = ("actor_username", "action", "object_repr", "object_id")
    date_hierarchy = "timestamp"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
