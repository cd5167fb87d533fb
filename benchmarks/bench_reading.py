"""Time to show the next case with concurrent readers, against Orthanc (not a test).

Builds an open study in a scratch PostgreSQL database (created on ``--postgres`` and dropped
afterwards, or ``--database-url``): ``--cases`` cases x 2 arms of ``--slices`` x
``--matrix``^2 MR images, ``--readers`` HTTP readers plus ``--browser-readers`` Chromium
readers; serves it with gunicorn as in production (``--workers`` processes, ``--threads``),
the Celery broker on Redis (``--redis``), and measures:

1. **Whole series, ours vs Orthanc** (same run, same source series, same concurrency): every
   HTTP reader fetches its own blinded copy of one series (``/read/s/<token>/``, one
   multipart/related response) ``--rounds`` times at once. Then Orthanc (Debian ``orthanc``
   + ``orthanc-dicomweb``, started here on the same instances when installed) serves the
   same series to the same number of threads: WADO-RS series (one multipart response), and
   QIDO search + series metadata + the first frame.
2. **Reading**, all readers at once: each HTTP reader reads its first session case after
   case as the viewer does: autosave, **submit -> next page HTML -> the next case's series**
   (one request; the first image is on hand when its part has arrived). No prefetch here:
   the worst case for the server; ``--http-think`` gives each HTTP reader a reading time
   per case (0: back to back, a throughput test). Each Chromium reader answers, waits
   ``--think`` seconds (the page prefetches the next exam meanwhile) and clicks Submit:
   **in-browser time** = click -> the next case's first image on screen.

Prints the median and 95th percentile of each, in milliseconds. On a shared machine the
numbers are noisy: run it when the machine is otherwise idle and repeat.

Setup (Debian/Ubuntu, as root): ``apt-get install orthanc orthanc-dicomweb`` (the Orthanc
anchor is skipped with a note when ``Orthanc`` is not installed); PostgreSQL and Redis on
their standard local ports (``source scripts/lib.sh; ensure_services``).

    nice .venv/bin/python benchmarks/bench_reading.py [--readers 50] [--browser-readers 3]
        [--cases 4] [--slices 30] [--matrix 256] [--rounds 5] [--workers 4] [--threads 1]
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
    p.add_argument("--readers", type=int, default=50)
    p.add_argument("--browser-readers", type=int, default=3)
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--slices", type=int, default=30)
    p.add_argument("--matrix", type=int, default=256)
    p.add_argument("--rounds", type=int, default=5, help="whole-series fetches per thread")
    p.add_argument("--think", type=float, default=2.0, help="browser reader's seconds per case")
    p.add_argument(
        "--http-think",
        type=float,
        default=0.0,
        help="HTTP reader's mean seconds per case (uniform 0.5x-1.5x; 0: back to back)",
    )
    p.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    p.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker")
    p.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--database-url", default="", help="an existing empty database instead")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/8")
    p.add_argument("--orthanc", default="/usr/sbin/Orthanc")
    p.add_argument("--orthanc-plugins", default="/usr/share/orthanc/plugins")
    return p.parse_args()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summary(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<52} no samples"
    ms = np.asarray(values) * 1000
    return (
        f"{name:<52} n={ms.size:4d}  median {np.median(ms):7.1f} ms  "
        f"p95 {np.percentile(ms, 95):7.1f} ms  max {ms.max():7.1f} ms"
    )


def scratch_database(args) -> tuple[str, callable]:
    """(database URL, drop function): a fresh PostgreSQL database for this run."""
    if args.database_url:
        return args.database_url, lambda: None
    import psycopg

    name = f"bench_reading_{os.getpid()}"
    with psycopg.connect(args.postgres, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = args.postgres.rsplit("/", 1)[0]

    def drop() -> None:
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{base}/{name}", drop


def build_study(args):
    """The open study, a session cookie per reader, and the storage names of the first
    case's first-arm instances (the series every reader and Orthanc serve in part 1)."""
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
    anchor = None
    for i in range(args.cases):
        case = CaseFactory(
            subject_code=f"BENCH-{i:03d}", institution=study.institution, sequence="PD FSE"
        )
        raw = SeriesFactory(case=case)
        for protocol in protocols:
            job = imaged_reconstruction(raw, protocol, n_slices=args.slices, size=args.matrix)
            anchor = anchor or job.output_series
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
    files = [inst.file.path for inst in anchor.instances.order_by("instance_number")]
    return study, readers, cookies, anchor, files


CONFIG = re.compile(r'id="reading-config" type="application/json">(.*?)</script>', re.S)
START = re.compile(r'href="(/read/[A-Za-z0-9_-]+/)" id="start-1"')


