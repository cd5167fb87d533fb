"""The reader-study acceptance scenario in Chromium: a coordinator designs and opens a
study in the UI; two readers each read a case (scroll, window, ROI, answers), reload
mid-case and resume, and submit; the coordinator sees the progress (not the answers),
closes the study for analysis; the statistician downloads the tidy CSV with both readers'
rows."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from studies.models import Answer, ReadItem, Study
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def login(context, url: str, user):
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{url}/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")
    return page


def submit(page, form: str) -> None:
    """Submit ``form`` (a selector) and wait for the design page it redirects to."""
    with page.expect_navigation():
        page.click(f"{form} button[type=submit]")
    errors = page.locator(".message.error")
    assert errors.count() == 0, errors.all_inner_texts()


def add_question(page, key: str, kind: str, label: str, **fields: str) -> None:
    page.click("#questions a:has-text('Add question')")
    page.fill("#id_key", key)
    page.select_option("#id_kind", kind)
    page.fill("#id_label", label)
    for name, value in fields.items():
        if value == "on":
            page.check(f"#id_{name}")
        else:
            page.fill(f"#id_{name}", value)
    submit(page, "#question-form")


def design_and_open_study(page, url: str, site) -> Study:
    """The coordinator's part: create, add arms/cases/readers/questions, open."""
    page.goto(f"{url}/studies/")
    page.click("#new-study")
    page.fill("#id_title", "Knee CS vs DL")
    page.fill("#id_washout_days", "14")
    page.fill("#id_repeat_fraction", "0")
    with page.expect_navigation():
        page.click("#study-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/studies/\d+/$"))
    study = Study.objects.get(title="Knee CS vs DL")
    assert page.locator("#study-status").inner_text() == "Draft"

    for label, protocol, reference in (
        ("A", site["protocols"][0], True),
        ("B", site["protocols"][1], False),
    ):
        page.select_option("#id_protocol", label=f"{protocol.name} v1 (zero_filled, R=4)")
        page.fill("#id_label", label)
        if reference:
            page.check("#id_reference")
        submit(page, "#arm-form")
    for case in site["cases"]:
        page.select_option("#id_case", label=f"{case.subject_code} (knee)")
        submit(page, "#case-form")
    for reader in site["readers"]:
        page.select_option("#id_reader", label=reader.username)
        submit(page, "#reader-form")
    add_question(
        page,
        "quality",
        "likert",
        "Overall image quality",
        scale_min="1",
        scale_max="5",
        required="on",
    )
    add_question(
        page,
        "effusion",
        "finding",
        "Joint effusion",
        choices='["absent", "present"]',
        with_confidence="on",
        required="on",
    )
    add_question(page, "cartilage_roi", "roi", "Cartilage ROI (for SNR)")
    assert page.locator("#missing.ok").count() == 1
    submit(page, "#open-form")
    assert page.locator("#study-status").inner_text() == "Open"
    study.refresh_from_db()
    assert study.reference_arm.label == "A" and study.status == Study.Status.OPEN
    return study


def viewer_state(page) -> dict:
    return page.evaluate("window.readingViewer.getState().viewports[0]")


def wait_viewport(page, key: str, old) -> None:
    """Wait until the viewer's ``key`` differs from ``old`` (getState throws while the
    new slice is still loading)."""
    page.wait_for_function(
        """([key, old]) => {
            try { return window.readingViewer.getState().viewports[0][key] !== old; }
            catch (e) { return false; }
        }""",
        arg=[key, old],
    )


def wait_ready(page) -> None:
    page.wait_for_selector("body[data-viewer-ready='1']")
    page.wait_for_selector("body[data-reading-ready='1']")


