"""The reader's DICOM viewer bundle (static/viewer/) driven in Debian's Chromium.

A synthetic MR series (noisy bright disc whose intensity differs per slice, PixelSpacing
0.5 mm) is served from opaque, cookie-protected URLs; the tests drive the viewer with real
mouse and keyboard input and check what it shows and reports against numpy computed on the
exact pixels that were served.
"""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Error as PlaywrightError
from pydicom.uid import JPEGLSLossless, RLELossless

from tests.viewer.support import (
    DISC_CENTRE,
    N_SLICES,
    PIXEL_SPACING_MM,
    SECRET_TEXTS,
    SESSION_COOKIE,
    disc_mean,
    make_series,
)

pytestmark = pytest.mark.browser

MOUNT = """
(options) => {
  window.__measurements = [];
  window.__removed = [];
  window.__errors = [];
  window.viewer = RV.mount(document.getElementById('viewer'), {
    ...options,
    onMeasurement: (m) => window.__measurements.push(m),
    onMeasurementRemoved: (uid) => window.__removed.push(uid),
    onError: (e) => window.__errors.push(e),
  });
  return window.viewer.ready.then(() => window.viewer.getState());
}
"""


# ------------------------------------------------------------------ helpers


def mount(page, image_ids, **options):
    return page.evaluate(MOUNT, {"imageIds": image_ids, **options})


def state(page):
    return page.evaluate("() => viewer.getState()")


def vp_state(page, viewport=0):
    return state(page)["viewports"][viewport]


def overlay(page, viewport=0):
    pane = f'.rv-pane[data-viewport="{viewport}"]'
    return {
        key: page.locator(f"{pane} .rv-{key}").inner_text()
        for key in ("slice", "wl", "zoom", "status")
    }


def to_client(page, x, y, viewport=0):
    return page.evaluate("([p, v]) => viewer.imageToClient(p, v)", [[x, y], viewport])


def drag(page, start, end, button="left", modifiers=(), steps=10):
    page.mouse.move(*start)
    for key in modifiers:
        page.keyboard.down(key)
    page.mouse.down(button=button)
    page.mouse.move(*end, steps=steps)
    page.mouse.up(button=button)
    for key in modifiers:
        page.keyboard.up(key)


def wait_slice(page, index, viewport=0):
    page.wait_for_function(
        "([i, v]) => viewer.getState().viewports[v].slice_index === i", arg=[index, viewport]
    )


def wait_measurements(page, count):
    page.wait_for_function("n => window.__measurements.length >= n", arg=count)
    return page.evaluate("() => window.__measurements")


def focus_viewer(page, viewport=0):
    """Points at a viewport (making it the active one) and gives the viewer keyboard focus.

    Not a click: cornerstone holds back a drag that starts within its double-click time of a
    click at the same spot, which would make the next drag in a test a no-op.
    """
    centre = to_client(page, *DISC_CENTRE, viewport)
    page.mouse.move(centre[0], centre[1] + 5)
    page.mouse.move(*centre)
    page.evaluate("() => document.getElementById('viewer').focus()")


def gray_screenshot(page, viewport=0):
    """The viewport as displayed (8-bit grey) and its page offset; backend independent."""
    host = page.locator(f'.rv-pane[data-viewport="{viewport}"] .rv-canvas-host')
    box = host.bounding_box()
    png = host.screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float), box


def displayed_gray(values, width, center):
    """DICOM PS3.3 C.11.2.1.2 linear VOI function mapped to 0..255."""
    y = (np.asarray(values, float) - (center - 0.5)) / (width - 1) + 0.5
    return 255.0 * np.clip(y, 0.0, 1.0)


def centres():
    yy, xx = np.mgrid[0:128, 0:128] + 0.5
    return xx, yy


def rectangle_reference(image, points):
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    xx, yy = centres()
    inside = (xx >= min(xs)) & (xx <= max(xs)) & (yy >= min(ys)) & (yy <= max(ys))
    area = (max(xs) - min(xs)) * (max(ys) - min(ys)) * PIXEL_SPACING_MM**2
    return image[inside].astype(float), area


def ellipse_reference(image, points):
    pts = np.asarray(points, float)
    cx, cy = pts.mean(axis=0)
    a = (pts[:, 0].max() - pts[:, 0].min()) / 2
    b = (pts[:, 1].max() - pts[:, 1].min()) / 2
    xx, yy = centres()
    inside = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1.0
    area = math.pi * a * b * PIXEL_SPACING_MM**2
    return image[inside].astype(float), area


