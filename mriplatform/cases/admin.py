from django.contrib import admin

from mriplatform.cases.models import Case, Instance, Series


class SeriesInline(admin.TabularInline):
    model = Series
    fields = ("kind", "description", "n_slices", "n_coils", "matrix", "created")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin):
    list_display = (
        "subject_code",
        "institution",
        "anatomy",
        "field_strength_t",
        "vendor",
        "created",
    )
    list_filter = ("institution", "anatomy", "vendor")
    search_fields = ("subject_code", "sequence")
    inlines = [SeriesInline]


@admin.register(Series)
class SeriesAdmin(admin.ModelAdmin):
    list_display = ("__str__", "kind", "n_slices", "n_coils", "created")
    list_filter = ("kind",)
    readonly_fields = ("uuid", "deid_report", "metadata", "series_instance_uid")


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ("series", "instance_number", "sop_instance_uid")