def read_one_case(page, url: str) -> None:
    """A reader's part: open the first read, scroll, change the window, draw an ellipse ROI
    and save it as an answer, answer the rest, reload mid-case, check everything came
    back, submit."""
    page.goto(f"{url}/read/")
    page.click("#start-1")
    page.wait_for_url(re.compile(r".*/read/[\w-]+/$"))
    read_url = page.url
    wait_ready(page)
    assert "Case 1 of 2" in page.locator("#position").inner_text()

    start = viewer_state(page)
    page.focus("#viewer")
    page.keyboard.press("ArrowUp")
    wait_viewport(page, "slice_index", start["slice_index"])
    page.keyboard.press("3")  # "Bright" window preset
    wait_viewport(page, "window_width", start["window_width"])

    page.keyboard.press("e")  # ellipse ROI tool
    x0, y0 = page.evaluate("window.readingViewer.imageToClient([32, 32])")
    x1, y1 = page.evaluate("window.readingViewer.imageToClient([42, 42])")
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=8)
    page.mouse.up()
    page.wait_for_function("window.readingViewer.getMeasurements().length === 1")
    # The viewer reports a finished ROI once its statistics are computed: the reader
    # presses "Use last drawn ROI" until the form takes it.
    page.wait_for_function(
        """() => {
            const q = document.querySelector("fieldset[data-key='cartilage_roi']");
            q.querySelector(".use-roi").click();
            return q.querySelector(".roi-stats").textContent.includes("mean");
        }""",
        polling=250,
    )

    page.check("input[name='v-quality'][value='4']")
    page.check("input[name='v-effusion'][value='present']")
    page.check("input[name='c-effusion'][value='4']")
    page.wait_for_function(
        "document.getElementById('save-status').textContent === 'All answers saved.'"
    )

    page.reload()  # mid-case: everything saved so far comes back
    wait_ready(page)
    assert page.url == read_url
    assert page.is_checked("input[name='v-quality'][value='4']")
    assert page.is_checked("input[name='v-effusion'][value='present']")
    assert page.is_checked("input[name='c-effusion'][value='4']")
    assert "mean" in page.locator("fieldset[data-key='cartilage_roi'] .roi-stats").inner_text()
    page.wait_for_function("window.readingViewer.getMeasurements().length === 1")

    page.click("#submit-read")
    page.wait_for_url(lambda u: u != read_url)
    assert "Case 2 of 2" in page.locator("#position").inner_text()


def test_reader_study_end_to_end(browser, live_server, trial_site):
    url = live_server.url
    coordinator = browser.new_context()
    page = login(coordinator, url, trial_site["coordinator"])
    study = design_and_open_study(page, url, trial_site)

    for reader in trial_site["readers"]:
        context = browser.new_context()
        read_one_case(login(context, url, reader), url)
        context.close()

    submitted = ReadItem.objects.filter(session__study=study, submitted_at__isnull=False)
    assert submitted.count() == 2
    assert {i.reader.username for i in submitted} == {"reader1", "reader2"}

    # The coordinator sees counts, never answers.
    page.goto(f"{url}/studies/{study.pk}/")
    progress = page.locator("#progress-table")
    for reader in ("reader1", "reader2"):
        row = progress.locator(f"tr[data-reader='{reader}'][data-session='1']")
        assert row.locator(".submitted").inner_text() == "1 / 2"
    html = page.content()
    answers = Answer.objects.filter(read_item__session__study=study, question="cartilage_roi")
    assert answers.count() == 2
    for answer in answers:
        assert f"{answer.value['mean']:.1f}" not in html
        assert str(answer.value["mean"])[:7] not in html
    page.fill("#close-form textarea[name=reason]", "first sessions read; end of the pilot")
    submit(page, "#close-form")
    assert page.locator("#study-status").inner_text() == "Closed for analysis"
    assert "end of the pilot" in page.locator("#closed").inner_text()
    coordinator.close()

    statistician = browser.new_context()
    page = login(statistician, url, trial_site["statistician"])
    response = page.request.get(f"{url}/api/studies/{study.pk}/reads.csv")
    assert response.status == 200
    rows = list(csv.DictReader(io.StringIO(response.text())))
    readers = {row["reader_id"] for row in rows}
    assert len(readers) == 2
    for reader_id in readers:
        mine = {row["question"]: row for row in rows if row["reader_id"] == reader_id}
        assert mine["quality"]["value"] == "4"
        assert mine["effusion"]["value"] == "present" and mine["effusion"]["confidence"] == "4"
        roi = mine["cartilage_roi"]
        assert json.loads(roi["value"])["shape"] == "ellipse"
        assert float(roi["value_numeric"]) == pytest.approx(json.loads(roi["value"])["mean"])
    statistician.close()
