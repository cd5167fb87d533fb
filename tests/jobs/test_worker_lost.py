"""Issue acceptance: a whole worker killed with SIGKILL mid-job on the embedded default
(SQLite + kombu's filesystem broker under VAR_DIR, as ``scripts/demo`` runs it) leaves no
job "running" forever. The broker loses the message with its worker; the job's lease runs
out and the job list fails it as "worker lost", retryable. Retry is accepted, a new worker
cleans the killed attempt's input copy and runs the job to success.

Everything runs in subprocesses on a private VAR_DIR: the set-up, a gunicorn web server
(spoken to over HTTP with basic auth) and the Celery workers. The kill-to-recovery time is
printed (``-s`` shows it)."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 8.0
HEARTBEAT_S = 1.0
RECOVERY_MARGIN_S = 6.0  # the job list is polled every 0.25 s; SQLite writes may wait
PASSWORD = "lease-test-password-1"
N_SLICES = 12  # GRAPPA on 12 slices of 96 x 96: about a second of work on an idle machine

pytestmark = pytest.mark.slow

SETUP = """
import json, sys
import django
django.setup()
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
call_command("migrate", verbosity=0)
from mriplatform.accounts.models import Institution, User
from mriplatform.accounts.roles import Role, assign_role
from mriplatform.cases.models import Case
from mriplatform.cases.services import ingest_files
from mriplatform.protocols.models import Protocol
from recon_engine.registry import get_method
site = Institution.objects.create(name="Lease test hospital", code="lease")
admin = User.objects.create_user("leaseadmin", password=sys.argv[2], institution=site)
assign_role(admin, Role.SITE_ADMIN)
case = Case.objects.create(institution=site, subject_code="LEASE-0001", anatomy="knee")
raw = open(sys.argv[1], "rb").read()
series = ingest_files(case, [SimpleUploadedFile("raw.h5", raw)], admin)
protocol = Protocol.objects.create(
    name="GRAPPA R2", method="grappa", params=get_method("grappa").validate({}),
    mask_pattern="uniform", acceleration=2.0, center_fraction=0.25,
    tr_ms=3000.0, phase_encodes=96,
)
print(json.dumps({"series": series.pk, "protocol": protocol.pk}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def embedded_env(var_dir: Path, scratch: Path) -> dict[str, str]:
    """The demo's environment: no database or broker URL (SQLite + filesystem broker)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "CELERY_", "DJANGO_", "MEDIA_", "JOB_"))
    }
    env.update(
        VAR_DIR=str(var_dir),
        JOB_LEASE_SECONDS=str(LEASE_S),
        JOB_HEARTBEAT_SECONDS=str(HEARTBEAT_S),
        JOB_SCRATCH_DIR=str(scratch),
        RECON_DEVICE="cpu",
        DJANGO_SETTINGS_MODULE="mriplatform.settings",
    )
    return env


class Api:
    def __init__(self, base: str):
        self.base = base
        token = base64.b64encode(f"leaseadmin:{PASSWORD}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers=self.headers
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def job(self, pk: int) -> dict:
        status, body = self.call("GET", f"/api/jobs/{pk}/")
        assert status == 200, body
        return body

    def wait(self, pk: int, until, timeout: float, interval: float = 0.25) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.job(pk)
            if until(state):
                return state
            time.sleep(interval)
        raise AssertionError(f"job {pk} still {state['status']} after {timeout} s: {state}")


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """Start ``args`` in its own process group (so the whole group can be killed)."""
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def start_worker(env: dict, log: Path, name: str) -> subprocess.Popen:
    return start(
        [sys.executable, "-m", "celery", "-A", "mriplatform", "worker", "-Q",
         "recon,default,short", "-c", "1", "-n", name, "-l", "info"],
        env,
        log,
    )  # fmt: skip


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_worker_killed_with_sigkill_mid_job_is_recovered_within_the_lease(tmp_path):
    from recon_engine.simulation import simulate_fastmri_file

    raw_file = tmp_path / "raw.h5"
    simulate_fastmri_file(
        ROOT / "data/mri/colin27_t1_1mm.nii.gz",
        raw_file,
        n_slices=N_SLICES,
        matrix=(96, 96),
        n_coils=8,
        snr=40.0,
        seed=5,
    )
    var_dir, scratch = tmp_path / "var", tmp_path / "scratch"
    env = embedded_env(var_dir, scratch)
    setup = subprocess.run(
        [sys.executable, "-c", SETUP, str(raw_file), PASSWORD],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert setup.returncode == 0, setup.stderr
    ids = json.loads(setup.stdout.strip().splitlines()[-1])
    assert (var_dir / "db.sqlite3").exists()

    port = free_port()
    web = start(
        [str(Path(sys.executable).parent / "gunicorn"), "mriplatform.wsgi", "--bind",
         f"127.0.0.1:{port}", "--workers", "1", "--threads", "4"],
        env,
        tmp_path / "web.log",
    )  # fmt: skip
    worker = start_worker(env, tmp_path / "worker1.log", "lease1@%h")
    second = None
    try:
        api = Api(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while True:
            try:
                api.call("GET", "/api/jobs/")
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "web.log").read_text()
                time.sleep(0.3)
        status, body = api.call(
            "POST", "/api/jobs/submit/", {"series": [ids["series"]], "protocols": [ids["protocol"]]}
        )
        assert status == 201, body
        pk = body["created"][0]["id"]

        # Mid-job: its input copied to the attempt's scratch folder. The worker is frozen
        # there (SIGSTOP) so that the kill lands mid-job however fast the machine is.
        deadline = time.monotonic() + 90
        while not list(scratch.glob(f"job-{pk}-attempt-1-*/input.h5")):
            assert time.monotonic() < deadline, api.job(pk)
            time.sleep(0.02)
        os.killpg(worker.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()  # no heartbeat from here on
        attempt_folders = list(scratch.glob(f"job-{pk}-attempt-1-*"))
        state = api.job(pk)
        assert state["status"] == "running" and state["progress_done"] < N_SLICES, state

        os.killpg(worker.pid, signal.SIGKILL)  # the whole worker: main process and pool
        killed_at = time.monotonic()
        worker.wait(timeout=10)

        lost = api.wait(pk, lambda s: s["status"] != "running", LEASE_S + RECOVERY_MARGIN_S)
        recovery_s = time.monotonic() - killed_at
        print(
            f"\nkill -> job failed as worker lost: {recovery_s:.1f} s "
            f"(lease {LEASE_S:g} s, heartbeat {HEARTBEAT_S:g} s)"
        )
        assert lost["status"] == "failed", lost
        assert lost["error"].startswith("worker lost (no heartbeat for"), lost["error"]
        assert f"lease {LEASE_S:g} s" in lost["error"]
        # Not reaped early either: only once the lease since the last beat ran out.
        assert time.monotonic() - frozen_at >= LEASE_S - HEARTBEAT_S - 0.5
        assert attempt_folders[0].exists()  # the killed attempt's input copy is still there

        status, body = api.call("POST", f"/api/jobs/{pk}/retry/")
        assert status == 202 and body["status"] == "queued", body
        second = start_worker(env, tmp_path / "worker2.log", "lease2@%h")
        done = api.wait(pk, lambda s: s["status"] in ("succeeded", "failed"), timeout=120)
        assert done["status"] == "succeeded", done
        assert done["attempts"] == 2 and done["progress_done"] == N_SLICES
        assert done["metrics"]["nmse"] < 0.05  # GRAPPA R2: a real image
        # The new worker removed the killed attempt's input copy when it started; the
        # successful attempt removed its own.
        assert list(scratch.iterdir()) == []
        assert "1 stale attempt folder(s) removed" in (tmp_path / "worker2.log").read_text()
    finally:
        for proc in (second, worker, web):
            if proc is not None:
                stop(proc)
