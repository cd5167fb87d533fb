from django.contrib import admin

from mriplatform.workers.models import WorkerStatus


@admin.register(WorkerStatus)
class WorkerStatusAdmin(admin.ModelAdmin):
    list_display = ("hostname", "queues", "last_seen", "probed_at")
    readonly_fields = ("hostname", "queues", "device", "software", "last_seen", "probed_at")
