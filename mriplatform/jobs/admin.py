from django.contrib import admin

from mriplatform.jobs.models import ReconJob


@admin.register(ReconJob)
class ReconJobAdmin(admin.ModelAdmin):
    list_display = ("pk", "input_series", "protocol", "status", "attempts", "created", "finished")
    list_filter = ("status", "protocol__method")
    readonly_fields = [f.name for f in ReconJob._meta.fields]
