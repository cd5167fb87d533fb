from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from guardian.admin import GuardedModelAdmin

from mriplatform.accounts.models import Institution, User


@admin.register(Institution)
class InstitutionAdmin(GuardedModelAdmin):
    list_display = ("name", "code", "country")
    search_fields = ("name", "code")


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    fieldsets = BaseUserAdmin.fieldsets + (("Site", {"fields": ("institution",)}),)
    list_display = ("username", "email", "institution", "is_active", "is_staff")
    list_filter = ("institution", "groups", "is_active")

    def has_delete_permission(self, request, obj=None):
        # Trial records need their users: deactivate instead of deleting.
        return False
