"""A statistician, in Chromium: opens the closed demo analysis study, runs the analyses on
the real Celery worker, watches the progress, sees the plots, downloads the PDF, the CSV
and the bundle, and the bundle's one command reproduces the numbers."""

import re
import subprocess
import sys
import zipfile

import pytest

from tests.browser.test_cases_jobs import login
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_statistician_analyses_the_demo_study(page, live_server, celery_worker_process, tmp_path):
    from studies.demo import build_demo_analysis_study

    study = build_demo_analysis_study()
    url = live_server.url
    statistician = UserFactory(roles=("statistician",), institution=study.institution)
    login(page, url, statistician)

    page.goto(f"{url}/studies/analysis/")
    page.click(f"#analysable-studies a:has-text('{study.title}')")
    page.wait_for_url(f"{url}/studies/{study.pk}/analysis/")
    page.fill("#id_n_boot", "300")
    page.click("#analysis-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/studies/analysis/runs/\d+/$"))
    assert page.locator("#run-state .progress").count() == 1
    # the page polls the worker's progress and reloads with the report when it is done
    page.locator("#run-status.status-succeeded").wait_for(timeout=240_000)
    page.locator("#report").wait_for()
    assert page.locator("#report img[src^='data:image/svg+xml']").count() >= 3
    report_text = page.locator("#report").inner_text()
    assert "Likert scores against the reference arm" in report_text
    assert "Interchangeability of findings" in report_text

    files = {}
    for name in ("report.pdf", "reads.csv", "bundle.zip"):
        with page.expect_download() as info:
            page.click(f"#downloads a:has-text('{name}')")
        download = info.value
        pattern = rf"study-{study.pk}-analysis-\d+-{re.escape(name)}"
        assert re.fullmatch(pattern, download.suggested_filename)
        files[name] = tmp_path / download.suggested_filename
        download.save_as(files[name])
    assert files["report.pdf"].read_bytes().startswith(b"%PDF-")
    assert files["reads.csv"].read_text().startswith("reader_id,")

    bundle = tmp_path / "bundle"
    with zipfile.ZipFile(files["bundle.zip"]) as zf:
        zf.extractall(bundle)
    assert (bundle / "reads.csv").read_text() == files["reads.csv"].read_text()
    done = subprocess.run(
        [sys.executable, "reproduce.py"], cwd=bundle, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "numbers in results.json reproduced" in done.stdout
