"""A demo administrator logs in with Chromium and sees a live worker on the worker page."""

import pytest

from mriplatform.accounts.roles import Role
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_logs_in_and_sees_live_worker(page, live_server, make_user, celery_worker_process):
    admin = make_user(Role.SITE_ADMIN, username="siteadmin")
    page.goto(f"{live_server.url}/workers/")
    assert "/accounts/login/" in page.url
    page.fill("#id_username", admin.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/workers/")
    row = page.locator(f'tr[data-hostname="{celery_worker_process}"]')
    row.wait_for()
    assert "up" in row.inner_text()
    # The probe task finishes after the first render; the page refreshes itself.
    selector = f'tr[data-hostname="{celery_worker_process}"]'
    page.wait_for_function(
        "s => { const r = document.querySelector(s); return r && r.innerText.includes('CPU'); }",
        arg=selector,
        timeout=30_000,
    )


def test_wrong_password_shows_an_error(page, live_server, make_user):
    user = make_user()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "wrong-password")
    page.click("button[type=submit]")
    assert page.locator(".error").inner_text().startswith("Please enter a correct")
