"""The protocol editor, in Chromium: changing the method keeps what was typed, and choosing
a reference copies its sequence timing (no silent "-236 %" time reduction)."""

import re

import pytest

from mriplatform.accounts.roles import Role
from mriplatform.protocols.models import Protocol
from tests.browser.test_cases_jobs import login
from tests.factories import ProtocolFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_method_change_keeps_typed_values_and_reference_sets_timing(page, live_server, make_user):
    reference = ProtocolFactory(
        name="Fully sampled TSE",
        method="rss",
        mask_pattern="as_acquired",
        acceleration=1,
        tr_ms=600,
        phase_encodes=256,
        echo_train_length=4,
    )
    url = live_server.url
    login(page, url, make_user(Role.SITE_ADMIN))
    page.goto(f"{url}/protocols/new/")
    page.fill("#id_name", "CS R4 knee")
    page.fill("#id_description", "typed before choosing the method")
    page.fill("#id_acceleration", "4")

    page.select_option("#id_method", "cs_wavelet")
    page.locator("#method-title", has_text="L1").wait_for()
    assert page.input_value("#id_name") == "CS R4 knee"  # no reload: nothing typed is lost
    assert page.input_value("#id_description") == "typed before choosing the method"
    assert page.input_value("#id_acceleration") == "4"
    page.fill("#id_param__iterations", "40")

    page.select_option("#id_reference", str(reference.pk))
    assert page.input_value("#id_tr_ms") == "600.0" or page.input_value("#id_tr_ms") == "600"
    assert page.input_value("#id_echo_train_length") == "4"
    assert page.locator("#timing-warning").is_hidden()
    page.fill("#id_tr_ms", "3000")
    assert "differs from the reference" in page.locator("#timing-warning").inner_text()
    page.fill("#id_tr_ms", "600")
    assert page.locator("#timing-warning").is_hidden()

    page.select_option("#id_mask_pattern", "variable_density")
    page.click("#protocol-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/protocols/\d+/$"))
    saved = Protocol.objects.get(name="CS R4 knee")
    assert saved.method == "cs_wavelet" and saved.params["iterations"] == 40
    assert saved.timing_differences() == [] and 0.5 < saved.time_reduction < 0.9
    assert page.locator("#time-reduction").inner_text().startswith(
        str(round(saved.time_reduction * 100))
    )
