"""Site networks on the platform: a site administrator uploads a TorchScript model, it is
checked, stored through the storage API, offered in the protocol form and runs as a job;
a model that breaks the contract is refused with the reason and nothing is stored."""

import io

import pytest
import torch
from django.core.files.uploadedfile import SimpleUploadedFile

from mriplatform.accounts.roles import Role
from mriplatform.audit.models import AuditEvent
from mriplatform.protocols.models import ExternalModel
from recon_engine import registry
from tests.engine.dl.test_external_models import TinyRecon, WrongShape

pytestmark = pytest.mark.django_db

H = W = 32


def traced_at(module, coils: int, size: int) -> bytes:
    buffer = io.BytesIO()
    example = (torch.randn(1, coils, size, size, 2), torch.ones(1, 1, 1, size))
    torch.jit.save(torch.jit.trace(module, example), buffer)
    return buffer.getvalue()


def traced(module) -> bytes:
    return traced_at(module, coils=4, size=H)


def form(name, payload, **extra):
    data = {
        "name": name,
        "format": "torchscript",
        "file": SimpleUploadedFile(f"{name}.pt", payload),
        "title": "Tiny site net",
        "description": "Zero-filled RSS plus smoothing.",
        "training_data": "none",
        "coils": 4,
        "matrix_h": H,
        "matrix_w": W,
    }
    data.update(extra)
    return data


@pytest.fixture
def model_cache(settings, tmp_path, monkeypatch):
    settings.EXTERNAL_MODEL_CACHE = tmp_path / "cache"
    monkeypatch.setenv("RECON_MODEL_PATH", "")
    yield settings.EXTERNAL_MODEL_CACHE
    monkeypatch.setenv("RECON_MODEL_PATH", "")
    registry.refresh_external_methods()


def test_site_admin_adds_a_network_that_becomes_a_protocol_method(client, make_user, model_cache):
    client.force_login(make_user(Role.SITE_ADMIN))
    response = client.post("/protocols/models/", form("site_net", traced(TinyRecon().eval())))
    assert response.status_code == 302, response.content.decode()[-3000:]
    model = ExternalModel.objects.get()
    assert model.file.name.startswith("external_models/site_net-")
    assert AuditEvent.objects.filter(action="external_model.add").count() == 1
    page = client.get("/protocols/new/").content.decode()
    assert 'value="ext_site_net"' in page
    assert "ext_site_net" in client.get("/protocols/models/").content.decode()


def test_a_network_breaking_the_contract_is_refused_and_nothing_is_stored(
    client, make_user, model_cache
):
    client.force_login(make_user(Role.SITE_ADMIN))
    response = client.post("/protocols/models/", form("half_net", traced(WrongShape())))
    assert response.status_code == 400
    assert "contract needs" in response.content.decode()
    response = client.post("/protocols/models/", form("junk", b"not a model"))
    assert response.status_code == 400
    assert "not a loadable TorchScript model" in response.content.decode()
    assert not ExternalModel.objects.exists()
    assert not list(model_cache.glob("*")) if model_cache.exists() else True


def test_a_new_process_fetches_the_model_from_storage(client, make_user, model_cache, settings):
    """A worker on another machine has an empty cache: sync copies the stored file there."""
    from mriplatform.protocols.external_models import sync_external_models

    client.force_login(make_user(Role.SITE_ADMIN))
    client.post("/protocols/models/", form("site_net", traced(TinyRecon().eval())))
    settings.EXTERNAL_MODEL_CACHE = model_cache.parent / "other_machine_cache"
    assert "ext_site_net" in sync_external_models()
    assert (settings.EXTERNAL_MODEL_CACHE / "site_net.pt").is_file()


@pytest.mark.parametrize("role", [Role.COORDINATOR, Role.READER])
def test_only_site_admins_add_networks(client, make_user, model_cache, role):
    client.force_login(make_user(role))
    response = client.post("/protocols/models/", form("x", b"..."))
    assert response.status_code == 403
    assert not ExternalModel.objects.exists()


def test_a_job_reconstructs_with_the_site_network(
    client, make_user, model_cache, media_root, raw_case_file
):
    from mriplatform.jobs import services
    from tests.factories import CaseFactory, ProtocolFactory
    from tests.jobs import raw_series

    admin = make_user(Role.SITE_ADMIN)
    client.force_login(admin)
    payload = traced_at(TinyRecon(96, 96).eval(), coils=8, size=96)
    response = client.post(
        "/protocols/models/",
        form("site_net", payload, coils=8, matrix_h=96, matrix_w=96),
    )
    assert response.status_code == 302
    raw = raw_series(CaseFactory(institution=admin.institution), raw_case_file)
    protocol = ProtocolFactory(
        method="ext_site_net", params={"batch_size": 2}, mask_pattern="equispaced", acceleration=2
    )
    (job,), _ = services.submit_jobs([raw], [protocol], admin)
    services.run_job(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert job.metrics["psnr"] > 15
    assert job.provenance["model_sha256"] == ExternalModel.objects.get().sha256


def test_bad_method_names_get_plain_text_without_the_input(client, make_user, model_cache):
    client.force_login(make_user(Role.SITE_ADMIN))
    response = client.get("/protocols/method-fields/", {"method": "<img src=x onerror=alert(1)>"})
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert b"<img" not in response.content


def test_a_network_may_not_take_a_shipped_models_name(client, make_user, model_cache):
    client.force_login(make_user(Role.SITE_ADMIN))
    response = client.post("/protocols/models/", form("unet", traced(TinyRecon().eval())))
    assert response.status_code == 400
    assert "name of a shipped model" in response.content.decode()
    assert not ExternalModel.objects.exists()
