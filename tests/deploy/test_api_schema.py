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


def test_schema_and_docs_need_a_login(client):
    assert client.get("/api/schema/").status_code == 401
    docs = client.get("/api/docs/")
    assert docs.status_code == 302
    assert "login" in docs["Location"] and "/api/docs/" in docs["Location"]
    assert client.get("/api/cases/").status_code == 401


@pytest.mark.django_db
def test_docs_are_served_from_our_own_static_files(client, make_user):
    """Swagger UI must work offline: no CDN URL in the page, its assets under /static/."""
    from mriplatform.accounts.roles import Role

    client.force_login(make_user(Role.SITE_ADMIN))
    page = client.get("/api/docs/").content.decode()
    assert "cdn" not in page.lower() and "unpkg" not in page.lower()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert client.get("/api/schema/").status_code == 200


@pytest.mark.django_db
def test_wrong_basic_auth_password_is_401_with_a_challenge(client, make_user):
    import base64

    from mriplatform.accounts.roles import Role

    user = make_user(Role.SITE_ADMIN, username="apiuser")
    user.set_password("right-password-1")
    user.save()
    bad = base64.b64encode(b"apiuser:wrong-password").decode()
    response = client.get("/api/cases/", HTTP_AUTHORIZATION=f"Basic {bad}")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic")
    good = base64.b64encode(b"apiuser:right-password-1").decode()
    assert client.get("/api/cases/", HTTP_AUTHORIZATION=f"Basic {good}").status_code == 200
