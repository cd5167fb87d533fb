"""Roles are groups carrying exactly the permissions their table lists."""

from django.contrib.auth.models import Group

from mriplatform.accounts.roles import ROLE_PERMISSIONS, Role


def test_every_role_has_a_group_with_its_permissions(db):
    for role in Role:
        group = Group.objects.get(name=role.label)
        have = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}
        assert have == ROLE_PERMISSIONS[role]


def test_has_role_and_role_names(make_user):
    reader = make_user(Role.READER)
    both = make_user(Role.COORDINATOR, Role.STATISTICIAN)
    assert reader.has_role(Role.READER) and not reader.has_role(Role.SITE_ADMIN)
    assert set(both.role_names) == {"coordinator", "statistician"}
    reader.is_active = False
    assert not reader.has_role(Role.READER)


def test_site_admin_role_grants_worker_and_audit_views(make_user):
    admin = make_user(Role.SITE_ADMIN)
    reader = make_user(Role.READER)
    assert admin.has_perm("workers.view_workerstatus")
    assert admin.has_perm("audit.view_auditevent")
    assert not reader.has_perm("workers.view_workerstatus")
    assert not reader.has_perm("audit.view_auditevent")