def robust_window(image, width_fraction, center_fraction):
    """The relative preset definition of frontend/src/presets.js, computed with numpy."""
    values = np.sort(image.ravel().astype(float))
    n = values.size

    def pick(q):
        return values[int(math.floor(q * (n - 1) + 0.5))]

    lo, hi = pick(0.005), pick(0.995)
    return width_fraction * (hi - lo), lo + center_fraction * (hi - lo)


# ------------------------------------------------------------------ rendering


@pytest.mark.parametrize("webgl", [True, False], ids=["auto-backend", "no-webgl-cpu-fallback"])
def test_first_image_renders_with_the_window_shown(open_reading_page, series, webgl):
    page, problems = open_reading_page(webgl=webgl)
    volume, ids = series["A"]
    st = mount(page, ids)
    if not webgl:
        assert st["render_backend"] == "cpu"
    vp = st["viewports"][0]
    assert (vp["slice_index"], vp["slice_count"]) == (0, N_SLICES)
    # No DICOM window tags: cornerstone windows the full range of the slice.
    image = volume[0].astype(float)
    assert vp["window_width"] == pytest.approx(image.max() - image.min() + 1)
    assert vp["zoom"] == pytest.approx(1.0)
    assert overlay(page)["slice"] == "1/12"

    gray, box = gray_screenshot(page)
    assert gray.max() > 0, "canvas is blank"
    width, center = vp["window_width"], vp["window_center"]
    for x0, y0 in [(58, 58), (6, 6)]:  # inside the disc; background corner
        cx0, cy0 = to_client(page, x0, y0)
        cx1, cy1 = to_client(page, x0 + 6, y0 + 6)
        patch = gray[
            int(cy0 - box["y"]) + 2 : int(cy1 - box["y"]) - 2,
            int(cx0 - box["x"]) + 2 : int(cx1 - box["x"]) - 2,
        ]
        expected = displayed_gray(image[y0 : y0 + 6, x0 : x0 + 6], width, center).mean()
        assert patch.mean() == pytest.approx(expected, abs=8.0)
    assert problems == []


def test_overlay_is_blinded(open_reading_page, series, reading_server):
    page, problems = open_reading_page()
    volume, ids = series["A"]
    mount(page, ids)
    text = page.evaluate("() => document.body.innerText")
    for secret in SECRET_TEXTS:
        assert secret not in text
    tokens = series["tokens"]["A"]
    assert not any(token in text for token in tokens)
    assert "read/i" not in text and ".dcm" not in text
    ov = overlay(page)
    assert re.fullmatch(r"\d+/\d+", ov["slice"])
    assert re.fullmatch(r"W -?\d+ L -?\d+", ov["wl"])
    assert re.fullmatch(r"Zoom \d+\.\d\d\u00d7", ov["zoom"])
    # Every image request carried the reader's session cookie (same-origin credentials).
    hits = reading_server.dicom_requests(tokens)
    assert hits and all(status == "200" and cookie for _, status, cookie in hits)
    # Decoding ran in the bundle's own web worker, fetched from /static/viewer/.
    with reading_server.lock:
        paths = [p for p, _, _ in reading_server.requests]
    assert "/static/viewer/decodeImageFrameWorker.js" in paths
    assert problems == []


def test_images_without_session_are_reported_not_shown(open_reading_page, series, reading_server):
    page, _ = open_reading_page()
    page.context.clear_cookies()
    _, ids = series["A"]
    with pytest.raises(PlaywrightError, match="image 1 of viewport 0 failed to load"):
        mount(page, ids)
    assert overlay(page)["status"] == "Image 1 failed to load"
    errors = page.evaluate("() => window.__errors")
    assert errors and errors[0]["viewport"] == 0
    # The reader is not left stuck: Retry loads it once the server answers again.
    retry = page.locator('.rv-pane[data-viewport="0"] .rv-retry')
    assert retry.is_visible()
    page.context.add_cookies(
        [{"name": SESSION_COOKIE[0], "value": SESSION_COOKIE[1], "url": reading_server.base_url}]
    )
    retry.click()
    page.wait_for_function("() => viewer.getState().viewports[0].window_width !== null")
    assert overlay(page)["status"] == "" and not retry.is_visible()
    assert vp_state(page)["slice_index"] == 0


