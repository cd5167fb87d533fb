from django.contrib import admin

from studies.models import AnswerHistory, Arm, ReadingSession, Study, StudyCase, StudyReader


class ArmInline(admin.TabularInline):
    model = Arm
    extra = 0


class StudyCaseInline(admin.TabularInline):
    model = StudyCase
    extra = 0
    raw_id_fields = ("case", "raw_series")


class StudyReaderInline(admin.TabularInline):
    model = StudyReader
    extra = 0
    raw_id_fields = ("reader",)


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ("title", "coordinator", "institution", "status", "washout_days")
    list_filter = ("status",)
    search_fields = ("title",)
    readonly_fields = ("seed", "opened")
    inlines = [ArmInline, StudyCaseInline, StudyReaderInline]


@admin.register(ReadingSession)
class ReadingSessionAdmin(admin.ModelAdmin):
    """Read-only: sessions come from the reading plan; early release goes through the
    audited service, never through an admin edit."""

    list_display = ("study", "reader", "index", "kind", "available_from", "completed_at")
    list_filter = ("kind",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AnswerHistory)
class AnswerHistoryAdmin(admin.ModelAdmin):
    """Read-only: answer history is append-only."""

    list_display = ("answer", "user", "timestamp")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
