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
    page.keyboard.press("2")  # the study's first preset for the case's sequence type
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


def _login_and_start(page, url, reader):
    page.goto(f"{url}/accounts/login/")
    page.fill("#id_username", reader.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")
    page.goto(f"{url}/read/")
    page.click("#start-1")
    wait_ready(page)


@pytest.fixture
def knee_form_study(trial_site):
    """The reading study's three questions followed by the knee template's (a long form)."""
    from studies.question_templates import apply_template
    from studies.services import add_reader, open_study

    site = trial_site
    study = StudyFactory(title="Knee reading", coordinator=site["coordinator"])
    for label, protocol in zip("AB", site["protocols"], strict=True):
        ArmFactory(study=study, label=label, protocol=protocol)
    for case in site["cases"]:
        StudyCaseFactory(study=study, case=case)
    reader = site["readers"][0]
    add_reader(study, reader, actor=site["coordinator"])
    Question.objects.create(study=study, key="quality", kind="likert", label="Overall", order=0)
    Question.objects.create(
        study=study,
        key="effusion",
        kind="finding",
        label="Joint effusion",
        order=1,
        choices=["absent", "present"],
        with_confidence=True,
    )
    Question.objects.create(study=study, key="muscle_roi", kind="roi", label="Muscle", order=2)
    assert len(apply_template(study, "knee")) >= 18
    open_study(study, site["coordinator"])
    return study, reader


def test_workstation_layout_keyboard_and_window_units(page, live_server, knee_form_study):
    """At 1600 x 1000 the images take >= 70 % of the width and the whole form is reachable
    without scrolling the page (its panel scrolls); number keys answer the current question
    and move on; viewer shortcuts work after clicking a form control; window/level reads in
    the blinded image's own units (the study preset's numbers, the DICOM window)."""
    import os

    study, reader = knee_form_study
    problems = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.set_viewport_size({"width": 1600, "height": 1000})
    _login_and_start(page, live_server.url, reader)
    if os.environ.get("READING_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["READING_SCREENSHOTS"], "opened.png"))

    viewer = page.locator("#viewer").bounding_box()
    assert viewer["width"] >= 0.7 * 1600 and viewer["height"] >= 0.9 * 1000
    sizes = page.evaluate(
        "() => ({page: document.scrollingElement.scrollHeight, view: innerHeight,"
        " panel: document.getElementById('rw-scroll').scrollHeight,"
        " panelView: document.getElementById('rw-scroll').clientHeight})"
    )
    assert sizes["page"] <= sizes["view"]
    assert sizes["panel"] > sizes["panelView"]  # the long form scrolls inside its panel
    last = page.locator("fieldset.question").last
    last.scroll_into_view_if_needed()
    box = last.bounding_box()
    assert 0 <= box["y"] and box["y"] + box["height"] <= 1000
    assert page.evaluate("() => document.scrollingElement.scrollTop") == 0
    toolbar = page.locator(".rv-toolbar").bounding_box()
    assert toolbar["height"] < 40  # one row

    # Window/level in the image's own units: the DICOM window of the blinded instance, and a
    # study preset's numbers exactly.
    wl = page.locator(".rv-wl").first
    width, center = float(wl.get_attribute("data-width")), float(wl.get_attribute("data-center"))
    served = page.evaluate(
        """async () => {
        const cfg = JSON.parse(document.getElementById('reading-config').textContent);
        const middle = Math.floor(cfg.imageIds.length / 2);
        const r = await fetch(cfg.imageIds[middle].replace('wadouri:', ''));
        return Array.from(new Uint8Array(await r.arrayBuffer()));
    }"""
    )
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(bytes(served)))
    assert (width, center) == pytest.approx((float(ds.WindowWidth), float(ds.WindowCenter)), abs=1)
    assert 0 < width < 8000 and 0 < center < 8000  # not stretched to 0..65535
    assert f"W {round(width)} L {round(center)}" == wl.inner_text()
    preset = page.evaluate(
        "() => JSON.parse(document.getElementById('reading-config').textContent).presets[0]"
    )
    page.locator("#viewer canvas").first.click()
    page.keyboard.press("2")
    page.wait_for_function(
        f"() => Math.round(readingViewer.getState().viewports[0].window_width) === "
        f"{round(preset['width'])}"
    )
    assert page.locator(".rv-wl").first.inner_text() == (
        f"W {round(preset['width'])} L {round(preset['center'])}"
    )

    # Click a form control, then viewer shortcuts still work and the answer stays put.
    page.locator("fieldset[data-key='quality'] label").nth(2).click()
    assert page.is_checked("fieldset[data-key='quality'] input[value='3']")
    before = viewer_state(page)["slice_index"]
    page.keyboard.press("ArrowDown")
    page.wait_for_function(f"() => readingViewer.getState().viewports[0].slice_index !== {before}")
    page.keyboard.press("e")
    assert page.evaluate("() => readingViewer.getState().tool") == "ellipse"
    assert page.is_checked("fieldset[data-key='quality'] input[value='3']")

    # Number keys answer the current question and move to the next; Shift + n: confidence.
    page.keyboard.press("5")
    assert page.is_checked("fieldset[data-key='quality'] input[value='5']")
    assert page.locator("fieldset.rw-current").get_attribute("data-key") == "effusion"
    page.keyboard.press("2")
    page.keyboard.press("Shift+4")
    assert page.is_checked("fieldset[data-key='effusion'] input[value='present']")
    assert page.is_checked("fieldset[data-key='effusion'] input[name='c-effusion'][value='4']")
    assert page.locator("fieldset.rw-current").get_attribute("data-key") == "muscle_roi"
    page.keyboard.press("Tab")  # (Enter would press the focused "Use last drawn ROI")
    second_key = page.locator("fieldset.rw-current").get_attribute("data-key")
    assert second_key == page.locator("fieldset.question").nth(3).get_attribute("data-key")
    page.wait_for_function(
        "() => document.getElementById('save-status').textContent === 'All answers saved.'"
    )
    first = ReadItem.objects.get(reader=reader, session__index=0, order_index=0)
    saved = {a.question: a for a in Answer.objects.filter(read_item=first)}
    assert saved["quality"].value == 5
    assert (saved["effusion"].value, saved["effusion"].confidence) == ("present", 4)
    assert "2 of" in page.locator("#answered-count").inner_text()
    if os.environ.get("READING_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["READING_SCREENSHOTS"], "workstation.png"))
    assert problems == []