MULTIPART = r"""
async ([urls, dropLast]) => {
  // One multipart/related body (RFC 2046) holding every slice, as /read/s/<token>/ sends.
  const boundary = 'b0undary7f3a';
  const enc = new TextEncoder();
  const chunks = [];
  for (const url of urls) {
    const data = new Uint8Array(await (await fetch(url)).arrayBuffer());
    chunks.push(enc.encode(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`));
    chunks.push(data, enc.encode('\r\n'));
  }
  chunks.push(enc.encode(`--${boundary}--\r\n`));
  const buffer = await new Blob(chunks).arrayBuffer();
  const ids = urls.map((u) => 'wadouri:' + u);
  return RV.registerSeries(
    dropLast ? ids.slice(0, -1) : ids,
    { buffer, contentType: `multipart/related; type="application/dicom"; boundary=${boundary}` },
  );
}
"""


def test_a_registered_whole_series_loads_without_a_request_per_slice(
    open_reading_page, series, reading_server
):
    page, problems = open_reading_page()
    _, ids = series["B"]
    tokens = series["tokens"]["B"]
    urls = [i.removeprefix("wadouri:") for i in ids]
    assert page.evaluate(MULTIPART, [urls, False]) == N_SLICES
    before = len(reading_server.dicom_requests(tokens))
    mount(page, ids)
    page.mouse.move(*to_client(page, *DISC_CENTRE))
    for index in range(1, N_SLICES):
        page.mouse.wheel(0, 120)
        wait_slice(page, index)
    assert len(reading_server.dicom_requests(tokens)) == before, "slices were requested"
    # A wrong count is refused rather than mislabelled.
    with pytest.raises(PlaywrightError, match="expected"):
        page.evaluate(MULTIPART, [urls, True])
    assert problems == []


@pytest.mark.parametrize(
    ("syntax", "codec_file"),
    [(RLELossless, None), (JPEGLSLossless, "charlswasm_decode.wasm")],
    ids=["rle-javascript", "jpeg-ls-wasm"],
)
def test_compressed_series_show_the_same_pixels(
    open_reading_page, reading_server, tmp_path, syntax, codec_file
):
    if syntax == JPEGLSLossless:
        pytest.importorskip("jpeg_ls", reason="pyjpegls encodes the JPEG-LS test series")
    series = make_series(tmp_path / "compressed", seed=3, transfer_syntax=syntax)
    ids = reading_server.publish(series)
    page, problems = open_reading_page()
    st = mount(page, ids, initialSliceIndex=6)["viewports"][0]
    image = series.pixels[6].astype(float)
    assert st["window_width"] == pytest.approx(image.max() - image.min() + 1)
    roi = {"type": "rectangle", "slice_index": 6, "points": [[30, 30], [98, 98]]}
    page.evaluate("list => viewer.loadMeasurements(list)", [roi])
    page.wait_for_function("() => viewer.getMeasurements()[0].mean !== null")
    (m,) = page.evaluate("() => viewer.getMeasurements()")
    values, _ = rectangle_reference(series.pixels[6], m["points"])
    assert m["mean"] == pytest.approx(values.mean(), rel=1e-9)
    assert m["sd"] == pytest.approx(values.std(), rel=1e-9)
    assert m["pixel_count"] == values.size
    if codec_file:
        with reading_server.lock:
            paths = {p for p, status, _ in reading_server.requests if status == "200"}
        assert f"/static/viewer/codecs/{codec_file}" in paths
    assert problems == []


# ------------------------------------------------------------------ navigation


def test_mouse_wheel_scrolls_slices(open_reading_page, series):
    page, problems = open_reading_page()
    _, ids = series["A"]
    mount(page, ids)
    page.mouse.move(*to_client(page, *DISC_CENTRE))
    for expected in (1, 2, 3):
        page.mouse.wheel(0, 120)
        wait_slice(page, expected)
    page.mouse.wheel(0, -120)
    wait_slice(page, 2)
    assert overlay(page)["slice"] == "3/12"
    assert page.locator(".rv-slider").input_value() == "2"
    assert problems == []


