"""docker-compose.yml and the Dockerfile describe the production stack (Docker can't run here)."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_production_services():
    services = compose()["services"]
    assert {"postgres", "redis", "web", "worker-gpu", "worker-cpu"} <= set(services)
    assert "postgres" in services["postgres"]["image"]
    assert "redis" in services["redis"]["image"]


def test_gpu_worker_reserves_an_nvidia_device_and_serves_recon():
    gpu = compose()["services"]["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "recon" in " ".join(gpu["command"])
    cpu = compose()["services"]["worker-cpu"]
    assert "default" in " ".join(cpu["command"])


def test_services_share_configuration_and_the_bucket_but_no_filesystem():
    """Web, receiver and workers meet only in PostgreSQL, Redis and the S3 bucket (what
    tests/deploy/test_s3_deployment.py runs): no service mounts a shared volume."""
    data = compose()
    apps = {name for name, service in data["services"].items() if "build" in service}
    assert {"migrate", "web", "dicom-receiver", "worker-gpu", "worker-cpu"} <= apps
    for name in sorted(apps):
        service = data["services"][name]
        env = service["environment"]
        assert env["DATABASE_URL"].startswith("postgres://")
        assert env["CELERY_BROKER_URL"].startswith("redis://")
        assert env["DJANGO_ENV"] == "production"
        assert env["AWS_STORAGE_BUCKET_NAME"] == "recontrial"
        assert env["AWS_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert "volumes" not in service, name
    assert "gunicorn" in " ".join(data["services"]["web"]["command"])


def test_the_bucket_is_created_before_any_service_stores():
    data = compose()
    job = data["services"]["minio-bucket"]
    assert "mc mb --ignore-existing store/recontrial" in " ".join(job["command"])
    apps = {name for name, service in data["services"].items() if "build" in service}
    for name in sorted(apps - {"web"}):  # the web waits for migrate, which waits for it
        waits = data["services"][name]["depends_on"]["minio-bucket"]
        assert waits == {"condition": "service_completed_successfully"}, name
    assert data["services"]["web"]["depends_on"]["migrate"] == waits


def test_dockerfile_installs_requirements_and_collects_static():
    text = (ROOT / "Dockerfile").read_text()
    assert "requirements.txt" in text
    assert "collectstatic" in text
    assert text.splitlines()[0].startswith("FROM python:3.11")


def test_no_top_level_platform_package():
    assert not (ROOT / "platform").exists()
