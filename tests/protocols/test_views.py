"""Protocol pages: a form generated from the method's schema; editing makes a version."""

import pytest
from django.urls import reverse

from mriplatform.accounts.roles import Role
from mriplatform.audit.models import AuditEvent
from mriplatform.protocols.models import Protocol
from tests.factories import ProtocolFactory

pytestmark = pytest.mark.django_db


def form_data(**overrides):
    from recon_engine.registry import get_method

    data = {
        "name": "GRAPPA R3",
        "description": "",
        "method": "grappa",
        "mask_pattern": "uniform",
        "acceleration": 3,
        "center_fraction": 0.08,
        "mask_seed": 0,
        "tr_ms": 2500,
        "phase_encodes": 320,
        "nsa": 1,
        "sms_factor": 1,
        "partitions": 1,
        "echo_train_length": 1,
    }
    data.update({f"param__{p.name}": p.default for p in get_method("grappa").params})
    data["param__kernel_ry"] = 4
    data.update(overrides)
    return data


def test_form_has_one_field_per_method_parameter(client, make_user):
    from recon_engine.registry import get_method

    client.force_login(make_user(Role.SITE_ADMIN))
    html = client.get(reverse("protocols:create") + "?method=grappa").content.decode()
    for param in get_method("grappa").params:
        assert f'name="param__{param.name}"' in html


def test_site_admin_creates_protocol(client, make_user):
    client.force_login(make_user(Role.SITE_ADMIN))
    response = client.post(reverse("protocols:create") + "?method=grappa", form_data())
    assert response.status_code == 302, response.content.decode()[:2000]
    protocol = Protocol.objects.get(name="GRAPPA R3")
    assert protocol.params["kernel_ry"] == 4 and protocol.acceleration == 3
    assert AuditEvent.objects.filter(action="protocol.create", object_id=str(protocol.pk)).exists()


def test_out_of_range_parameter_shows_an_error(client, make_user):
    client.force_login(make_user(Role.SITE_ADMIN))
    response = client.post(
        reverse("protocols:create") + "?method=grappa", form_data(param__kernel_ry=0)
    )
    assert response.status_code == 200
    assert not Protocol.objects.exists()


def test_edit_creates_a_new_version(client, make_user):
    client.force_login(make_user(Role.SITE_ADMIN))
    v1 = ProtocolFactory(method="grappa", mask_pattern="uniform")
    response = client.post(
        reverse("protocols:edit", args=[v1.pk]), form_data(name=v1.name, acceleration=5)
    )
    assert response.status_code == 302
    v1.refresh_from_db()
    v2 = Protocol.objects.get(lineage=v1.lineage, version=2)
    assert v2.acceleration == 5 and v1.acceleration == 4 and not v1.is_current


@pytest.mark.parametrize(
    "role, status",
    [(Role.SITE_ADMIN, 200), (Role.COORDINATOR, 403), (Role.READER, 403), (Role.STATISTICIAN, 403)],
)
def test_only_site_admins_create(client, make_user, role, status):
    client.force_login(make_user(role))
    assert client.get(reverse("protocols:create")).status_code == status


@pytest.mark.parametrize(
    "role, status",
    [(Role.SITE_ADMIN, 200), (Role.COORDINATOR, 200), (Role.READER, 403), (Role.STATISTICIAN, 403)],
)
def test_who_sees_protocols(client, make_user, role, status):
    client.force_login(make_user(role))
    ProtocolFactory()
    assert client.get(reverse("protocols:list")).status_code == status


def test_method_fields_fragment_lists_the_methods_parameters(client, make_user):
    from recon_engine.registry import get_method

    client.force_login(make_user(Role.SITE_ADMIN))
    page = client.get(reverse("protocols:method-fields"), {"method": "cs_wavelet"}).content
    for param in get_method("cs_wavelet").params:
        assert f'name="param__{param.name}"'.encode() in page
    assert client.get(reverse("protocols:method-fields"), {"method": "nope"}).status_code == 400


def test_unknown_method_in_the_query_string_is_not_a_500(client, make_user):
    client.force_login(make_user(Role.SITE_ADMIN))
    assert client.get(reverse("protocols:create"), {"method": "no-such"}).status_code == 200


def test_timing_that_differs_from_the_reference_is_flagged(client, make_user):
    client.force_login(make_user(Role.SITE_ADMIN))
    reference = ProtocolFactory(
        method="rss",
        mask_pattern="as_acquired",
        acceleration=1,
        tr_ms=600,
        phase_encodes=320,
        echo_train_length=4,
    )
    response = client.post(
        reverse("protocols:create"), form_data(reference=reference.pk), follow=True
    )
    created = Protocol.objects.get(name="GRAPPA R3")
    assert [label for label, _, _ in created.timing_differences()] == [
        "TR (ms)",
        "echo train length",
    ]
    text = response.content.decode()
    assert "Sequence timing differs from the reference" in text
    assert 'id="timing-differs"' in text  # the detail page keeps saying it

    same = Protocol.objects.create(
        name="GRAPPA R3 same timing",
        method="grappa",
        mask_pattern="uniform",
        acceleration=3,
        tr_ms=600,
        phase_encodes=320,
        echo_train_length=4,
        reference=reference,
    )
    assert same.timing_differences() == []
    assert 0 < same.time_reduction < 1