def test_arrow_keys_and_slider_change_slice(open_reading_page, series):
    page, problems = open_reading_page()
    _, ids = series["A"]
    mount(page, ids)
    focus_viewer(page)
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    wait_slice(page, 2)
    page.keyboard.press("ArrowUp")
    wait_slice(page, 1)
    page.keyboard.press("End")
    wait_slice(page, N_SLICES - 1)
    assert overlay(page)["slice"] == f"{N_SLICES}/{N_SLICES}"
    page.keyboard.press("ArrowDown")  # stays on the last slice
    page.keyboard.press("Home")
    wait_slice(page, 0)
    page.locator(".rv-slider").fill("7")
    wait_slice(page, 7)
    assert overlay(page)["slice"] == "8/12"
    assert problems == []


# ------------------------------------------------------------------ window / zoom / pan


def test_window_level_drag_presets_and_reset(open_reading_page, series):
    page, problems = open_reading_page()
    volume, ids = series["A"]
    presets = [
        {"name": "Auto (from image)", "kind": "auto"},
        {"name": "Soft", "kind": "relative", "width": 1.0, "center": 0.5},
        {"name": "Bright", "kind": "relative", "width": 0.6, "center": 0.35},
        {"name": "Fixed", "kind": "absolute", "width": 500, "center": 700},
    ]
    initial = mount(page, ids, presets=presets)["viewports"][0]

    start = to_client(page, *DISC_CENTRE)
    drag(page, start, (start[0] + 80, start[1] + 50))
    dragged = vp_state(page)
    assert dragged["window_width"] != pytest.approx(initial["window_width"])
    assert dragged["window_center"] != pytest.approx(initial["window_center"])
    ov = overlay(page)["wl"]
    assert ov == f"W {dragged['window_width']:.0f} L {dragged['window_center']:.0f}"

    focus_viewer(page)
    page.keyboard.press("4")
    fixed = vp_state(page)
    assert (fixed["window_width"], fixed["window_center"]) == pytest.approx((500, 700))
    assert overlay(page)["wl"] == "W 500 L 700"

    page.keyboard.press("2")
    soft = vp_state(page)
    expected = robust_window(volume[0], 1.0, 0.5)
    assert (soft["window_width"], soft["window_center"]) == pytest.approx(expected, rel=1e-9)

    page.select_option(".rv-presets", "2")  # "Bright" through the toolbar
    bright = vp_state(page)
    expected = robust_window(volume[0], 0.6, 0.35)
    assert (bright["window_width"], bright["window_center"]) == pytest.approx(expected, rel=1e-9)

    page.keyboard.press("1")  # auto: back to the window the image asks for
    auto = vp_state(page)
    assert auto["window_width"] == pytest.approx(initial["window_width"])

    drag(page, start, (start[0] - 40, start[1] + 90), button="right")  # zoom
    drag(page, start, (start[0] + 60, start[1] + 20), button="middle")  # pan
    drag(page, start, (start[0] + 40, start[1] - 30))  # window
    changed = vp_state(page)
    assert changed["zoom"] != pytest.approx(1.0)
    assert changed["pan"] != pytest.approx([0, 0])
    focus_viewer(page)
    page.keyboard.press("r")
    reset = vp_state(page)
    for key in ("window_width", "window_center", "zoom"):
        assert reset[key] == pytest.approx(initial[key]), key
    assert reset["pan"] == pytest.approx([0, 0], abs=1e-6)

    drag(page, start, (start[0] + 30, start[1] + 30))
    page.locator('[data-action="reset"]').click()
    assert vp_state(page)["window_width"] == pytest.approx(initial["window_width"])
    assert problems == []


def test_zoom_and_pan_bindings(open_reading_page, series):
    page, problems = open_reading_page()
    _, ids = series["A"]
    initial = mount(page, ids)["viewports"][0]
    centre = to_client(page, *DISC_CENTRE)

    drag(page, centre, (centre[0], centre[1] - 120), button="right")
    zoom_right = vp_state(page)["zoom"]
    assert zoom_right != pytest.approx(1.0)

    page.mouse.move(*centre)
    page.keyboard.down("Control")
    page.mouse.wheel(0, -120)
    page.keyboard.up("Control")
    page.wait_for_function("z => viewer.getState().viewports[0].zoom !== z", arg=zoom_right)
    after_wheel = vp_state(page)
    assert after_wheel["slice_index"] == 0  # ctrl + wheel zooms, it does not scroll

    drag(page, centre, (centre[0] + 70, centre[1] + 40), button="middle")
    pan_middle = vp_state(page)["pan"]
    assert pan_middle != pytest.approx([0, 0])

    drag(page, centre, (centre[0] - 50, centre[1]), modifiers=("Shift",))
    after_shift = vp_state(page)
    assert after_shift["pan"] != pytest.approx(pan_middle)
    # Shift + left drag pans instead of windowing.
    assert after_shift["window_width"] == pytest.approx(initial["window_width"])
    assert after_shift["window_center"] == pytest.approx(initial["window_center"])
    assert overlay(page)["zoom"] == f"Zoom {after_shift['zoom']:.2f}\u00d7"
    assert problems == []


