"""A statistician, in Chromium: plans the sample size of a draft study from the closed demo
analysis study, sees the power table, and downloads the plan as a PDF."""

import re

import pytest

from tests.browser.test_cases_jobs import login
from tests.factories import StudyFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_statistician_plans_a_study_from_the_demo_pilot(page, live_server, tmp_path):
    from studies.demo import build_demo_analysis_study

    pilot = build_demo_analysis_study()
    target = StudyFactory(title="Knee DLR pivotal study", institution=pilot.institution)
    url = live_server.url
    statistician = UserFactory(roles=("statistician",), institution=pilot.institution)
    login(page, url, statistician)

    page.goto(f"{url}/studies/analysis/")
    page.click(f"#plannable-studies a:has-text('{target.title}')")
    page.wait_for_url(f"{url}/studies/{target.pk}/plan/")
    page.check("input[name=source][value=pilot]")
    option = page.locator("#id_pilot_question option", has_text=pilot.title).first
    page.select_option("#id_pilot_question", option.get_attribute("value"))
    page.click("#plan-form button[type=submit]")
    page.wait_for_url(f"{url}/studies/{target.pk}/plan/")

    table = page.locator("#power-table")
    table.wait_for()
    rows = table.locator("tbody tr")
    assert rows.count() == 8
    first = rows.first.locator("td")
    assert first.nth(0).inner_text() == "3"
    assert re.fullmatch(r"\d+|not reachable", first.nth(1).inner_text())
    assert "Hillis" in page.locator("#plan").inner_text()
    assert pilot.title in page.locator(".plan-source").inner_text()

    with page.expect_download() as info:
        page.click("#plan-downloads a:has-text('plan.pdf')")
    download = info.value
    assert re.fullmatch(rf"study-{target.pk}-plan-\d+\.pdf", download.suggested_filename)
    pdf = tmp_path / download.suggested_filename
    download.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF-")
