from django.contrib import admin

from studies.models import (
    AnswerHistory,
    Arm,
    Question,
    ReadingSession,
    ReferenceStandard,
    Study,
    StudyCase,
    StudyReader,
)
from studies.questions import is_locked


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


@admin.register(Question)
class QuestionAdmin(admin.ModelAdmin):
    """Questions of reading forms; read-only (and not deletable) once readers answered."""

    list_display = ("study", "order", "key", "kind", "label", "required")
    list_filter = ("kind",)
    search_fields = ("key", "label", "study__title")

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and is_locked(obj):
            return [f.name for f in Question._meta.fields]
        return super().get_readonly_fields(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and is_locked(obj):
            return False
        return super().has_delete_permission(request, obj)


@admin.register(ReferenceStandard)
class ReferenceStandardAdmin(admin.ModelAdmin):
    """Read-only: the reference standard is entered through the audited reference views."""

    list_display = ("study_case", "question", "value", "source", "entered_by", "entered_at")
    list_filter = ("source",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