# ------------------------------------------------------------------ measurements


@pytest.mark.parametrize("webgl", [True, False], ids=["auto-backend", "no-webgl-cpu-fallback"])
def test_rectangle_roi_reports_mean_sd_and_area(open_reading_page, series, webgl):
    page, problems = open_reading_page(webgl=webgl)
    volume, ids = series["A"]
    mount(page, ids, initialSliceIndex=5)
    focus_viewer(page)
    page.keyboard.press("b")
    assert state(page)["tool"] == "rectangle"
    drag(page, to_client(page, 44, 50), to_client(page, 84, 78))
    (m,) = wait_measurements(page, 1)

    assert m["type"] == "rectangle" and m["slice_index"] == 5 and m["viewport"] == 0
    assert len(m["points"]) == 4
    xs = sorted({round(p[0], 3) for p in m["points"]})
    ys = sorted({round(p[1], 3) for p in m["points"]})
    # Screen-to-image quantisation: one CSS pixel is under a quarter of an image pixel.
    assert xs == pytest.approx([44, 84], abs=0.3) and ys == pytest.approx([50, 78], abs=0.3)
    values, area = rectangle_reference(volume[5], m["points"])
    assert m["mean"] == pytest.approx(values.mean(), rel=0.01)
    assert m["mean"] == pytest.approx(disc_mean(5), rel=0.01)
    assert m["sd"] == pytest.approx(values.std(), rel=0.05)
    assert m["area_mm2"] == pytest.approx(area, rel=1e-6)
    assert m["area_mm2"] == pytest.approx(40 * 28 * PIXEL_SPACING_MM**2, rel=0.02)
    assert abs(m["pixel_count"] - values.size) <= 2 * (40 + 28) + 4
    assert m["length_mm"] is None
    assert page.evaluate("() => viewer.getMeasurements()")[0]["uid"] == m["uid"]
    assert problems == []


def test_ellipse_roi_reports_mean_sd_and_area(open_reading_page, series):
    page, problems = open_reading_page()
    volume, ids = series["A"]
    mount(page, ids, initialSliceIndex=3)
    focus_viewer(page)
    page.keyboard.press("e")
    # Ellipses are drawn from the centre outwards.
    drag(page, to_client(page, 64, 64), to_client(page, 84, 76))
    (m,) = wait_measurements(page, 1)
    assert m["type"] == "ellipse" and m["slice_index"] == 3
    values, area = ellipse_reference(volume[3], m["points"])
    assert m["mean"] == pytest.approx(values.mean(), rel=0.01)
    assert m["mean"] == pytest.approx(disc_mean(3), rel=0.01)
    assert m["sd"] == pytest.approx(values.std(), rel=0.05)
    assert m["area_mm2"] == pytest.approx(area, rel=1e-6)
    assert m["area_mm2"] == pytest.approx(math.pi * 10 * 6, rel=0.03)  # radii 20 x 12 px
    assert abs(m["pixel_count"] - values.size) <= 2 * math.pi * 20 + 4
    assert problems == []


def test_length_measurement_in_mm(open_reading_page, series):
    page, problems = open_reading_page()
    _, ids = series["A"]
    mount(page, ids)
    page.locator('[data-tool="length"]').click()
    drag(page, to_client(page, 24, 40), to_client(page, 104, 100))
    (m,) = wait_measurements(page, 1)
    assert m["type"] == "length" and m["mean"] is None and m["area_mm2"] is None
    (x0, y0), (x1, y1) = m["points"]
    assert m["length_mm"] == pytest.approx(math.hypot(x1 - x0, y1 - y0) * PIXEL_SPACING_MM)
    assert m["length_mm"] == pytest.approx(math.hypot(80, 60) * PIXEL_SPACING_MM, abs=0.3)
    assert problems == []


