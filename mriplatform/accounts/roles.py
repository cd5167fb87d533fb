"""The four roles of a reader trial and the model permissions each one carries.

Roles are Django groups so that site administrators manage them in the admin.
Apps add their permissions to :data:`ROLE_PERMISSIONS`; groups are brought in line
after every ``migrate``. Per-object rights (a reader assigned to one study, a site
administrator over their own institution) are django-guardian object permissions.
"""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.db import models


class Role(models.TextChoices):
    SITE_ADMIN = "site_admin", "Site administrators"
    COORDINATOR = "coordinator", "Study coordinators"
    READER = "reader", "Readers"
    STATISTICIAN = "statistician", "Statisticians"


# "app_label.codename" permissions per role. Later apps extend this table.
ROLE_PERMISSIONS: dict[str, set[str]] = {
    Role.SITE_ADMIN: {
        "accounts.view_institution",
        "accounts.view_user",
        "accounts.add_user",
        "accounts.change_user",
        "audit.view_auditevent",
        "workers.view_workerstatus",
        "cases.view_case",
        "cases.add_case",
        "cases.change_case",
        "cases.view_series",
        "cases.add_series",
        "protocols.view_protocol",
        "protocols.add_protocol",
        "jobs.view_reconjob",
        "jobs.add_reconjob",
    },
    Role.COORDINATOR: {
        "accounts.view_user",
        "accounts.view_institution",
        "cases.view_case",
        "cases.view_series",
        "protocols.view_protocol",
        "jobs.view_reconjob",
        "studies.view_study",
        "studies.add_study",
        "studies.change_study",
    },
    Role.READER: set(),
    Role.STATISTICIAN: set(),
}


def sync_role_groups(**kwargs) -> None:
    """Create the role groups and set exactly the permissions listed for each."""
    for role in Role:
        group, _ = Group.objects.get_or_create(name=role.label)
        wanted = ROLE_PERMISSIONS.get(role, set())
        perms = []
        for dotted in sorted(wanted):
            app_label, codename = dotted.split(".", 1)
            perm = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if perm is not None:
                perms.append(perm)
        group.permissions.set(perms)


def assign_role(user, role: str) -> None:
    """Add ``user`` to the group of ``role``."""
    user.groups.add(Group.objects.get(name=Role(role).label))


def role_required(*roles: str):
    """View decorator: the user must hold one of ``roles`` (403 otherwise)."""
    from functools import wraps

    from django.contrib.auth.decorators import login_required
    from django.core.exceptions import PermissionDenied

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.user.is_superuser or any(request.user.has_role(r) for r in roles):
                return view(request, *args, **kwargs)
            raise PermissionDenied("Your role does not allow this page.")

        return wrapped

    return decorator