def _session(base: str, cookie: str):
    import requests

    s = requests.Session()
    s.cookies.set("sessionid", cookie, domain="127.0.0.1")
    return s


def fetch_multipart(s, url: str) -> tuple[float, float, int]:
    """GET a multipart/related series: (seconds to the end of its first part, seconds to the
    whole body, number of parts). The delimiter is looked for only in the new bytes."""
    t0 = time.perf_counter()
    with s.get(url, stream=True) as response:
        response.raise_for_status()
        boundary = re.search(r'boundary="?([^";]+)', response.headers["Content-Type"]).group(1)
        delimiter = f"--{boundary}".encode()
        chunks, seen, first, tail = [], 0, None, b""
        for chunk in response.iter_content(1024 * 1024):
            chunks.append(chunk)
            if first is None:
                window = tail + chunk
                seen += window.count(delimiter)
                tail = window[-(len(delimiter) - 1) :]
                if seen >= 2:
                    first = time.perf_counter() - t0
        total = time.perf_counter() - t0
    parts = b"".join(chunks).count(delimiter) - 1
    return first if first is not None else total, total, parts


def race(n: int, work) -> None:
    """Runs work(i) for i < n in n threads released at once."""
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


def series_round(base, cookies, series_urls, rounds, errors) -> list[float]:
    times: list[float] = []

    def work(i):
        s = _session(base, cookies[i])
        for _ in range(rounds):
            try:
                _, total, _ = fetch_multipart(s, base + series_urls[i])
                times.append(total)
            except Exception as exc:  # reported at the end
                errors.append(f"series: {exc!r}")

    race(len(series_urls), work)
    return times


def http_reader(
    base: str, cookie: str, results: dict, errors: list, think: float, seed: int
) -> None:
    """One reader over HTTP: read every case of session 1, timing each next case."""
    rng = np.random.default_rng(seed)
    s = _session(base, cookie)
    try:
        page = s.get(f"{base}/read/")
        path = START.search(page.text).group(1)
        html = s.get(base + path).text
        while True:
            config = json.loads(CONFIG.search(html).group(1))
            fetch_multipart(s, base + config["series"][0])
            if think:
                time.sleep(think * rng.uniform(0.5, 1.5))
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
            first, total, _ = fetch_multipart(s, base + config["series"][0])
            results["html"].append(t_html - t0)
            results["first"].append(t_html - t0 + first)
            results["all"].append(t_html - t0 + total)
    except Exception as exc:  # reported at the end, the other readers go on
        errors.append(repr(exc))


def browser_readers(base: str, cookies: list[str], think: float, results: list) -> None:
    """Chromium readers in turn: click Submit -> the next case's first image on screen."""
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        for cookie in cookies:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
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