def test_modifying_a_roi_reports_it_again_and_delete_removes_it(open_reading_page, series):
    page, problems = open_reading_page()
    volume, ids = series["A"]
    mount(page, ids)
    focus_viewer(page)
    page.keyboard.press("b")
    drag(page, to_client(page, 40, 40), to_client(page, 70, 70))
    (first,) = wait_measurements(page, 1)
    page.keyboard.press("w")  # ROIs stay editable with another left-drag tool
    drag(page, to_client(page, 70, 70), to_client(page, 100, 90))  # move a corner handle
    second = wait_measurements(page, 2)[-1]
    assert second["uid"] == first["uid"]
    assert second["area_mm2"] > first["area_mm2"] * 1.5
    values, area = rectangle_reference(volume[0], second["points"])
    assert second["area_mm2"] == pytest.approx(area, rel=1e-6)
    assert second["mean"] == pytest.approx(values.mean(), rel=0.01)
    assert vp_state(page)["window_width"] == pytest.approx(
        volume[0].max() - volume[0].min() + 1.0
    ), "dragging a handle must not window the image"

    # Grabbing the ROI selected it; Delete removes it and the form is told.
    focus_viewer(page)
    page.keyboard.press("Delete")
    page.wait_for_function("() => window.__removed.length === 1")
    assert page.evaluate("() => window.__removed") == [first["uid"]]
    assert page.evaluate("() => viewer.getMeasurements()") == []

    page.keyboard.press("l")
    drag(page, to_client(page, 20, 20), to_client(page, 50, 20))
    third = wait_measurements(page, 3)[-1]
    assert page.evaluate("uid => viewer.removeMeasurement(uid)", third["uid"]) is True
    page.wait_for_function("() => window.__removed.length === 2")
    assert page.evaluate("() => viewer.getMeasurements()") == []
    assert problems == []


def test_load_measurements_redraws_saved_rois(open_reading_page, series):
    page, problems = open_reading_page()
    volume, ids = series["A"]
    mount(page, ids)
    saved = [
        {
            "uid": "saved-rect",
            "type": "rectangle",
            "slice_index": 5,
            "points": [[44, 50], [84, 78]],
        },
        {
            "uid": "saved-ellipse",
            "type": "ellipse",
            "slice_index": 5,
            "points": [[64, 52], [64, 76], [48, 64], [80, 64]],
        },
        {"uid": "saved-length", "type": "length", "slice_index": 2, "points": [[20, 20], [60, 50]]},
    ]
    loaded = page.evaluate("list => viewer.loadMeasurements(list)", saved)
    assert [m["uid"] for m in loaded] == ["saved-rect", "saved-ellipse", "saved-length"]
    rect_points = next(m["points"] for m in loaded if m["uid"] == "saved-rect")
    assert sorted({p[0] for p in rect_points}) == pytest.approx([44, 84])

    page.evaluate("() => viewer.setSliceIndex(5)")
    page.wait_for_function(
        "() => viewer.getMeasurements().filter(m => m.slice_index === 5 && m.mean !== null)"
        ".length === 2"
    )
    by_uid = {m["uid"]: m for m in page.evaluate("() => viewer.getMeasurements()")}
    rect, ellipse = by_uid["saved-rect"], by_uid["saved-ellipse"]
    values, area = rectangle_reference(volume[5], rect["points"])
    assert rect["area_mm2"] == pytest.approx(40 * 28 * 0.25, rel=1e-6) == area
    assert rect["mean"] == pytest.approx(values.mean(), rel=0.01)
    values, area = ellipse_reference(volume[5], ellipse["points"])
    assert ellipse["area_mm2"] == pytest.approx(math.pi * 8 * 6, rel=1e-6)
    assert ellipse["mean"] == pytest.approx(values.mean(), rel=0.01)
    # Drawn on screen: the annotation layer holds both shapes on this slice.
    svg = page.locator('.rv-pane[data-viewport="0"] svg')
    for uid in ("saved-rect", "saved-ellipse"):
        assert svg.locator(f'[data-annotation-uid="{uid}"]').count() > 0
    page.evaluate("() => viewer.setSliceIndex(2)")
    page.wait_for_function(
        "() => viewer.getMeasurements().some(m => m.uid === 'saved-length' && m.length_mm)"
    )
    length = next(
        m for m in page.evaluate("() => viewer.getMeasurements()") if m["uid"] == "saved-length"
    )
    assert length["length_mm"] == pytest.approx(25.0, rel=1e-6)
    # Restoring saved answers is not a new measurement.
    assert page.evaluate("() => window.__measurements") == []
    assert problems == []


