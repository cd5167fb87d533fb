"""A reader reads a case in Chromium: worklist, scroll, window preset, ellipse ROI saved as
an answer, Likert and finding answers, reload mid-case (everything restored, ROI redrawn),
submit, next case."""

from __future__ import annotations

import pytest

from studies.models import Answer, Question, ReadItem
from tests.factories import PASSWORD, ArmFactory, StudyCaseFactory, StudyFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def open_reading_study(trial_site):
    from studies.services import add_reader, open_study

    site = trial_site
    study = StudyFactory(title="Knee reading", coordinator=site["coordinator"])
    for label, protocol in zip("AB", site["protocols"], strict=True):
        ArmFactory(study=study, label=label, protocol=protocol)
    for case in site["cases"]:
        StudyCaseFactory(study=study, case=case)
    reader = site["readers"][0]
    add_reader(study, reader, actor=site["coordinator"])
    Question.objects.create(
        study=study,
        key="quality",
        kind="likert",
        label="Overall image quality",
        order=1,
        anchors={"1": "non-diagnostic", "5": "excellent"},
    )
    Question.objects.create(
        study=study,
        key="effusion",
        kind="finding",
        label="Joint effusion",
        order=2,
        choices=["absent", "present"],
        with_confidence=True,
    )
    Question.objects.create(
        study=study, key="muscle_roi", kind="roi", label="Muscle ROI (SNR)", order=3
    )
    open_study(study, site["coordinator"])
    return study, reader


def wait_ready(page):
    page.wait_for_selector("body[data-viewer-ready='1'][data-reading-ready='1']")


def viewer_state(page):
    return page.evaluate("() => readingViewer.getState().viewports[0]")


def test_reader_reads_resumes_and_submits(page, live_server, open_reading_study):
    study, reader = open_reading_study
    url = live_server.url
    problems = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{url}/accounts/login/")
    page.fill("#id_username", reader.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")

    page.goto(f"{url}/read/")
    assert page.locator("tr[data-session='1'] .progress").inner_text() == "0 / 2"
    page.click("#start-1")
    wait_ready(page)
    assert page.locator("#position").inner_text() == "Case 1 of 2"
    first = ReadItem.objects.get(reader=reader, session__index=0, order_index=0)
    assert page.url == f"{url}/read/{first.alias}/"

    # Scroll one slice and change the window with a preset key.
    box = page.locator("#viewer").bounding_box()
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.move(*centre)
    page.evaluate("() => document.getElementById('viewer').focus()")
    before = viewer_state(page)
    page.keyboard.press("ArrowDown")
    page.wait_for_function(
        f"() => readingViewer.getState().viewports[0].slice_index !== {before['slice_index']}"
    )
    page.keyboard.press("4")
    page.wait_for_function(
        f"() => readingViewer.getState().viewports[0].window_width !== {before['window_width']}"
    )

    # Ellipse ROI in the middle of the image, saved as the ROI answer.
    page.keyboard.press("e")
    start = page.evaluate("() => readingViewer.imageToClient([32, 32], 0)")
    end = page.evaluate("() => readingViewer.imageToClient([40, 38], 0)")
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=8)
    page.mouse.up()
    page.wait_for_function("() => readingViewer.getMeasurements().length === 1")
    page.wait_for_timeout(400)  # measurements are reported 200 ms after the last change
    roi = page.locator("fieldset[data-key='muscle_roi']")
    roi.locator(".use-roi").click()
    page.wait_for_function(
        "() => /mean/.test(document.querySelector("
        "\"fieldset[data-key='muscle_roi'] .roi-stats\").textContent)"
    )

    page.check("fieldset[data-key='quality'] input[value='4']")
    page.check("fieldset[data-key='effusion'] input[value='present']")
    page.check("fieldset[data-key='effusion'] input[name='c-effusion'][value='4']")
    page.wait_for_function(
        "() => document.getElementById('save-status').textContent === 'All answers saved.'"
    )
    saved = {a.question: a for a in Answer.objects.filter(read_item=first)}
    assert saved["quality"].value == 4
    assert (saved["effusion"].value, saved["effusion"].confidence) == ("present", 4)
    assert saved["muscle_roi"].value["shape"] == "ellipse" and saved["muscle_roi"].value["sd"] > 0

    # Reload mid-case: answers and the ROI come back.
    page.reload()
    wait_ready(page)
    assert page.is_checked("fieldset[data-key='quality'] input[value='4']")
    assert page.is_checked("fieldset[data-key='effusion'] input[value='present']")
    assert page.is_checked("fieldset[data-key='effusion'] input[name='c-effusion'][value='4']")
    assert "mean" in roi.locator(".roi-stats").inner_text()
    assert page.evaluate("() => readingViewer.getMeasurements().length") == 1
    first.refresh_from_db()
    assert first.submitted_at is None

    # Submit: the next case opens; submitting was recorded once with the time on case.
    page.click("#submit-read")
    second = ReadItem.objects.get(reader=reader, session__index=0, order_index=1)
    page.wait_for_url(f"{url}/read/{second.alias}/")
    wait_ready(page)
    assert page.locator("#position").inner_text() == "Case 2 of 2"
    first.refresh_from_db()
    assert first.submitted_at is not None and first.time_on_case_s > 0
    assert not page.is_checked("fieldset[data-key='quality'] input[value='4']")
    assert problems == []
