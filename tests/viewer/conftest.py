"""Fixtures for the viewer bundle tests: built bundle, synthetic series, server, page."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.viewer.support import SESSION_COOKIE, make_series, start_server

ROOT = Path(__file__).resolve().parents[2]
STATIC_VIEWER = ROOT / "static" / "viewer"
BUILD_SCRIPT = ROOT / "scripts" / "build_frontend.sh"

# Makes WebGL unavailable before any page script runs, as on machines without a usable GPU.
NO_WEBGL_SCRIPT = """
(() => {
  const block = (proto) => {
    const original = proto.getContext;
    proto.getContext = function (type, ...rest) {
      if (/webgl/i.test(String(type))) return null;
      return original.call(this, type, ...rest);
    };
  };
  block(HTMLCanvasElement.prototype);
  if (typeof OffscreenCanvas !== 'undefined') block(OffscreenCanvas.prototype);
})();
"""


@pytest.fixture(scope="session")
def viewer_bundle() -> Path:
    """static/viewer/ with a current build: rebuilt when sources changed and Node is present."""
    have_node = shutil.which("node") and shutil.which("npm")
    if have_node:
        args = [str(BUILD_SCRIPT)]
        if (STATIC_VIEWER / "viewer.js").exists():
            args.append("--if-needed")
        result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            pytest.fail(
                "scripts/build_frontend.sh failed, the viewer bundle cannot be tested:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
    if not (STATIC_VIEWER / "viewer.js").exists():
        pytest.fail(
            "static/viewer/viewer.js is missing and Node.js/npm are not installed: "
            "install Node.js >= 18 and npm, then run scripts/build_frontend.sh"
        )
    return STATIC_VIEWER


@pytest.fixture(scope="module")
def reading_server(viewer_bundle):
    server, thread = start_server(viewer_bundle)
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def open_reading_page(browser, reading_server):
    """Opens the reading page in a fresh context with the reader's session cookie.

    Returns a function open(webgl=True) -> (page, problems): problems collects page errors,
    console errors and requests to any other origin, which the tests expect to stay empty.
    """
    contexts = []

    def open_page(webgl: bool = True):
        context = browser.new_context(viewport={"width": 1000, "height": 720})
        contexts.append(context)
        context.add_cookies(
            [
                {
                    "name": SESSION_COOKIE[0],
                    "value": SESSION_COOKIE[1],
                    "url": reading_server.base_url,
                }
            ]
        )
        if not webgl:
            context.add_init_script(NO_WEBGL_SCRIPT)
        page = context.new_page()
        page.set_default_timeout(20_000)
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda msg: (
                problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
            ),
        )

        def check_origin(request):
            url = request.url
            if not (url.startswith(reading_server.base_url) or url.startswith(("data:", "blob:"))):
                problems.append(f"request to another origin: {url}")

        page.on("request", check_origin)
        page.goto(f"{reading_server.base_url}/reading/")
        page.wait_for_function("() => window.RV !== undefined")
        return page, problems

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture(scope="module")
def series(tmp_path_factory, reading_server):
    """Series A (published) and B (disc 1.5x brighter), each with image ids."""
    root = tmp_path_factory.mktemp("dicom")
    a = make_series(root / "a", seed=1)
    b = make_series(root / "b", seed=2, scale=1.5)
    ids_a, ids_b = reading_server.publish(a), reading_server.publish(b)
    return {
        "A": (a.pixels, ids_a),
        "B": (b.pixels, ids_b),
        "tokens": {"A": a.tokens, "B": b.tokens},
    }
