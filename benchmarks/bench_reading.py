"""Time to show the next case with concurrent readers (not a test).

Builds an open study in a scratch database (``--database-url``, default SQLite in a
temporary directory): ``--cases`` cases x 2 arms of ``--slices`` x ``--matrix``^2 MR images,
``--readers`` HTTP readers plus ``--browser-readers`` Chromium readers; serves it with
gunicorn and then, all at once:

* each HTTP reader (a thread with ``requests``) reads its first session case after case:
  autosave an answer, then **server time to next case** = submit -> next reading page HTML
  -> the slice the viewer shows first (the middle one) -> every slice of the stack. No
  prefetch: every image is fetched cold, the worst case for the server;
* each Chromium reader (Playwright, in turn) answers, waits ``--think`` seconds (the viewer
  prefetches the next case meanwhile, as for a real reader) and clicks Submit: **in-browser
  time** = click -> the next case's first image on screen (``viewer.ready``).

Prints the median and 95th percentile of each, in milliseconds.

    .venv/bin/python benchmarks/bench_reading.py [--readers 20] [--browser-readers 3]
        [--cases 6] [--slices 20] [--matrix 256] [--database-url postgres://...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--readers", type=int, default=20)
    p.add_argument("--browser-readers", type=int, default=3)
    p.add_argument("--cases", type=int, default=6)
    p.add_argument("--slices", type=int, default=20)
    p.add_argument("--matrix", type=int, default=256)
    p.add_argument("--think", type=float, default=2.0, help="browser reader's seconds per case")
    p.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    p.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker")
    p.add_argument("--database-url", default="", help="scratch database (it is migrated)")
    return p.parse_args()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_study(args):
    """The open study, its readers and a logged-in session cookie per reader."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from studies.models import Question
    from studies.services import add_reader, open_study
    from tests.factories import (
        ArmFactory,
        CaseFactory,
        ProtocolFactory,
        SeriesFactory,
        StudyCaseFactory,
        StudyFactory,
        UserFactory,
    )
    from tests.studies.imaging import imaged_reconstruction

    study = StudyFactory(title="Reading benchmark")
    protocols = [ProtocolFactory(name="bench CS"), ProtocolFactory(name="bench DL")]
    for label, protocol in zip("AB", protocols, strict=True):
        ArmFactory(study=study, label=label, protocol=protocol)
    for i in range(args.cases):
        case = CaseFactory(subject_code=f"BENCH-{i:03d}", institution=study.institution)
        raw = SeriesFactory(case=case)
        for protocol in protocols:
            imaged_reconstruction(raw, protocol, n_slices=args.slices, size=args.matrix)
        StudyCaseFactory(study=study, case=case)
    Question.objects.create(study=study, key="quality", kind="likert", label="Quality")
    readers = [
        UserFactory(roles=("reader",), institution=study.institution)
        for _ in range(args.readers + args.browser_readers)
    ]
    for reader in readers:
        add_reader(study, reader, actor=study.coordinator)
    open_study(study, study.coordinator)
    cookies = []
    for reader in readers:
        session = SessionStore()
        session[SESSION_KEY] = str(reader.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = reader.get_session_auth_hash()
        session.create()
        cookies.append(session.session_key)
    return cookies


CONFIG = re.compile(r'id="reading-config" type="application/json">(.*?)</script>', re.S)
START = re.compile(r'href="(/read/[A-Za-z0-9_-]+/)" id="start-1"')


def http_reader(base: str, cookie: str, results: dict, errors: list) -> None:
    """One reader over HTTP: read every case of session 1, timing each next case."""
    import requests

    s = requests.Session()
    s.cookies.set("sessionid", cookie, domain="127.0.0.1")
    try:
        page = s.get(f"{base}/read/")
        path = START.search(page.text).group(1)
        html = s.get(base + path).text
        while True:
            config = json.loads(CONFIG.search(html).group(1))
            images = [u.removeprefix("wadouri:") for u in config["imageIds"]]
            for url in images:
                s.get(base + url).raise_for_status()
            headers = {"X-CSRFToken": s.cookies["csrftoken"], "Referer": base + path}
            s.post(
                base + config["answersUrl"],
                json={"answers": [{"question": "quality", "value": 3}]},
                headers=headers,
            ).raise_for_status()
            t0 = time.perf_counter()
            reply = s.post(base + config["submitUrl"], headers=headers)
            reply.raise_for_status()
            if reply.json()["finished"]:
                break
            path = reply.json()["next_url"]
            html = s.get(base + path).text
            t_html = time.perf_counter()
            config = json.loads(CONFIG.search(html).group(1))
            images = [u.removeprefix("wadouri:") for u in config["imageIds"]]
            middle = len(images) // 2
            s.get(base + images[middle]).raise_for_status()
            t_first = time.perf_counter()
            for i, url in enumerate(images):
                if i != middle:
                    s.get(base + url).raise_for_status()
            t_all = time.perf_counter()
            results["html"].append(t_html - t0)
            results["first"].append(t_first - t0)
            results["all"].append(t_all - t0)
            html = s.get(base + path).text  # the reader's page as they read it
    except Exception as exc:  # reported at the end, the other readers go on
        errors.append(repr(exc))


def browser_readers(base: str, cookies: list[str], think: float, results: list) -> None:
    """Chromium readers in turn: click Submit -> the next case's first image on screen."""
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        for cookie in cookies:
            context = browser.new_context()
            context.add_cookies([{"name": "sessionid", "value": cookie, "url": base}])
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{base}/read/")
            page.click("#start-1")
            while True:
                page.wait_for_selector("body[data-viewer-ready='1'][data-reading-ready='1']")
                page.check("fieldset[data-key='quality'] input[value='3']")
                page.wait_for_function(
                    "() => document.getElementById('save-status').textContent"
                    " === 'All answers saved.'"
                )
                page.wait_for_timeout(think * 1000)
                last = page.locator("#position").inner_text().split()
                t0 = time.perf_counter()
                page.click("#submit-read")
                if last[1] == last[3]:
                    page.wait_for_url(f"{base}/read/")
                    break
                page.wait_for_function(
                    "() => document.body.dataset.viewerReady === '1' && "
                    "document.getElementById('position').textContent !== "
                    f"{json.dumps(' '.join(last))}"
                )
                results.append(time.perf_counter() - t0)
            context.close()
        browser.close()


def summary(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<46} no samples"
    ms = np.asarray(values) * 1000
    return (
        f"{name:<46} n={ms.size:4d}  median {np.median(ms):7.1f} ms  "
        f"p95 {np.percentile(ms, 95):7.1f} ms  max {ms.max():7.1f} ms"
    )


def main() -> None:
    args = parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench_reading_"))
    env = {
        "VAR_DIR": str(scratch),
        "DATABASE_URL": args.database_url or f"sqlite:///{scratch / 'db.sqlite3'}",
        "SECRET_KEY": "bench-reading-" + os.urandom(8).hex(),
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "mriplatform.settings",
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    print(f"scratch: {scratch}; database: {env['DATABASE_URL'].split('@')[-1]}")
    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    t = time.perf_counter()
    cookies = build_study(args)
    print(
        f"study: {args.cases} cases x 2 arms, {args.slices} x {args.matrix}^2 slices, "
        f"{len(cookies)} readers ({time.perf_counter() - t:.1f} s to build)"
    )
    from django.db import connections

    connections.close_all()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "mriplatform.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--threads",
            str(args.threads),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
    )
    try:
        import requests

        for _ in range(120):
            try:
                requests.get(f"{base}/accounts/login/", timeout=5)
                break
            except requests.RequestException:
                time.sleep(0.5)
        results = {"html": [], "first": [], "all": []}
        errors: list[str] = []
        threads = [
            threading.Thread(target=http_reader, args=(base, c, results, errors))
            for c in cookies[: args.readers]
        ]
        t = time.perf_counter()
        for th in threads:
            th.start()
        in_browser: list[float] = []
        if args.browser_readers:
            browser_readers(base, cookies[args.readers :], args.think, in_browser)
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - t
        print(
            f"{args.readers} HTTP readers + {args.browser_readers} Chromium readers at once, "
            f"gunicorn {args.workers} workers x {args.threads} threads, {elapsed:.1f} s, "
            f"{os.cpu_count()} CPUs"
        )
        print(summary("server: submit -> next page HTML", results["html"]))
        print(summary("server: submit -> first (middle) slice DICOM", results["first"]))
        print(summary(f"server: submit -> all {args.slices} slices DICOM", results["all"]))
        print(summary("browser: click Submit -> next case on screen", in_browser))
        for error in errors:
            print("reader error:", error)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
