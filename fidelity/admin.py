from django.contrib import admin

from fidelity.models import FidelityRun


@admin.register(FidelityRun)
class FidelityRunAdmin(admin.ModelAdmin):
    list_display = ("name", "status", "progress", "created_by", "created")
    list_filter = ("status",)