def test_resume_after_reload_gives_the_same_statistics(open_reading_page, series):
    page, problems = open_reading_page()
    _, ids = series["A"]
    mount(page, ids, initialSliceIndex=4)
    focus_viewer(page)
    page.keyboard.press("e")
    drag(page, to_client(page, 60, 60), to_client(page, 78, 72))
    (answer,) = wait_measurements(page, 1)
    page.reload()
    page.wait_for_function("() => window.RV !== undefined")
    mount(page, ids, initialSliceIndex=4)
    (restored,) = page.evaluate("list => viewer.loadMeasurements(list)", [answer])
    page.wait_for_function("() => viewer.getMeasurements()[0].mean !== null")
    (restored,) = page.evaluate("() => viewer.getMeasurements()")
    for key in ("uid", "type", "slice_index"):
        assert restored[key] == answer[key]
    assert np.allclose(restored["points"], answer["points"], atol=1e-6)
    for key in ("mean", "sd", "area_mm2"):
        assert restored[key] == pytest.approx(answer[key], rel=1e-6)
    assert problems == []


# ------------------------------------------------------------------ side by side


def test_side_by_side_links_scroll_zoom_and_window(open_reading_page, series):
    page, problems = open_reading_page()
    volume_a, ids_a = series["A"]
    volume_b, ids_b = series["B"]
    st = mount(page, ids_a, layout="side-by-side", secondImageIds=ids_b)["viewports"]
    # A case opens with each image in its own window (B is 1.5x brighter than A).
    for vp, volume in zip(st, (volume_a, volume_b), strict=True):
        assert vp["window_width"] == pytest.approx(volume[0].max() - volume[0].min() + 1.0)
    left = to_client(page, *DISC_CENTRE, 0)
    right = to_client(page, *DISC_CENTRE, 1)
    assert right[0] > left[0]

    page.mouse.move(*left)
    for expected in (1, 2, 3):
        page.mouse.wheel(0, 120)
        wait_slice(page, expected, 0)
    wait_slice(page, 3, 1)
    assert overlay(page, 1)["slice"] == "4/12"

    focus_viewer(page, 1)
    page.keyboard.press("ArrowDown")
    wait_slice(page, 4, 1)
    wait_slice(page, 4, 0)

    drag(page, left, (left[0] + 70, left[1] - 40))
    st = state(page)["viewports"]
    assert st[0]["window_width"] == pytest.approx(st[1]["window_width"])
    assert st[0]["window_center"] == pytest.approx(st[1]["window_center"])
    assert overlay(page, 0)["wl"] == overlay(page, 1)["wl"]

    drag(page, right, (right[0], right[1] - 100), button="right")
    st = state(page)["viewports"]
    assert st[1]["zoom"] != pytest.approx(1.0)
    assert st[0]["zoom"] == pytest.approx(st[1]["zoom"])
    drag(page, right, (right[0] + 40, right[1] + 25), button="middle")
    st = state(page)["viewports"]
    assert st[0]["pan"] == pytest.approx(st[1]["pan"])

    # A preset computed on the active image applies to both.
    focus_viewer(page, 0)
    page.keyboard.press("2")
    st = state(page)["viewports"]
    expected = robust_window(volume_a[4], 1.0, 0.5)
    assert (st[0]["window_width"], st[0]["window_center"]) == pytest.approx(expected)
    assert (st[1]["window_width"], st[1]["window_center"]) == pytest.approx(expected)

    page.keyboard.press("k")
    assert state(page)["linked"] is False
    page.mouse.move(*left)
    page.mouse.wheel(0, 120)
    wait_slice(page, 5, 0)
    page.wait_for_timeout(300)
    assert vp_state(page, 1)["slice_index"] == 4
    drag(page, left, (left[0] - 60, left[1]))
    st = state(page)["viewports"]
    assert st[0]["window_width"] != pytest.approx(st[1]["window_width"])

    page.keyboard.press("k")  # relinking aligns the other image with the active one
    wait_slice(page, 5, 1)
    st = state(page)["viewports"]
    assert st[0]["window_width"] == pytest.approx(st[1]["window_width"])
    assert problems == []


# ------------------------------------------------------------------ cases


