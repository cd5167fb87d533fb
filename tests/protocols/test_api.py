"""Protocols and methods through the REST API."""

import pytest
from rest_framework.test import APIClient

from mriplatform.accounts.roles import Role
from mriplatform.protocols.models import Protocol

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(make_user):
    client = APIClient()
    client.force_authenticate(make_user(Role.SITE_ADMIN))
    return client


def test_methods_lists_the_registry_with_schemas(api):
    data = api.get("/api/methods/").json()
    grappa = next(m for m in data if m["name"] == "grappa")
    assert grappa["family"] == "parallel_imaging"
    assert {p["name"] for p in grappa["params"]} >= {"kernel_ry", "kernel_rx"}


def test_create_validates_against_the_schema(api):
    ok = api.post(
        "/api/protocols/",
        {
            "name": "G",
            "method": "grappa",
            "mask_pattern": "uniform",
            "acceleration": 2,
            "params": {"kernel_ry": 4},
        },
        format="json",
    )
    assert ok.status_code == 201, ok.content
    assert ok.json()["params"]["kernel_ry"] == 4
    bad = api.post(
        "/api/protocols/",
        {
            "name": "G",
            "method": "grappa",
            "mask_pattern": "uniform",
            "acceleration": 2,
            "params": {"kernel_ry": -1},
        },
        format="json",
    )
    assert bad.status_code == 400 and "params" in bad.json()
    malformed = api.post(
        "/api/protocols/", {"name": "G", "method": "grappa", "params": "x"}, format="json"
    )
    assert malformed.status_code == 400


def test_update_makes_a_new_version(api):
    created = api.post(
        "/api/protocols/",
        {"name": "G", "method": "grappa", "mask_pattern": "uniform", "acceleration": 2},
        format="json",
    ).json()
    response = api.patch(f"/api/protocols/{created['id']}/", {"acceleration": 3}, format="json")
    assert response.status_code == 201
    assert response.json()["version"] == 2 and response.json()["acceleration"] == 3
    assert Protocol.objects.get(pk=created["id"]).acceleration == 2


def test_readers_cannot_use_the_api(make_user):
    client = APIClient()
    client.force_authenticate(make_user(Role.READER))
    assert client.get("/api/protocols/").status_code == 403
    assert client.get("/api/methods/").status_code == 403
