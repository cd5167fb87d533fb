from django.contrib import admin

from mriplatform.protocols.models import Protocol


@admin.register(Protocol)
class ProtocolAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "is_current", "method", "mask_pattern", "acceleration")
    list_filter = ("method", "is_current", "mask_pattern")
    search_fields = ("name", "method")
    readonly_fields = ("lineage", "version", "is_current", "created", "created_by")

    def has_change_permission(self, request, obj=None):
        # Versions are immutable; edit through the protocol pages, which make a new version.
        return False
