"""12-factor settings: each deployment choice is read from the environment."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PRINT_SETTINGS = (
    "import json, django; from django.conf import settings as s; django.setup();"
    "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'],"
    " 'db_name': str(s.DATABASES['default']['NAME']), 'broker': s.CELERY_BROKER_URL,"
    " 'backend': s.CELERY_RESULT_BACKEND, 'debug': s.DEBUG, 'hosts': s.ALLOWED_HOSTS,"
    " 'session_secure': s.SESSION_COOKIE_SECURE, 'csrf_secure': s.CSRF_COOKIE_SECURE,"
    " 'media': str(s.MEDIA_ROOT), 'storage': s.STORAGES['default']['BACKEND'],"
    " 'hsts': s.SECURE_HSTS_SECONDS}))"
)
PROD_KEY = "k" * 20 + "Q9x!vZ3#mP7&rT2^wL5*nB8@cF4$hJ6%"


def settings_under(env: dict, tmp_path) -> dict:
    import json

    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            (
                "DATABASE_",
                "CELERY_",
                "DJANGO_",
                "SECRET_",
                "DEBUG",
                "ALLOWED_",
                "MEDIA_",
                "AWS_",
                "VAR_DIR",
            )
        )
    }
    clean.update(
        {"VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "mriplatform.settings"}
    )
    clean.update(env)
    result = subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS], cwd=ROOT, env=clean, capture_output=True, text=True
    )
    if result.returncode:
        raise RuntimeError(result.stderr)
    return json.loads(result.stdout)


def test_embedded_default_needs_no_server(tmp_path):
    s = settings_under({}, tmp_path)
    assert s["engine"] == "django.db.backends.sqlite3"
    assert s["db_name"].startswith(str(tmp_path))
    assert s["broker"] == "filesystem://"
    assert s["backend"].startswith("file://")
    assert s["debug"] is False
    assert "localhost" in s["hosts"]
    assert s["storage"].endswith("FileSystemStorage")
    assert (tmp_path / "var" / "secret_key").exists()


def test_urls_from_environment(tmp_path):
    s = settings_under(
        {
            "DATABASE_URL": "postgres://u:p@db.example:5433/trial",
            "CELERY_BROKER_URL": "redis://cache.example:6379/2",
            "ALLOWED_HOSTS": "a.example,b.example",
            "MEDIA_ROOT": str(tmp_path / "media"),
            "DEBUG": "true",
        },
        tmp_path,
    )
    assert s["engine"] == "django.db.backends.postgresql"
    assert s["db_name"] == "trial"
    assert s["broker"] == "redis://cache.example:6379/2"
    assert s["backend"] == "redis://cache.example:6379/2"
    assert s["hosts"] == ["a.example", "b.example"]
    assert s["media"] == str(tmp_path / "media")
    assert s["debug"] is True


def test_object_storage_when_bucket_set(tmp_path):
    s = settings_under(
        {"AWS_STORAGE_BUCKET_NAME": "recon", "AWS_S3_ENDPOINT_URL": "http://minio:9000"}, tmp_path
    )
    assert s["storage"] == "storages.backends.s3.S3Storage"


def test_production_is_secure_by_default(tmp_path):
    s = settings_under(
        {
            "DJANGO_ENV": "production",
            "SECRET_KEY": PROD_KEY,
            "ALLOWED_HOSTS": "trial.example",
            "CELERY_BROKER_URL": "redis://cache.example:6379/0",
        },
        tmp_path,
    )
    assert s["session_secure"] and s["csrf_secure"]
    assert s["hsts"] >= 31_536_000
    assert s["debug"] is False


@pytest.mark.parametrize(
    "env, message",
    [
        ({"DJANGO_ENV": "production", "ALLOWED_HOSTS": "x.example"}, "SECRET_KEY"),
        ({"DJANGO_ENV": "production", "SECRET_KEY": PROD_KEY}, "ALLOWED_HOSTS"),
        (
            {
                "DJANGO_ENV": "production",
                "SECRET_KEY": PROD_KEY,
                "ALLOWED_HOSTS": "x",
                "DEBUG": "1",
            },
            "DEBUG",
        ),
        ({"DJANGO_ENV": "staging"}, "DJANGO_ENV"),
        ({"DJANGO_ENV": "production", "SECRET_KEY": PROD_KEY, "ALLOWED_HOSTS": "x"}, "broker"),
    ],
)
def test_production_refuses_unsafe_configuration(tmp_path, env, message):
    with pytest.raises(RuntimeError, match=message):
        settings_under(env, tmp_path)


def test_check_deploy_has_no_warnings(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEBUG", "DJANGO_"))}
    env.update(
        {
            "DJANGO_ENV": "production",
            "SECRET_KEY": PROD_KEY,
            "ALLOWED_HOSTS": "trial.example",
            "VAR_DIR": str(tmp_path / "var"),
            "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
        }
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
