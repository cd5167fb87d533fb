"""The README's demo command brings up web server and worker on the embedded default."""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_command_serves_site_with_live_worker(tmp_path, page):
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CELERY_", "DJANGO_"))
    }
    env.update(PORT=str(port), VAR_DIR=str(tmp_path / "var"))
    log = (tmp_path / "demo.log").open("w")
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "demo")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        text = ""
        while time.monotonic() < deadline:
            text = (tmp_path / "demo.log").read_text()
            if f"running at {url}/" in text and "Listening at" in text:
                break
            assert proc.poll() is None, text
            time.sleep(1)
        else:
            pytest.fail(f"demo did not start in 180 s:\n{text}")
        password = re.search(r"admin\s+password (\S+)", text).group(1)
        assert (tmp_path / "var" / "db.sqlite3").exists()  # embedded default: SQLite

        page.goto(f"{url}/accounts/login/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/")
        page.click("text=Workers")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#workers tbody tr')]"
            ".some(r => r.innerText.includes('up') && r.innerText.includes('CPU'))",
            timeout=60_000,
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
