"""Log in, log out, change password, throttling of failed log-ins, CSRF."""

import io

from django.test import Client
from django.urls import reverse

from mriplatform.accounts.roles import Role
from mriplatform.audit.models import AuditEvent
from tests.factories import PASSWORD


def login(client, username, password):
    return client.post(reverse("accounts:login"), {"username": username, "password": password})


def test_login_logout_are_audited(client, make_user):
    user = make_user(Role.READER)
    response = login(client, user.username, PASSWORD)
    assert response.status_code == 302 and response["Location"] == reverse("accounts:home")
    assert client.get(reverse("accounts:home")).status_code == 200
    response = client.post(reverse("accounts:logout"))
    assert response.status_code == 302
    assert client.get(reverse("accounts:home")).status_code == 302
    actions = list(AuditEvent.objects.filter(actor=user).values_list("action", flat=True))
    assert "auth.login" in actions and "auth.logout" in actions


def test_logout_needs_post(client, make_user):
    client.force_login(make_user())
    assert client.get(reverse("accounts:logout")).status_code == 405


def test_wrong_password_is_refused_and_audited(client, make_user):
    user = make_user()
    response = login(client, user.username, "not-the-password")
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    event = AuditEvent.objects.get(action="auth.login_failed")
    assert event.details["username"] == user.username and event.actor is None


def test_failed_logins_lock_the_account(client, make_user, settings):
    user = make_user()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(client, user.username, "wrong")
    response = login(client, user.username, PASSWORD)  # right password, but locked
    assert response.status_code == 429
    assert b"Too many failed log-ins" in response.content
    assert client.get(reverse("accounts:home")).status_code == 302


def test_lock_is_per_username_and_address(client, make_user, settings):
    victim, other = make_user(), make_user()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(client, victim.username, "wrong")
    assert login(client, other.username, PASSWORD).status_code == 302
    elsewhere = Client(REMOTE_ADDR="192.0.2.9")
    assert login(elsewhere, victim.username, PASSWORD).status_code == 302


def test_password_change(client, make_user):
    user = make_user()
    client.force_login(user)
    response = client.post(
        reverse("accounts:password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "a-new-long-passphrase-77",
            "new_password2": "a-new-long-passphrase-77",
        },
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("a-new-long-passphrase-77")
    assert AuditEvent.objects.filter(actor=user, action="auth.password_change").exists()


def test_weak_new_password_is_refused(client, make_user):
    user = make_user()
    client.force_login(user)
    response = client.post(
        reverse("accounts:password_change"),
        {"old_password": PASSWORD, "new_password1": "12345678", "new_password2": "12345678"},
    )
    assert response.status_code == 200
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_login_without_csrf_token_is_refused(make_user):
    user = make_user()
    client = Client(enforce_csrf_checks=True)
    response = login(client, user.username, PASSWORD)
    assert response.status_code == 403


def test_demo_command_creates_one_user_per_role(db):
    from django.core.management import call_command

    from mriplatform.accounts.management.commands.setup_demo import DEMO_USERS, demo_password
    from mriplatform.accounts.models import User

    call_command("setup_demo", "--no-data", stdout=io.StringIO())
    call_command("setup_demo", "--no-data", stdout=io.StringIO())  # idempotent
    for username, (roles, superuser) in DEMO_USERS.items():
        user = User.objects.get(username=username)
        assert user.check_password(demo_password(username))
        assert all(user.has_role(r) for r in roles)
        assert user.is_superuser == superuser


def test_demo_data_goes_through_ingest_and_protocol_validation(db, settings, tmp_path):
    from mriplatform.cases.demo import create_demo_cases
    from mriplatform.protocols.demo import DEMO_PROTOCOLS, create_demo_protocols
    from tests.factories import InstitutionFactory

    settings.MEDIA_ROOT = tmp_path
    site = InstitutionFactory()
    cases = create_demo_cases(site, None, n_slices=2, matrix=(64, 64))
    assert [c.subject_code for c in cases] == ["DEMO-0001", "DEMO-0002"]
    raw = cases[0].series.get()
    assert (raw.kind, raw.n_slices, raw.n_coils, raw.fully_sampled) == ("fastmri_h5", 2, 8, True)
    assert raw.deid_report  # went through de-identification like an upload
    protocols = create_demo_protocols()
    assert len(protocols) == len(DEMO_PROTOCOLS) + 1
    assert all(p.reference == protocols[0] for p in protocols[1:])
    assert create_demo_cases(site, None, n_slices=2, matrix=(64, 64)) == cases  # idempotent