def test_prefetch_then_load_next_case_without_refetching(open_reading_page, series, reading_server):
    page, problems = open_reading_page()
    _, ids_a = series["A"]
    _, ids_b = series["B"]
    tokens_b = series["tokens"]["B"]
    mount(page, ids_a)
    page.evaluate(
        "list => viewer.loadMeasurements(list)",
        [{"type": "length", "slice_index": 0, "points": [[10, 10], [20, 20]]}],
    )
    before = len(reading_server.dicom_requests(tokens_b))
    result = page.evaluate("ids => viewer.prefetch(ids)", ids_b)
    assert result == {"requested": N_SLICES, "loaded": N_SLICES}
    fetched = reading_server.dicom_requests(tokens_b)[before:]
    assert sorted(p for p, _, _ in fetched) == sorted(f"/read/i/{t}/" for t in tokens_b)

    st = page.evaluate("ids => viewer.loadStack(ids)", ids_b)
    assert st["viewports"][0]["slice_index"] == 0
    page.mouse.move(*to_client(page, *DISC_CENTRE))
    page.mouse.wheel(0, 120)
    wait_slice(page, 1)
    assert len(reading_server.dicom_requests(tokens_b)) == before + N_SLICES, "refetched"
    # The previous case's measurements are gone with its images.
    assert page.evaluate("() => viewer.getMeasurements()") == []
    assert problems == []


def test_help_lists_the_shortcuts(open_reading_page, series):
    page, problems = open_reading_page()
    _, ids = series["A"]
    mount(page, ids)
    help_panel = page.locator(".rv-help")
    assert help_panel.is_hidden()
    focus_viewer(page)
    page.keyboard.press("?")
    assert help_panel.is_visible()
    text = help_panel.inner_text()
    for phrase in ("Previous / next slice", "Window/level", "Reset", "Ellipse ROI", "Zoom"):
        assert phrase in text
    page.keyboard.press("Escape")
    assert help_panel.is_hidden()
    page.locator('[data-action="help"]').click()
    assert help_panel.is_visible()
    assert problems == []


def test_bad_input_raises_clear_errors(open_reading_page, series):
    page, _ = open_reading_page()
    _, ids = series["A"]
    bad_mounts = {
        "imageIds must be a non-empty array": {"imageIds": []},
        'layout must be "single" or "side-by-side"': {"imageIds": ids, "layout": "quad"},
        "secondImageIds must be a non-empty array": {"imageIds": ids, "layout": "side-by-side"},
        "width must be positive": {
            "imageIds": ids,
            "presets": [{"name": "x", "kind": "absolute", "width": -1, "center": 0}],
        },
    }
    for message, options in bad_mounts.items():
        error = page.evaluate(
            "o => { try { RV.mount(document.getElementById('viewer'), o); return null; }"
            " catch (e) { return e.message; } }",
            options,
        )
        assert error is not None and message in error, (message, error)
    mount(page, ids)
    error = page.evaluate(
        "l => viewer.loadMeasurements(l).then(() => null, (e) => e.message)",
        [{"type": "rectangle", "slice_index": 99, "points": [[1, 1], [5, 5]]}],
    )
    assert "slice_index 99 is outside 0..11" in error
    error = page.evaluate(
        "l => viewer.loadMeasurements(l).then(() => null, (e) => e.message)",
        [{"type": "polygon", "slice_index": 0, "points": [[1, 1], [5, 5]]}],
    )
    assert "type must be one of" in error


def test_destroy_releases_the_viewer_and_the_element_can_be_reused(open_reading_page, series):
    page, problems = open_reading_page()
    _, ids_a = series["A"]
    _, ids_b = series["B"]
    mount(page, ids_a, layout="side-by-side", secondImageIds=ids_b)
    page.evaluate(
        "list => viewer.loadMeasurements(list)",
        [{"type": "length", "slice_index": 0, "points": [[10, 10], [20, 20]]}],
    )
    page.evaluate("() => viewer.destroy()")
    assert page.locator("#viewer").inner_html() == ""
    error = page.evaluate("() => { try { viewer.reset(); } catch (e) { return e.message; } }")
    assert "destroyed" in error
    st = mount(page, ids_b, initialSliceIndex="middle")
    assert st["layout"] == "single"
    assert st["viewports"][0]["slice_index"] == N_SLICES // 2
    assert page.evaluate("() => viewer.getMeasurements()") == []
    assert page.locator(".rv-pane").count() == 1
    assert problems == []
