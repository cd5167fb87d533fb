"""Who may open what: a role x page matrix, and per-object rights through django-guardian."""

import pytest
from django.urls import reverse
from guardian.shortcuts import assign_perm

from mriplatform.accounts.roles import Role

PAGES = ["workers:status", "workers:status-json"]


@pytest.fixture(autouse=True)
def no_broadcast(monkeypatch):
    # The permission matrix is about access, not about workers: skip the broker ping.
    monkeypatch.setattr("mriplatform.workers.views.refresh_workers", lambda: [])


@pytest.mark.parametrize("name", PAGES)
def test_anonymous_is_sent_to_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


@pytest.mark.parametrize("name", PAGES)
@pytest.mark.parametrize(
    "role, allowed",
    [
        (Role.SITE_ADMIN, True),
        (Role.COORDINATOR, False),
        (Role.READER, False),
        (Role.STATISTICIAN, False),
    ],
)
def test_role_matrix(client, make_user, name, role, allowed):
    client.force_login(make_user(role))
    response = client.get(reverse(name))
    assert response.status_code == (200 if allowed else 403)


def test_admin_site_only_for_staff(client, make_user):
    client.force_login(make_user(Role.READER))
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and "login" in response["Location"]


def test_object_permission_is_per_institution(make_user):
    from tests.factories import InstitutionFactory

    mine, other = InstitutionFactory(), InstitutionFactory()
    admin = make_user(Role.SITE_ADMIN, institution=mine)
    assign_perm("accounts.change_institution", admin, mine)
    assert admin.has_perm("accounts.change_institution", mine)
    assert not admin.has_perm("accounts.change_institution", other)
    assert not admin.has_perm("accounts.change_institution")  # no model-wide right


def test_admin_site_is_for_superusers_only_even_for_staff_site_admins(client, make_user):
    staff_admin = make_user(Role.SITE_ADMIN, is_staff=True)
    client.force_login(staff_admin)
    response = client.get(reverse("admin:accounts_user_change", args=[staff_admin.pk]))
    assert response.status_code == 302 and "login" in response["Location"]
    superuser = make_user(is_staff=True, is_superuser=True)
    client.force_login(superuser)
    assert client.get(reverse("admin:index")).status_code == 200
