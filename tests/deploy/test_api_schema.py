"""The OpenAPI schema covers cases, series, protocols and jobs and generates cleanly."""

import pytest
import yaml
from django.core.management import call_command


@pytest.mark.django_db
def test_schema_generates_without_warnings(tmp_path, capsys):
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(out), "--fail-on-warn", "--validate")
    schema = yaml.safe_load(out.read_text())
    paths = set(schema["paths"])
    for expected in (
        "/api/cases/",
        "/api/cases/{id}/series/",
        "/api/series/{uuid}/",
        "/api/protocols/",
        "/api/protocols/{id}/",
        "/api/jobs/",
        "/api/jobs/submit/",
        "/api/jobs/{id}/retry/",
        "/api/methods/",
    ):
        assert expected in paths, expected


def test_schema_endpoint_needs_no_login_but_api_does(client):
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/cases/").status_code in (401, 403)
