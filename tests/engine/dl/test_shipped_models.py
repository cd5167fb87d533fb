"""The shipped VarNet, U-Net, deep cascade, k-space net and ESPCN weights: verified cards,
better than the non-learned baseline on the validation volume (MNI152, which every model
was selected on; test-set figures: test_model_card_test_sections.py), clear errors for
corrupt weights and unsuitable input; MC-dropout uncertainty of the U-Net."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from recon_engine.dl import zoo
from recon_engine.dl.data import low_resolution
from recon_engine.dl.weights import SHIPPED_DIR, load_state_dict, sha256_file
from recon_engine.fft import ifftc, rss
from recon_engine.metrics import psnr
from recon_engine.pipeline import reconstruct_kspace
from recon_engine.registry import ReconError, ReconInput, get_method
from recon_engine.sampling import make_mask
from recon_engine.simulation import load_slices, simulate_multicoil

MRI = Path(__file__).resolve().parents[3] / "data" / "mri"
VALIDATION = MRI / "mni152_2009a_t1_1mm.nii.gz"
SHIPPED = {"varnet": "VarNet", "unet": "Unet", "deep_cascade": "DeepCascade", "sr_espcn": "ESPCN"}


@pytest.fixture(autouse=True)
def _shipped_only(monkeypatch) -> None:
    monkeypatch.delenv("RECON_MODEL_PATH", raising=False)


def _validation(size: tuple[int, int], coils: int = 8, n: int = 2):
    """(fully sampled k-space, RSS reference) of MNI152 slices (the validation volume)."""
    images = load_slices(VALIDATION, n, size=size, spread=0.4)
    sim = simulate_multicoil(images, n_coils=coils, snr=40.0, seed=11)
    return sim.kspace, rss(ifftc(sim.kspace), coil_dim=1).numpy()


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_card_is_complete_and_hash_verified(name: str) -> None:
    card = json.loads((SHIPPED_DIR / f"{name}.json").read_text())
    assert card["sha256"] == sha256_file(SHIPPED_DIR / f"{name}.pt")
    assert (SHIPPED_DIR / f"{name}.pt").stat().st_size < 8 * 2**20
    state, loaded = load_state_dict(name)
    assert loaded == card
    entry = zoo.get(card["architecture"]["type"])
    assert entry.name == SHIPPED[name]
    model = entry.build(**{k: v for k, v in card["architecture"].items() if k != "type"})
    model.load_state_dict(state, strict=True)
    assert card["parameters"] == sum(p.numel() for p in model.parameters())
    assert VALIDATION.name not in json.dumps(card["split"]["train"])
    assert VALIDATION.name in json.dumps(card["split"]["validation"])
    assert {"nmse", "psnr", "ssim"} <= set(card["validation"])
    assert (SHIPPED_DIR / "MODEL_CARDS.md").read_text().count(card["sha256"]) == 1


@pytest.mark.parametrize("method", ["varnet", "unet", "deep_cascade"])
@pytest.mark.parametrize("size", [(128, 128), (96, 112)])
def test_beats_zero_filled_on_validation_volume(method: str, size: tuple[int, int]) -> None:
    kspace, ref = _validation(size)
    mask = make_mask("random", size, 4, seed=0, center_fraction=0.08).mask
    zf = reconstruct_kspace(kspace * mask, mask, "zero_filled", device="cpu", progress=False)
    out = reconstruct_kspace(kspace * mask, mask, method, device="cpu", progress=False)
    assert out.info["sha256"] == json.loads((SHIPPED_DIR / f"{method}.json").read_text())["sha256"]
    assert psnr(ref, out.volume) > psnr(ref, zf.volume) + 1.0


def test_no_shipped_model_trains_on_the_validation_volume() -> None:
    cards = sorted(SHIPPED_DIR.glob("*.json"))
    assert {c.stem for c in cards} >= {*SHIPPED, "kspace_net", "automap", "sr_3d"}
    text = (SHIPPED_DIR / "MODEL_CARDS.md").read_text()
    for path in cards:
        card = json.loads(path.read_text())
        train_on = card["split"]["train"] if "split" in card else card["data"]["train_volumes"]
        assert train_on and VALIDATION.name not in json.dumps(train_on), path.name
        assert text.count(card["sha256"]) == 1, path.name
        assert f"## {path.stem}\n" in text


def test_kspace_net_is_an_8_coil_model_not_trained_on_the_validation_volume() -> None:
    card = json.loads((SHIPPED_DIR / "kspace_net.json").read_text())
    assert card["sha256"] == sha256_file(SHIPPED_DIR / "kspace_net.pt")
    assert card["n_coils"] == card["architecture"]["n_coils"] == 8
    assert VALIDATION.name not in json.dumps(card["data"]["train_volumes"])
    assert VALIDATION.name in json.dumps(card["data"]["val_volumes"])
    assert (SHIPPED_DIR / "MODEL_CARDS.md").read_text().count(card["sha256"]) == 1
    kspace, ref = _validation((128, 128))
    for acceleration in (4, 8):
        mask = make_mask("equispaced", (128, 128), acceleration, seed=0, center_fraction=0.08)
        m = mask.mask
        zf = reconstruct_kspace(kspace * m, m, "zero_filled", device="cpu", progress=False)
        out = reconstruct_kspace(
            kspace * m, m, "kspace_net", {"mc_samples": 0}, device="cpu", progress=False
        )
        assert out.info["sha256"] == card["sha256"]
        assert psnr(ref, out.volume) > psnr(ref, zf.volume) + 1.0


def test_unet_mc_dropout_uncertainty() -> None:
    kspace, _ = _validation((64, 64))
    mask = make_mask("random", (64, 64), 4, seed=0, center_fraction=0.08).mask

    def unet(**params):
        spec = get_method("unet")
        return spec.run(ReconInput(kspace=kspace * mask, mask=mask), spec.validate(params))

    plain = unet(mc_samples=0)
    assert "uncertainty" not in plain.maps
    assert "uncertainty" not in unet(mc_samples=1).maps  # one pass has no spread
    off = unet(mc_samples=4, mc_dropout=0.0)
    assert off.maps["uncertainty"].shape == (2, 64, 64)
    assert float(off.maps["uncertainty"].abs().max()) == 0.0
    on = unet(mc_samples=4, mc_dropout=0.2)
    assert float(on.maps["uncertainty"].min()) >= 0.0
    assert float(on.maps["uncertainty"].mean()) > 1e-4 * float(plain.image.abs().max())
    # the image stays the deterministic pass; the map is reproducible (seeded)
    torch.testing.assert_close(on.image, plain.image)
    again = unet(mc_samples=4, mc_dropout=0.2)
    torch.testing.assert_close(again.maps["uncertainty"], on.maps["uncertainty"])
    assert "uncertainty" in unet().maps  # on by default, like the other DL families


def test_sr_beats_bicubic_on_validation_volume() -> None:
    hr = load_slices(VALIDATION, 2, size=(128, 128), spread=0.4)
    hr = hr / hr.amax(dim=(-2, -1), keepdim=True)
    low = low_resolution(hr, 2)
    results = {}
    for method in ("sr_bicubic", "sr_espcn"):
        spec = get_method(method)
        data = ReconInput(
            kspace=torch.zeros(2, 1, 64, 64, dtype=torch.complex64),
            mask=torch.ones(1, 1, 1, 64),
            metadata={"image": low},
        )
        results[method] = spec.run(data, spec.validate({})).image
    assert results["sr_espcn"].shape == (2, 128, 128)
    assert psnr(hr.numpy(), results["sr_espcn"].numpy()) > psnr(
        hr.numpy(), results["sr_bicubic"].numpy()
    )


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_corrupt_weights_refused(name: str, tmp_path: Path, monkeypatch) -> None:
    shutil.copy(SHIPPED_DIR / f"{name}.json", tmp_path)
    data = bytearray((SHIPPED_DIR / f"{name}.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / f"{name}.pt").write_bytes(bytes(data))
    monkeypatch.setenv("RECON_MODEL_PATH", str(tmp_path))
    with pytest.raises(ReconError, match="corrupt or was replaced"):
        load_state_dict(name)


def _run(method: str, kspace: torch.Tensor, mask: torch.Tensor):
    spec = get_method(method)
    return spec.run(ReconInput(kspace=kspace * mask, mask=mask), spec.validate({}))


@pytest.mark.parametrize("method", ["varnet", "unet"])
def test_unsuitable_input_refused(method: str) -> None:
    kspace, _ = _validation((64, 64), coils=3, n=1)
    mask = make_mask("equispaced", (64, 64), 4, seed=0, center_fraction=0.08).mask
    with pytest.raises(ReconError, match="trained for .* coils, got 3"):
        _run(method, kspace, mask)
    kspace, _ = _validation((64, 64), n=1)
    no_acs = mask.clone()
    no_acs[..., 28:36] = 0
    no_acs[..., 32] = 1
    with pytest.raises(ReconError, match=r"fully sampled centre \(ACS\) of at least 2 of 64"):
        _run(method, kspace, no_acs)
    # all-zero input is named as such before the missing centre is noticed
    with pytest.raises(ReconError, match="no fully sampled centre|needs a fully sampled|all zero"):
        reconstruct_kspace(kspace * no_acs * 0, no_acs * 0, method, device="cpu", progress=False)
    small, _ = _validation((16, 16), n=1)
    with pytest.raises(ReconError, match="at least 32x32"):
        _run(method, small, torch.ones(1, 1, 1, 16))
    with pytest.raises(ReconError, match=r"\(S, C, H, W\)"):
        _run(method, kspace[0], mask[0])


def test_sr_refuses_bad_images() -> None:
    spec = get_method("sr_espcn")
    for image in (torch.rand(4, 4), torch.rand(1, 4, 4)):
        data = ReconInput(
            kspace=torch.zeros(1, 1, 4, 4, dtype=torch.complex64),
            mask=torch.ones(1, 1, 1, 4),
            metadata={"image": image},
        )
        with pytest.raises(ReconError, match="sr_espcn needs"):
            spec.run(data, spec.validate({}))
