"""A deployment that spans machines (issue 11): web, two Celery workers and the DICOM
receiver run as separate processes that share no filesystem (each has its own VAR_DIR,
MEDIA_ROOT and TMPDIR), only PostgreSQL, Redis and S3 object storage.

The S3 server is moto's standalone server (it speaks the S3 protocol; production uses
MinIO, see docker-compose.yml). A case goes upload -> reconstruction jobs -> a reader's
blinded image -> analysis report; DICOM also arrives over C-STORE. Every stored file must
land in the bucket, and no process's own folders may hold a file that was stored: nothing
works through a path another process wrote.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pydicom
import pytest
import requests
from celery import Celery
from django.conf import settings
from django.db import connection

from mriplatform.accounts.roles import Role
from mriplatform.cases.models import Case, Instance, Series
from mriplatform.jobs.models import ReconJob
from studies.models import AnalysisRun, Question
from tests.conftest import _database_url_for
from tests.factories import PASSWORD, InstitutionFactory, ProtocolFactory, UserFactory
from tests.studies.test_analysis_views import form_data

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ACCESS_KEY = "e2e-access-key"
SECRET_KEY = "e2e-secret-key"
REGION = "us-east-1"
SCANNER_AET = "E2E_SCANNER"
STARTUP_TIMEOUT_S = 150.0  # four Django processes at once on a loaded 2-core CI machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout: float, what: str, interval: float = 0.25):
    """Call ``check()`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not done after {timeout} s")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """moto's S3-compatible server as its own process on a free loopback port."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: proc.poll() is not None or port_open(port), 60, "moto server start")
        assert proc.poll() is None, (
            "moto's S3 server exited at start (requirements-dev.txt installs moto[server]):\n"
            + log_path.read_text(errors="replace")[-3000:]
        )
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


class Deployment:
    """The platform's processes, each with private folders, against one database, one
    broker and one bucket."""

    def __init__(self, base: Path, endpoint: str, bucket: str):
        self.base = base
        base.mkdir(parents=True)
        self.endpoint = endpoint
        self.bucket = bucket
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.secret_key = secrets.token_urlsafe(50)
        self.broker = deployment_broker_url()

    def var_dir(self, name: str) -> Path:
        return self.base / name / "var"

    def tmp_dir(self, name: str) -> Path:
        return self.base / name / "tmp"

    def env(self, name: str) -> dict[str, str]:
        var, tmp = self.var_dir(name), self.tmp_dir(name)
        var.mkdir(parents=True)
        tmp.mkdir(parents=True)
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="mriplatform.settings",
            DATABASE_URL=_database_url_for(connection.settings_dict),
            SECRET_KEY=self.secret_key,
            VAR_DIR=str(var),
            MEDIA_ROOT=str(var / "media"),
            STATIC_ROOT=str(var / "static"),
            TMPDIR=str(tmp),
            TEMP=str(tmp),
            TMP=str(tmp),
            AWS_STORAGE_BUCKET_NAME=self.bucket,
            AWS_S3_ENDPOINT_URL=self.endpoint,
            AWS_ACCESS_KEY_ID=ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_DEFAULT_REGION=REGION,
            CELERY_BROKER_URL=self.broker,
            CELERY_RESULT_BACKEND=self.broker,
        )
        return env

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = self.base / f"{name}.log"
        self.logs[name] = log
        with log.open("w") as handle:
            proc = subprocess.Popen(
                [sys.executable, *args],
                cwd=ROOT,
                env=self.env(name),
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        self.procs[name] = proc
        return proc

    def tails(self) -> str:
        return "\n".join(
            f"--- {name} ---\n{log.read_text(errors='replace')[-3000:]}"
            for name, log in self.logs.items()
            if log.exists()
        )

    def check_alive(self) -> None:
        dead = [name for name, proc in self.procs.items() if proc.poll() is not None]
        assert not dead, f"{dead} exited:\n{self.tails()}"

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def deployment_broker_url() -> str:
    """The configured Redis broker with the lowest bit of its database number flipped
    (4 <-> 5, 15 -> 14): the session's own test worker (tests/conftest.py) listens on the
    same queue names and must not take this deployment's tasks, nor it theirs."""
    url = settings.CELERY_BROKER_URL
    match = re.fullmatch(r"(redis://[^/]+)/(\d+)", url)
    if match is None:
        pytest.fail(f"this test needs a Redis broker URL with a database number, not {url!r}")
    return f"{match.group(1)}/{int(match.group(2)) ^ 1}"


def worker_queues() -> tuple[str, str]:
    """(reconstruction queue, every other queue the settings route to) as ``-Q`` values."""
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    others = (routed | {settings.CELERY_TASK_DEFAULT_QUEUE}) - {"recon"}
    return "recon", ",".join(sorted(others))


def start_worker(deployment: Deployment, name: str, queues: str) -> str:
    hostname = f"{name}-{uuid.uuid4().hex[:8]}@localhost"
    args = ["-m", "celery", "-A", "mriplatform", "worker", "-Q", queues, "-c", "1"]
    args += ["-n", hostname, "--without-gossip", "--without-mingle", "-l", "info"]
    deployment.start(name, args)
    return hostname


def login(web: str, username: str) -> requests.Session:
    """A browser-like session logged in through the login form (CSRF included)."""
    session = requests.Session()
    session.get(f"{web}/accounts/login/", timeout=30).raise_for_status()
    response = session.post(
        f"{web}/accounts/login/",
        data={
            "username": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": f"{web}/accounts/login/"},
        timeout=30,
    )
    assert response.status_code == 200 and "sessionid" in session.cookies, response.text[:500]
    return session


def send_dicom(port: int, paths: list[Path]) -> None:
    """C-STORE ``paths`` to the receiver as the allowed scanner; every store succeeds."""
    from pynetdicom import AE
    from pynetdicom.sop_class import MRImageStorage

    ae = AE(ae_title=SCANNER_AET)
    ae.add_requested_context(MRImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="RECONTRIAL")
    assert assoc.is_established
    try:
        for path in paths:
            status = assoc.send_c_store(pydicom.dcmread(path))
            assert status and status.Status == 0x0000, status
    finally:
        assoc.release()


def bucket_objects(client, bucket: str) -> dict[str, bytes]:
    """Every object of ``bucket``: key -> content."""
    objects = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents", []):
            key = entry["Key"]
            objects[key] = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return objects


def stored_file_names() -> set[str]:
    """The storage name in every file field of every row of every model."""
    from django.apps import apps
    from django.db.models import FileField

    names: set[str] = set()
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, FileField):
                rows = model.objects.exclude(**{field.attname: ""})
                names |= set(rows.values_list(field.attname, flat=True))
    return names


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_case_travels_from_upload_to_report_across_processes_on_s3(
    s3_endpoint, tmp_path, settings, raw_case_file, mr_series_files
):
    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL (DATABASE_URL): the processes share it")
    from studies import analysis_service, design, services
    from studies.models import Study

    bucket = f"recontrial-e2e-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
    )
    s3.create_bucket(Bucket=bucket)
    # This test process (the "admin shell" that designs the study) stores through S3 too.
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": s3_endpoint,
                "access_key": ACCESS_KEY,
                "secret_key": SECRET_KEY,
                "region_name": REGION,
                "default_acl": None,
                "file_overwrite": False,
            },
        },
    }

    site = InstitutionFactory(code="e2e-site")
    admin = UserFactory(roles=(Role.SITE_ADMIN,), institution=site)
    coordinator = UserFactory(roles=(Role.COORDINATOR,), institution=site)
    reader = UserFactory(roles=(Role.READER,), institution=site)
    statistician = UserFactory(roles=(Role.STATISTICIAN,), institution=site)
    zero_filled = ProtocolFactory(name="Zero-filled R4", mask_pattern="equispaced")
    grappa = ProtocolFactory(
        name="GRAPPA R2",
        method="grappa",
        mask_pattern="uniform",
        acceleration=2.0,
        center_fraction=0.25,
    )

    deployment = Deployment(tmp_path / "machines", s3_endpoint, bucket)
    web_port, dicom_port = free_port(), free_port()
    web = f"http://127.0.0.1:{web_port}"
    recon_queue, other_queues = worker_queues()
    # Celery prefers the CELERY_BROKER_URL variable (this test's own broker) to broker=,
    # but not to explicit read/write URLs.
    control = Celery("deployment-test", set_as_current=False)  # shared tasks keep the project's
    control.conf.broker_read_url = control.conf.broker_write_url = deployment.broker
    with control.connection_for_write() as conn:  # tasks a killed earlier run left queued
        for queue in [recon_queue, *other_queues.split(",")]:
            conn.default_channel.queue_purge(queue)
    try:
        deployment.start(
            "web",
            ["-m", "gunicorn", "mriplatform.wsgi", "-b", f"127.0.0.1:{web_port}"]
            + ["-w", "1", "--threads", "4", "--timeout", "120"],
        )
        hosts = [
            start_worker(deployment, "recon-worker", recon_queue),
            start_worker(deployment, "default-worker", other_queues),
        ]
        deployment.start(
            "dicom-receiver",
            ["manage.py", "dicom_receiver", "--institution", site.code]
            + ["--host", "127.0.0.1", "--port", str(dicom_port), "--allow-aet", SCANNER_AET],
        )

        def ready() -> bool:
            deployment.check_alive()
            replies = control.control.ping(destination=hosts, timeout=1.0) or []
            answered = {name for reply in replies for name in reply}
            return set(hosts) <= answered and port_open(dicom_port) and port_open(web_port)

        try:
            wait_until(ready, STARTUP_TIMEOUT_S, "processes start", interval=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{deployment.tails()}") from None

        # Upload: the site administrator sends raw k-space through the REST API.
        api = requests.Session()
        api.auth = (admin.username, PASSWORD)
        response = api.post(
            f"{web}/api/cases/",
            data={"subject_code": "E2E-001", "anatomy": "knee"},
            files={"files": (raw_case_file.name, raw_case_file.read_bytes())},
            timeout=120,
        )
        assert response.status_code == 201, response.text[:2000]
        case_id = response.json()["id"]
        raw_id = response.json()["series"][0]["id"]

        # Jobs: both protocols on the recon worker.
        response = api.post(
            f"{web}/api/jobs/submit/",
            json={"series": [raw_id], "protocols": [zero_filled.pk, grappa.pk]},
            timeout=60,
        )
        assert response.status_code == 201, response.text[:2000]
        job_ids = [job["id"] for job in response.json()["created"]]
        assert len(job_ids) == 2

        # DICOM from a scanner over C-STORE while the jobs run.
        send_dicom(dicom_port, mr_series_files)

        def jobs_finished():
            deployment.check_alive()
            states = [api.get(f"{web}/api/jobs/{pk}/", timeout=30).json() for pk in job_ids]
            return states if all(s["status"] in ("succeeded", "failed") for s in states) else None

        states = wait_until(jobs_finished, 150, "reconstruction jobs", interval=1.0)
        for state in states:
            assert state["status"] == "succeeded", (state, deployment.tails())
            assert state["progress_percent"] == 100 and state["metrics"]["psnr"] > 10
            # Reconstructed by the recon worker, a process that never saw the upload.
            assert ReconJob.objects.get(pk=state["id"]).worker == hosts[0]

        # The web previews what the upload and the recon worker stored (QA viewer).
        admin_browser = login(web, admin.username)
        previews = [Series.objects.get(pk=raw_id)] + [
            Series.objects.get(pk=state["output_series"]) for state in states
        ]
        for series in previews:
            png = admin_browser.get(f"{web}/cases/series/{series.uuid}/slice/1.png", timeout=60)
            assert png.status_code == 200, (series.kind, png.text[:500])
            assert png.content[:8] == b"\x89PNG\r\n\x1a\n"

        received = wait_until(
            lambda: Series.objects.filter(
                case__institution=site, description=f"received from {SCANNER_AET}"
            ).first(),
            60,
            "received DICOM series",
        )
        assert received.instances.count() == len(mr_series_files)

        # A reader study over the reconstructed case, opened by its coordinator.
        study = design.create_study(
            Study(
                institution=site,
                title="S3 deployment study",
                washout_days=0,
                repeat_fraction=0,
            ),
            coordinator,
        )
        design.add_arm(study, zero_filled, "A", coordinator, reference=True)
        design.add_arm(study, grappa, "B", coordinator)
        design.add_case(study, Case.objects.get(pk=case_id), None, coordinator)
        services.add_reader(study, reader, actor=coordinator)
        Question.objects.create(
            study=study,
            key="quality",
            kind="likert",
            label="Image quality",
            scale_min=1,
            scale_max=5,
            required=True,
        )
        # Opened on the web, which asks a worker (through the deployment's broker) to blind
        # and store the image sets.
        office = login(web, coordinator.username)
        design_url = f"{web}/studies/{study.pk}/"
        opened = office.post(
            f"{design_url}open/",
            headers={"X-CSRFToken": office.cookies["csrftoken"], "Referer": design_url},
            allow_redirects=False,
            timeout=60,
        )
        assert opened.status_code == 302, opened.text[:2000]
        study.refresh_from_db()
        assert study.status == Study.Status.OPEN

        # The reader reads over HTTP: worklist, reading page, blinded images, answer, submit.
        browser = login(web, reader.username)
        worklist = browser.get(f"{web}/read/", timeout=30)
        assert worklist.status_code == 200
        start = re.search(r'<a [^>]*id="start-1"[^>]*>', worklist.text).group(0)
        read_path = re.search(r'href="(/read/[\w-]+/)"', start).group(1)
        page = browser.get(f"{web}{read_path}", timeout=60)
        assert page.status_code == 200
        config = json.loads(
            re.search(
                r'<script id="reading-config" type="application/json">(.*?)</script>',
                page.text,
                re.S,
            ).group(1)
        )
        image_urls = [image_id.removeprefix("wadouri:") for image_id in config["imageIds"]]
        assert len(image_urls) == 4 and all(u.startswith("/read/i/") for u in image_urls)
        for url in image_urls:
            image = browser.get(f"{web}{url}", timeout=60)
            assert image.status_code == 200, image.text[:500]
            assert image.headers["Content-Type"] == "application/dicom"
            ds = pydicom.dcmread(io.BytesIO(image.content))
            assert ds.Modality == "MR" and ds.pixel_array.shape == (96, 96)
            assert "PatientName" not in ds or not str(ds.PatientName).startswith("Doe")
        headers = {"X-CSRFToken": browser.cookies["csrftoken"], "Referer": f"{web}{read_path}"}
        saved = browser.post(
            f"{web}{config['answersUrl']}",
            json={"answers": [{"question": "quality", "value": 4}]},
            headers=headers,
            timeout=30,
        )
        assert saved.status_code == 200, saved.text[:500]
        submitted = browser.post(f"{web}{config['submitUrl']}", headers=headers, timeout=30)
        assert submitted.status_code == 200 and submitted.json()["submitted"], submitted.text

        # Closed for analysis; the statistician starts a run on the web, the other worker
        # computes it, the web serves it.
        services.close_study(study, coordinator, "end-to-end deployment check")
        stats = login(web, statistician.username)
        form_url = f"{web}/studies/{study.pk}/analysis/"
        assert stats.get(form_url, timeout=60).status_code == 200
        started = stats.post(
            form_url,
            data=form_data(),
            headers={"X-CSRFToken": stats.cookies["csrftoken"], "Referer": form_url},
            allow_redirects=False,
            timeout=60,
        )
        assert started.status_code == 302, re.findall(r'class="errorlist.*?</ul>', started.text)
        run_path = started.headers["Location"]
        assert re.fullmatch(r"/studies/analysis/runs/\d+/", run_path), run_path

        def run_finished():
            deployment.check_alive()
            state = stats.get(f"{web}{run_path}status/", timeout=30).json()
            return state if state["finished"] else None

        state = wait_until(run_finished, 150, "analysis run", interval=1.0)
        assert state["status"] == "succeeded", (state, deployment.tails())
        run = AnalysisRun.objects.get(pk=state["id"])
        detail = stats.get(f"{web}{run_path}", timeout=60)
        assert detail.status_code == 200 and '<div id="report">' in detail.text
        downloads = {}
        for name in analysis_service.REPORT_FILES:
            response = stats.get(f"{web}{run_path}{name}", timeout=60)
            assert response.status_code == 200, (name, response.status_code)
            downloads[name] = response.content
        assert downloads["report.pdf"][:5] == b"%PDF-"
        assert downloads["bundle.zip"][:2] == b"PK"
        assert b"quality" in downloads["reads.csv"]
    finally:
        deployment.stop()

    # Every stored file is in the bucket, byte for byte what the web served.
    objects = bucket_objects(s3, bucket)
    stored = stored_file_names()
    # The raw upload, two reconstructions (volume + 4 DICOM slices each), the received
    # series; then the analysis report files.
    assert len(stored) >= 1 + 2 * (1 + 4) + len(mr_series_files)
    assert Instance.objects.filter(series=received).count() == len(mr_series_files)
    stored |= {f"{run.output_dir}/{name}" for name in analysis_service.REPORT_FILES}
    missing = sorted(stored - set(objects))
    assert not missing, f"not in the bucket: {missing}"
    for name, content in downloads.items():
        assert objects[f"{run.output_dir}/{name}"] == content
    report_body = objects[f"{run.output_dir}/report_body.html"].decode()
    assert "quality" in report_body and report_body in detail.text

    # No process keeps stored files in its own folders: VAR_DIRs hold no file at all, and
    # no temporary copy of a stored object was left behind.
    stored_digests = {hashlib.sha256(content).hexdigest() for content in objects.values()}
    for name in deployment.procs:
        assert files_under(deployment.var_dir(name)) == [], name
        leftovers = [
            path
            for path in files_under(deployment.tmp_dir(name))
            if hashlib.sha256(path.read_bytes()).hexdigest() in stored_digests
        ]
        assert leftovers == [], (name, leftovers)
