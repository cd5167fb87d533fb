"""DL methods: weight verification, missing weights, hard DC, VarNet through the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from recon_engine.dl.cascade import DeepCascade
from recon_engine.dl.varnet import VarNet
from recon_engine.dl.weights import load_state_dict, save_model
from recon_engine.fft import fftc, ifftc
from recon_engine.registry import ReconError, ReconInput, get_method

ARCH = {"num_cascades": 2, "sens_chans": 4, "sens_pools": 2, "chans": 4, "pools": 2}


def _data(s: int = 2, c: int = 4, h: int = 24, w: int = 20) -> ReconInput:
    g = torch.Generator().manual_seed(0)
    k = torch.view_as_complex(torch.randn(s, c, h, w, 2, generator=g))
    mask = torch.zeros(1, 1, 1, w)
    mask[..., ::2] = 1
    mask[..., w // 2 - 3 : w // 2 + 3] = 1
    return ReconInput(kspace=k * mask, mask=mask)


@pytest.fixture
def site_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECON_MODEL_PATH", str(tmp_path))
    torch.manual_seed(0)
    save_model(VarNet(**ARCH).state_dict(), {"architecture": ARCH}, tmp_path, "tinyvar")
    return tmp_path


def test_missing_weights_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("RECON_MODEL_PATH", str(tmp_path))
    spec = get_method("varnet")
    with pytest.raises(ReconError, match=r"no trained weights .*nosuch\.pt"):
        spec.run(_data(), spec.validate({"model": "nosuch"}))


def test_tampered_weights_fail_hash(site_models: Path) -> None:
    load_state_dict("tinyvar")  # intact: verifies
    path = site_models / "tinyvar.pt"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ReconError, match="corrupt or was replaced"):
        load_state_dict("tinyvar")


def test_card_without_hash_refused(site_models: Path) -> None:
    card_path = site_models / "tinyvar.json"
    card = json.loads(card_path.read_text())
    del card["sha256"]
    card_path.write_text(json.dumps(card))
    with pytest.raises(ReconError, match="no sha256"):
        load_state_dict("tinyvar")


def test_varnet_method_runs_with_site_weights(site_models: Path) -> None:
    spec = get_method("varnet")
    data = _data()
    out = spec.run(data, spec.validate({"model": "tinyvar", "batch_size": 1}))
    assert out.image.shape == (2, 24, 20)
    assert out.maps["dc_residual"].shape == (2, 24, 20)
    # same as calling the network directly
    state, _ = load_state_dict("tinyvar")
    net = VarNet(**ARCH)
    net.load_state_dict(state)
    with torch.no_grad():
        ref = net(
            torch.view_as_real(data.kspace), data.mask.bool()[..., None].expand(2, 1, 1, 20, 1)
        )
    torch.testing.assert_close(out.image, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ReconError, match="2D mask"):
        spec.run(
            ReconInput(data.kspace, torch.ones(1, 1, 24, 20)), spec.validate({"model": "tinyvar"})
        )


def test_deep_cascade_hard_dc_keeps_measurements() -> None:
    torch.manual_seed(0)
    data = _data(c=3)
    maps = torch.view_as_complex(torch.randn(2, 3, 24, 20, 2))
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    net = DeepCascade(num_cascades=2, features=8, depth=3)
    with torch.no_grad():
        image, kspace = net(data.kspace, data.mask, maps)
    sampled = data.mask.bool().expand_as(kspace)
    torch.testing.assert_close(kspace[sampled], data.kspace[sampled], rtol=0, atol=0)
    assert image.shape == (2, 24, 20)
    # unsampled k-space was filled in by the CNN (not left zero)
    assert kspace[~sampled].abs().mean() > 1e-3
    # image is the SENSE combination of the final k-space
    torch.testing.assert_close(image, (maps.conj() * ifftc(kspace)).sum(1))
    torch.testing.assert_close(fftc(ifftc(kspace)), kspace, rtol=1e-4, atol=1e-4)


def test_deep_cascade_method_with_site_weights(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RECON_MODEL_PATH", str(tmp_path))
    arch = {"num_cascades": 1, "features": 4, "depth": 3}
    torch.manual_seed(0)
    save_model(DeepCascade(**arch).state_dict(), {"architecture": arch}, tmp_path, "dc")
    spec = get_method("deep_cascade")
    data = _data(c=3)
    estimated = spec.run(data, spec.validate({"model": "dc"}))  # maps from the ACS
    assert estimated.info["sensitivities"] == "acs"
    assert estimated.image.shape == (2, 24, 20)
    no_acs = ReconInput(kspace=data.kspace, mask=data.mask.clone())
    no_acs.mask[..., 7:13] = 0
    no_acs.kspace = no_acs.kspace * no_acs.mask
    with pytest.raises(ReconError, match="needs coil sensitivities"):
        spec.run(no_acs, spec.validate({"model": "dc"}))
    data.sensitivities = torch.ones_like(data.kspace) / 3**0.5
    out = spec.run(data, spec.validate({"model": "dc"}))
    assert out.image.shape == (2, 24, 20)
    # hard DC makes the residual identically zero: no map, and the output says why
    assert "dc_residual" not in out.maps
    assert "zero by construction" in out.info["dc_residual"]
    model = DeepCascade(**arch)
    model.load_state_dict(load_state_dict("dc")[0])
    with torch.no_grad():
        _, kpred = model.eval()(data.kspace, data.mask, data.sensitivities)
    sampled = data.mask[0, 0, 0].bool()
    torch.testing.assert_close(kpred[..., sampled], data.kspace[..., sampled])
    with pytest.raises(ReconError, match="no trained weights"):
        spec.run(data, spec.validate({"model": "no_such_cascade"}))


def test_unet_method_with_site_weights(tmp_path: Path, monkeypatch) -> None:
    from recon_engine.dl.unet import Unet

    monkeypatch.setenv("RECON_MODEL_PATH", str(tmp_path))
    arch = {"chans": 4, "num_pool_layers": 2}
    torch.manual_seed(0)
    net = Unet(1, 1, **arch)
    save_model(net.state_dict(), {"architecture": arch}, tmp_path, "unet")
    spec = get_method("unet")
    data = _data()
    out = spec.run(data, spec.validate({}))
    x = ifftc(data.kspace).abs().pow(2).sum(1).sqrt()[:, None]
    mean, std = x.mean((-2, -1), keepdim=True), x.std((-2, -1), keepdim=True)
    with torch.no_grad():
        ref = (net.eval()((x - mean) / std) * std + mean)[:, 0]
    torch.testing.assert_close(out.image, ref, rtol=1e-5, atol=1e-5)
