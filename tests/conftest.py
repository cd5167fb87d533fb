"""Fixtures shared across the platform tests: users per role, a real Celery worker, Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in the test thread; Django's ORM refuses to
# run inside one unless told the calls are safe (they are: the loop is Playwright's).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture
def make_user(db):
    from tests.factories import UserFactory

    def make(*roles, **kwargs):
        return UserFactory(roles=roles, **kwargs)

    return make


def _database_url_for(settings_dict: dict) -> str:
    engine = settings_dict["ENGINE"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or ""
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or "5432"
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real ``celery worker`` process on the test database and the configured broker.

    Not eager mode: tasks cross the broker (Redis in CI) to another process.
    Yields the worker's hostname.
    """
    from django.db import connection

    from mriplatform.celery import app

    hostname = f"test-{uuid.uuid4().hex[:8]}@localhost"
    env = dict(os.environ)
    env["DATABASE_URL"] = _database_url_for(connection.settings_dict)
    env["DJANGO_SETTINGS_MODULE"] = "mriplatform.settings"
    env["JOB_SCRATCH_DIR"] = str(tmp_path_factory.mktemp("job-scratch"))
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    handle = log.open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "mriplatform",
            "worker",
            "-Q",
            "recon,default,short",
            "-c",
            "1",
            "-n",
            hostname,
            "--without-gossip",
            "--without-mingle",
            "-l",
            "info",
        ],
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{log.read_text()}")
            replies = app.control.ping(destination=[hostname], timeout=1.0) or []
            if any(hostname in reply for reply in replies):
                break
        else:
            raise RuntimeError(f"worker did not answer a ping in 90 s:\n{log.read_text()}")
        yield hostname
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        handle.close()


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (never Playwright's own browser download)."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.fixture(scope="session", autouse=True)
def session_media_root(request, tmp_path_factory):
    """Keep stored files out of var/media: the tests and a worker they start share one folder.

    The default storage gets an explicit location (overriding ``MEDIA_ROOT`` alone does not
    move a ``FileSystemStorage`` built with one), and ``MEDIA_ROOT`` is exported so that
    ``celery_worker_process``, started later in the session, stores in the same folder.
    """
    if not request.config.pluginmanager.hasplugin("django"):
        yield None
        return
    from django.conf import settings
    from django.test.utils import override_settings

    if not settings.STORAGES["default"]["BACKEND"].endswith("FileSystemStorage"):
        yield None
        return
    root = tmp_path_factory.mktemp("media")
    storages = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {"location": str(root)}},
    }
    previous = os.environ.get("MEDIA_ROOT")
    os.environ["MEDIA_ROOT"] = str(root)
    override = override_settings(MEDIA_ROOT=root, STORAGES=storages)
    override.enable()
    try:
        yield root
    finally:
        override.disable()
        if previous is None:
            os.environ.pop("MEDIA_ROOT", None)
        else:
            os.environ["MEDIA_ROOT"] = previous


@pytest.fixture
def media_root(settings, tmp_path):
    """A private, empty storage folder for one test (not shared with a worker)."""
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {"location": str(root)}},
    }
    return root


@pytest.fixture(scope="session")
def raw_case_file(tmp_path_factory):
    """A small fully sampled fastMRI raw file simulated from a T1 brain: 4 slices, 8 coils,
    96 x 96 k-space, SNR 40."""
    from recon_engine.simulation import simulate_fastmri_file

    out = tmp_path_factory.mktemp("raw") / "Doe_Jane_scan.h5"
    simulate_fastmri_file(
        ROOT / "data/mri/colin27_t1_1mm.nii.gz",
        out,
        n_slices=4,
        matrix=(96, 96),
        n_coils=8,
        snr=40.0,
        seed=3,
    )
    return out


@pytest.fixture(scope="session")
def mr_series_files(tmp_path_factory):
    """A 3-slice 64 x 64 MR DICOM series (patient Doe^Jane, ID HOSPITAL-123) as file paths."""
    import numpy as np

    from recon_engine.io.dicom import write_dicom_series
    from recon_engine.simulation import load_slices

    volume = load_slices(ROOT / "data/mri/mni152_2009a_t1_1mm.nii.gz", 3, size=(64, 64))
    return write_dicom_series(
        tmp_path_factory.mktemp("dicom"),
        np.abs(volume.numpy()),
        description="T1 axial",
        patient_id="HOSPITAL-123",
        patient_name="Doe^Jane",
    )