def start_orthanc(args, scratch: Path):
    """Orthanc with the DICOMweb plugin on free ports, or None when it is not installed."""
    if not Path(args.orthanc).exists():
        return None, None
    http_port = free_port()
    storage = scratch / "orthanc"
    storage.mkdir()
    config = {
        "Name": "bench",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": http_port,
        "DicomPort": free_port(),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [args.orthanc_plugins],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    path = scratch / "orthanc.json"
    path.write_text(json.dumps(config))
    log = (scratch / "orthanc.log").open("w")
    proc = subprocess.Popen([args.orthanc, str(path)], stdout=log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{http_port}"


def wait_http(url: str, seconds: float = 60) -> None:
    import requests

    deadline = time.monotonic() + seconds
    while True:
        try:
            requests.get(url, timeout=5)
            return
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def orthanc_rounds(orthanc: str, files: list[str], n: int, rounds: int, errors: list):
    """Upload the series, then n threads x rounds: WADO-RS whole series; QIDO instances +
    series metadata + first frame."""
    import requests

    for name in files:
        requests.post(f"{orthanc}/instances", data=Path(name).read_bytes()).raise_for_status()
    study = requests.get(f"{orthanc}/dicom-web/studies").json()[0]["0020000D"]["Value"][0]
    series = requests.get(f"{orthanc}/dicom-web/studies/{study}/series").json()
    series_uid = series[0]["0020000E"]["Value"][0]
    root = f"{orthanc}/dicom-web/studies/{study}/series/{series_uid}"
    whole: list[float] = []
    search: list[float] = []

    def work(_):
        s = requests.Session()
        s.headers["Accept"] = 'multipart/related; type="application/dicom"'
        for _ in range(rounds):
            try:
                _, total, parts = fetch_multipart(s, root)
                assert parts == len(files), parts
                whole.append(total)
                t0 = time.perf_counter()
                found = s.get(f"{root}/instances", headers={"Accept": "application/json"})
                s.get(f"{root}/metadata", headers={"Accept": "application/json"})
                sop = found.json()[0]["00080018"]["Value"][0]
                frame = s.get(
                    f"{root}/instances/{sop}/frames/1",
                    headers={"Accept": 'multipart/related; type="application/octet-stream"'},
                )
                frame.raise_for_status()
                search.append(time.perf_counter() - t0)
            except Exception as exc:  # reported at the end
                errors.append(f"orthanc: {exc!r}")

    race(n, work)
    return whole, search


def main() -> None:
    args = parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench_reading_"))
    database_url, drop_database = scratch_database(args)
    env = {
        "VAR_DIR": str(scratch),
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": args.redis,
        "CELERY_RESULT_BACKEND": args.redis,
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

    server = orthanc = None
    try:
        print(f"scratch: {scratch}; database: {database_url.split('@')[-1]}")
        call_command("migrate", verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        t = time.perf_counter()
        study, readers, cookies, anchor, files = build_study(args)
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
                "--timeout",
                "120",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
        )
        wait_http(f"{base}/accounts/login/")
        errors: list[str] = []
        http_cookies = cookies[: args.readers]

        # 1. Whole series, ours: each reader's own blinded copy of the anchor series.
        from studies.models import ReadingSession, ReadItem

        ReadingSession.objects.filter(study=study).update(available_from=django_now())
        series_urls = []
        for reader, cookie in zip(readers[: args.readers], http_cookies, strict=True):
            item = ReadItem.objects.filter(
                reader=reader, image_series=anchor, second_arm=None
            ).first()
            html = _session(base, cookie).get(f"{base}/read/{item.alias}/").text
            series_urls.append(json.loads(CONFIG.search(html).group(1))["series"][0])
        connections.close_all()
        t = time.perf_counter()
        s = _session(base, http_cookies[0])
        _, cold, parts = fetch_multipart(s, base + series_urls[0])
        assert parts == args.slices, parts
        print(f"first request of the series (blinded and stored once): {cold * 1000:.0f} ms")
        ours = series_round(base, http_cookies, series_urls, args.rounds, errors)
        print(f"part 1 (ours) {time.perf_counter() - t:.1f} s")

        # 1b. Orthanc on the same source instances, same concurrency.
        orthanc, orthanc_base = start_orthanc(args, scratch)
        theirs_whole: list[float] = []
        theirs_search: list[float] = []
        if orthanc is not None:
            wait_http(f"{orthanc_base}/system")
            theirs_whole, theirs_search = orthanc_rounds(
                orthanc_base, files, args.readers, args.rounds, errors
            )
            orthanc.terminate()
            orthanc.wait(timeout=30)
            orthanc = None

        # 2. Reading: HTTP readers and Chromium readers at once.
        results = {"html": [], "first": [], "all": []}
        threads = [
            threading.Thread(
                target=http_reader, args=(base, c, results, errors, args.http_think, i)
            )
            for i, c in enumerate(http_cookies)
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
        pace = f"{args.http_think:g} s per case" if args.http_think else "back to back"
        print(
            f"{args.readers} HTTP readers ({pace}) + {args.browser_readers} Chromium readers, "
            "gunicorn "
            f"{args.workers} workers x {args.threads} threads, {elapsed:.1f} s, "
            f"{os.cpu_count()} CPUs (load average now {os.getloadavg()[0]:.1f})"
        )
        n = args.readers
        print(summary(f"ours: whole {args.slices}-slice series, {n} at once", ours))
        if orthanc_base:
            print(summary(f"Orthanc: WADO-RS whole series, {n} at once", theirs_whole))
            print(summary(f"Orthanc: QIDO + metadata + frame 1, {n} at once", theirs_search))
        else:
            print(
                f"Orthanc: not installed at {args.orthanc} (apt-get install orthanc "
                "orthanc-dicomweb), no anchor"
            )
        print(summary("server: submit -> next page HTML", results["html"]))
        print(summary("server: submit -> first image of the next case", results["first"]))
        print(summary(f"server: submit -> all {args.slices} slices", results["all"]))
        print(summary("browser: click Submit -> next case on screen", in_browser))
        for error in errors[:20]:
            print("error:", error)
        if len(errors) > 20:
            print(f"... and {len(errors) - 20} more errors")
    finally:
        if orthanc is not None:
            orthanc.terminate()
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        from django.db import connections

        connections.close_all()
        drop_database()
        shutil.rmtree(scratch, ignore_errors=True)


def django_now():
    from django.utils import timezone

    return timezone.now()


if __name__ == "__main__":
    main()
