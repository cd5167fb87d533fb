"""Acceptance: every image request of every reader answers 200 when the reading pages and
the images are served by different web processes, across session boundaries of a study
with no washout (issue 12: 38 of 236 image requests were 404 with per-process tokens)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import _database_url_for

ROOT = Path(__file__).resolve().parents[2]
CONFIG = re.compile(r'id="reading-config" type="application/json">(.*?)</script>', re.S)
START = re.compile(r'href="(/read/[A-Za-z0-9_-]+/)" id="start-\d+"')

pytestmark = pytest.mark.django_db(transaction=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def two_web_processes(transactional_db, tmp_path):
    """Two gunicorn servers (separate processes, one worker each) on the test database and
    the tests' storage folder; yields their base URLs."""
    import requests
    from django.conf import settings
    from django.db import connection

    env = {
        **os.environ,
        "DATABASE_URL": _database_url_for(connection.settings_dict),
        "DJANGO_SETTINGS_MODULE": "mriplatform.settings",
        "SECRET_KEY": settings.SECRET_KEY,
        "LOG_LEVEL": "WARNING",
    }
    servers, bases = [], []
    for i in range(2):
        port = _free_port()
        log = (tmp_path / f"gunicorn{i}.log").open("w")
        servers.append(
            subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "gunicorn"),
                    "mriplatform.wsgi",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    "1",
                    "--threads",
                    "2",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        bases.append(f"http://127.0.0.1:{port}")
    try:
        for base in bases:
            deadline = time.monotonic() + 60
            while True:
                try:
                    requests.get(f"{base}/accounts/login/", timeout=5)
                    break
                except requests.RequestException:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)
        yield bases
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)


def _study_with_no_washout():
    """An open study: 2 cases x 2 arms with real DICOM images, 2 readers, 0-day washout,
    side-by-side paired reads (so the right-hand image sets are exercised too)."""
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

    study = StudyFactory(washout_days=0, paired_reads=True)
    protocols = [ProtocolFactory(name="P1"), ProtocolFactory(name="P2")]
    for label, protocol in zip("AB", protocols, strict=True):
        ArmFactory(study=study, label=label, protocol=protocol)
    for i in range(2):
        case = CaseFactory(subject_code=f"MP-{i}", institution=study.institution)
        raw = SeriesFactory(case=case)
        for protocol in protocols:
            imaged_reconstruction(raw, protocol, n_slices=4, size=32)
        StudyCaseFactory(study=study, case=case)
    Question.objects.create(study=study, key="quality", kind="likert", label="Quality")
    Question.objects.create(study=study, key="pref", kind="preference", label="Better image")
    readers = [UserFactory(roles=("reader",), institution=study.institution) for _ in range(2)]
    for reader in readers:
        add_reader(study, reader, actor=study.coordinator)
    open_study(study, study.coordinator)
    return study, readers


def _logged_in(reader):
    import requests
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    store = SessionStore()
    store[SESSION_KEY] = str(reader.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = reader.get_session_auth_hash()
    store.create()
    http = requests.Session()
    http.cookies.set("sessionid", store.session_key, domain="127.0.0.1")
    return http


def test_every_image_request_succeeds_across_processes_and_sessions(two_web_processes):
    from studies.models import ReadingSession

    study, readers = _study_with_no_washout()
    statuses: list[tuple[str, int]] = []
    sessions_read = 0
    for reader in readers:
        http = _logged_in(reader)
        turn = 0
        while True:
            base = two_web_processes[turn % 2]
            worklist = http.get(f"{base}/read/")
            assert worklist.status_code == 200
            start = START.search(worklist.text)
            if start is None:
                break
            path = start.group(1)
            sessions_read += 1
            while True:
                page_base = two_web_processes[turn % 2]
                image_base = two_web_processes[(turn + 1) % 2]
                turn += 1
                page = http.get(page_base + path)
                assert page.status_code == 200
                config = json.loads(CONFIG.search(page.text).group(1))
                urls = config["series"] + config["prefetchSeries"]
                for side in [config["imageIds"], config["secondImageIds"], *config["prefetch"]]:
                    urls += [u.removeprefix("wadouri:") for u in side]
                for url in urls:
                    statuses.append((url, http.get(image_base + url).status_code))
                headers = {
                    "X-CSRFToken": http.cookies["csrftoken"],
                    "Referer": page_base + path,
                }
                key, value = ("pref", "equal") if config["secondImageIds"] else ("quality", 3)
                saved = http.post(
                    image_base + config["answersUrl"],
                    json={"answers": [{"question": key, "value": value}]},
                    headers={**headers, "Referer": image_base + path},
                )
                assert saved.status_code == 200, saved.text
                reply = http.post(image_base + config["submitUrl"], headers=headers)
                assert reply.status_code == 200, reply.text
                if reply.json()["finished"]:
                    break
                path = reply.json()["next_url"]
    failed = [(url, status) for url, status in statuses if status != 200]
    assert not failed, f"{len(failed)} of {len(statuses)} image requests failed: {failed[:5]}"
    sessions = ReadingSession.objects.filter(study=study)
    assert sessions_read == sessions.count() and sessions_read >= 2 * len(readers)
    assert not sessions.filter(completed_at__isnull=True).exists()
    assert len(statuses) > 100
