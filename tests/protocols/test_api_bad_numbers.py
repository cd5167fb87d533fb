"""Protocol numbers through the API: NaN, infinity, zero and negative values are refused
with 400 naming the field, and the protocol list keeps answering (issue 11, Hardening)."""

import pytest
from rest_framework.test import APIClient

from mriplatform.accounts.roles import Role
from mriplatform.protocols.models import Protocol

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(make_user):
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(make_user(Role.SITE_ADMIN))
    return client


@pytest.mark.parametrize("field", ["acceleration", "center_fraction", "tr_ms", "nsa"])
@pytest.mark.parametrize("value", ["NaN", "inf", "-inf", "1e309", "-1", "0"])
def test_impossible_numbers_refused(api, field, value):
    payload = {"name": "P", "method": "zero_filled", "mask_pattern": "random", field: value}
    if field != "acceleration":
        payload["acceleration"] = 2
    response = api.post("/api/protocols/", payload, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Protocol.objects.exists()
    assert api.get("/api/protocols/").status_code == 200


def test_plausible_numbers_accepted(api):
    response = api.post(
        "/api/protocols/",
        {
            "name": "P",
            "method": "zero_filled",
            "mask_pattern": "random",
            "acceleration": 4,
            "center_fraction": 0.08,
            "tr_ms": 2500.5,
            "nsa": 0.5,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
