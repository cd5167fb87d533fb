"""Training pipeline: every task trains, resume reproduces an uninterrupted run, cards are
complete, augmentations are deterministic and physical, bad configs get clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from recon_engine.cli import main
from recon_engine.dl import zoo
from recon_engine.dl.data import (
    Physics,
    VolumeSlices,
    augment_image,
    draw_physics,
    elastic_deform,
    low_resolution,
    simulate_kspace,
)
from recon_engine.dl.train import load_config, model_cards_markdown, train
from recon_engine.dl.weights import sha256_file
from recon_engine.registry import ParameterError
from recon_engine.simulation import simulate_fastmri_file

MRI = Path(__file__).resolve().parents[3] / "data" / "mri"
COLIN = str(MRI / "colin27_t1_1mm.nii.gz")
MNI = str(MRI / "mni152_2009a_t1_1mm.nii.gz")
TINY_VARNET = {
    "type": "VarNet",
    "num_cascades": 1,
    "sens_chans": 2,
    "sens_pools": 1,
    "chans": 4,
    "pools": 2,
}


def _config(out: Path, epochs: int, **extra) -> dict:
    data = {
        "train_volumes": [COLIN],
        "val_volumes": [MNI],
        "n_slices": 2,
        "size": [32, 32],
        **extra.pop("data", {}),
    }
    return load_config(
        None,
        {
            "data": data,
            "model": extra.pop("model", TINY_VARNET),
            "physics": {"n_coils": [3]},
            "epochs": epochs,
            "output_dir": str(out),
            **extra,
        },
    )


def test_loss_decreases_and_card_is_complete(tmp_path: Path) -> None:
    cfg = _config(tmp_path, 8, lr=1e-2, augment={"flip": False, "gamma": [1.0, 1.0]})
    card = train(cfg, resume=False, progress=False)
    losses = [h["train_l1"] for h in card["history"]]
    assert losses[-1] < 0.9 * losses[0]
    assert set(card["validation"]) == {"nmse", "psnr", "ssim"}
    assert set(card["validation_baseline"]) >= {"nmse", "psnr", "ssim"}
    assert card["sha256"] == sha256_file(tmp_path / "varnet.pt")
    assert card["architecture"] == TINY_VARNET
    assert card["task"] == "kspace_recon" and card["n_coils"] == [3]
    assert card["split"]["train"] == [COLIN] and card["split"]["validation"] == [MNI]
    assert card["min_acs_fraction"] == 0.08
    model = zoo.get("VarNet").build(**{k: v for k, v in TINY_VARNET.items() if k != "type"})
    assert card["parameters"] == sum(p.numel() for p in model.parameters())
    assert json.loads((tmp_path / "varnet.json").read_text())["parameters"] == card["parameters"]
    text = model_cards_markdown(tmp_path, ["varnet"])
    assert card["sha256"] in text and "colin27_t1_1mm" in text and "validation" in text


def test_resume_reproduces_uninterrupted_run(tmp_path: Path) -> None:
    extra = {
        "physics": {
            "n_coils": [3, 4],
            "snr": [20.0, 60.0],
            "motion": {
                "probability": 0.5,
                "n_shots": 2,
                "max_translation_px": 1.0,
                "max_rotation_deg": 1.0,
            },
        },
        "mask": {
            "patterns": ["equispaced", "random"],
            "accelerations": [4, 8],
            "center_fractions": [0.08, 0.04],
        },
        "augment": {"elastic": {"probability": 0.5, "alpha_px": 1.0, "grid": 4}},
    }
    train(_config(tmp_path / "a", 2, **extra), resume=False, progress=False)
    partial = train(_config(tmp_path / "b", 2, **extra), resume=False, progress=False, stop_after=1)
    assert partial["epochs_completed"] == 1
    card = train(_config(tmp_path / "b", 2, **extra), resume=True, progress=False)
    assert [h["epoch"] for h in card["history"]] == [1, 2]
    a = torch.load(tmp_path / "a" / "varnet.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "varnet.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_resume_refuses_a_different_configuration(tmp_path: Path) -> None:
    train(_config(tmp_path, 1), resume=False, progress=False)
    with pytest.raises(ParameterError, match="different configuration"):
        train(_config(tmp_path, 2, lr=5e-4), resume=True, progress=False)


def test_unet_and_sr_tasks_train(tmp_path: Path) -> None:
    unet = train(
        _config(
            tmp_path / "u", 1, name="unet", model={"type": "Unet", "chans": 4, "num_pool_layers": 2}
        ),
        resume=False,
        progress=False,
    )
    assert unet["task"] == "image_recon" and unet["architecture"]["type"] == "Unet"
    assert (tmp_path / "u" / "unet.pt").is_file()
    sr = train(
        _config(tmp_path / "s", 1, name="sr", model={"type": "ESPCN", "features": 4, "mid": 4}),
        resume=False,
        progress=False,
    )
    assert sr["task"] == "super_resolution" and sr["factor"] == 2
    assert sr["architecture"]["factor"] == 2
    assert "n_coils" not in sr


def test_deep_cascade_trains_and_its_card_runs_in_the_method(tmp_path: Path, monkeypatch) -> None:
    from recon_engine.registry import ReconInput, get_method
    from recon_engine.sampling import make_mask
    from recon_engine.simulation import load_slices, simulate_multicoil

    arch = {"type": "DeepCascade", "num_cascades": 1, "features": 4, "depth": 3}
    card = train(
        _config(tmp_path, 1, name="dc", model=arch, mask={"center_fractions": [0.16]}),
        resume=False,
        progress=False,
    )
    assert card["task"] == "kspace_recon" and card["architecture"] == arch
    monkeypatch.setenv("RECON_MODEL_PATH", str(tmp_path))
    sim = simulate_multicoil(load_slices(MNI, 2, size=(32, 32)), n_coils=5, snr=40.0, seed=0)
    mask = make_mask("equispaced", (32, 32), 4, seed=0, center_fraction=0.16).mask
    spec = get_method("deep_cascade")
    out = spec.run(ReconInput(sim.kspace * mask, mask), spec.validate({"model": "dc"}))
    assert out.info["sha256"] == card["sha256"] and out.info["sensitivities"] == "acs"
    assert out.image.shape == (2, 32, 32)
    assert "dc_residual" not in out.maps  # zero by construction (hard data consistency)


def test_fastmri_directories_train(tmp_path: Path) -> None:
    for split, vol in (("train", COLIN), ("val", MNI)):
        (tmp_path / split).mkdir()
        simulate_fastmri_file(
            vol, tmp_path / split / "a.h5", n_slices=2, matrix=(40, 40), n_coils=4
        )
    cfg = load_config(
        None,
        {
            "data": {
                "source": "fastmri",
                "train_dir": str(tmp_path / "train"),
                "val_dir": str(tmp_path / "val"),
                "size": [32, 32],
            },
            "model": TINY_VARNET,
            "physics": {
                "n_coils": [3],
                "motion": {
                    "probability": 0.5,
                    "n_shots": 2,
                    "max_translation_px": 1.0,
                    "max_rotation_deg": 1.0,
                },
            },
            "augment": {"elastic": {"probability": 0.5, "alpha_px": 1.0, "grid": 4}},
            "output_dir": str(tmp_path / "out"),
        },
    )
    card = train(cfg, resume=False, progress=False)
    assert card["split"]["validation"] == str(tmp_path / "val")
    assert math.isfinite(card["validation"]["psnr"])


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="unknown key"):
        load_config(None, {"epoch": 3})
    with pytest.raises(ParameterError, match="train_volumes"):
        load_config(None, {})
    with pytest.raises(ParameterError, match="both train and validation"):
        load_config(None, {"data": {"train_volumes": [COLIN], "val_volumes": [COLIN]}})
    with pytest.raises(ParameterError, match="unknown model type 'Nope'"):
        load_config(
            None,
            {"model": {"type": "Nope"}, "data": {"train_volumes": [COLIN], "val_volumes": [MNI]}},
        )
    with pytest.raises(ParameterError, match="same length"):
        _config(tmp_path, 1, mask={"accelerations": [4, 8], "center_fractions": [0.08]})
    with pytest.raises(ParameterError, match="do not fit VarNet"):
        train(_config(tmp_path, 1, model={"type": "VarNet", "bogus": 1}), progress=False)
    yml = tmp_path / "c.yaml"
    yml.write_text("epochs: 3\ndata:\n  train_volumes: [a]\n  val_volumes: [b]\n")
    assert load_config(yml)["epochs"] == 3


def test_cli_train_and_clear_errors(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        json.dumps(
            {
                "name": "tiny",
                "model": TINY_VARNET,
                "data": {
                    "train_volumes": [COLIN],
                    "val_volumes": [MNI],
                    "n_slices": 1,
                    "size": [32, 32],
                },
                "physics": {"n_coils": [2]},
                "output_dir": str(tmp_path / "out"),
            }
        )
    )
    assert main(["train", "--config", str(cfg), "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["sha256"] == sha256_file(tmp_path / "out" / "tiny.pt")
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "no such config file" in capsys.readouterr().err
    cfg.write_text("epochs: 0\ndata: {train_volumes: [a], val_volumes: [b]}\n")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "epochs" in capsys.readouterr().err


def test_elastic_deformation_is_smooth_and_seeded() -> None:
    image = VolumeSlices([COLIN], 1, [64, 64], 0.0).images[0]
    assert torch.allclose(
        elastic_deform(image, 0.0, 5, torch.Generator().manual_seed(0)), image, atol=1e-5
    )
    a = elastic_deform(image, 2.0, 5, torch.Generator().manual_seed(1))
    b = elastic_deform(image, 2.0, 5, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, image, atol=1e-3)
    # on a ramp the warp is a displacement of about alpha pixels at most, never folding
    ramp = torch.linspace(0, 1, 64)[None, :].expand(64, 64).contiguous()
    for seed in range(5):
        warped = elastic_deform(ramp, 2.0, 5, torch.Generator().manual_seed(seed))[4:-4, 4:-4]
        # bicubic interpolation of the control grid may overshoot alpha a little
        assert float((warped - ramp[4:-4, 4:-4]).abs().max()) <= 1.3 * 2.0 / 63
        assert bool((warped.diff(dim=1) > 0).all())
    coils = torch.stack([image, 2 * image]).to(torch.complex64)
    warped = elastic_deform(coils, 2.0, 5, torch.Generator().manual_seed(1))
    torch.testing.assert_close(warped[1], 2 * warped[0])  # one warp for all coil images


def test_augment_and_physics_draws() -> None:
    image = torch.rand(16, 16)
    g = torch.Generator().manual_seed(0)
    out = augment_image(image, {"flip": False, "contrast": [2.0, 2.0], "gamma": [1.0, 1.0]}, g)
    torch.testing.assert_close(out, 2 * image)
    physics = {"n_coils": [4, 8], "snr": [10.0, 100.0], "motion": None}
    mask = {"patterns": ["random"], "accelerations": [4, 8], "center_fractions": [0.08, 0.04]}
    draws = [draw_physics(physics, mask, torch.Generator().manual_seed(i)) for i in range(40)]
    assert {d.n_coils for d in draws} == {4, 8}
    assert all(10.0 <= d.snr <= 100.0 for d in draws)
    assert {(d.acceleration, d.center_fraction) for d in draws} == {(4, 0.08), (8, 0.04)}


def test_motion_corrupts_input_not_target() -> None:
    image = VolumeSlices([COLIN], 1, [48, 48], 0.0).images[0]
    still = Physics(4, None, "random", 4, 0.08, None)
    moving = Physics(
        4,
        None,
        "random",
        4,
        0.08,
        {"n_shots": 4, "max_translation_px": 3.0, "max_rotation_deg": 3.0},
    )
    k0, t0 = simulate_kspace(image, still, seed=5)
    k1, t1 = simulate_kspace(image, moving, seed=5)
    torch.testing.assert_close(t0, t1)
    assert float((k1 - k0).abs().norm() / k0.abs().norm()) > 0.05


def test_low_resolution_is_central_kspace() -> None:
    image = torch.rand(2, 32, 32)
    low = low_resolution(image, 2)
    assert low.shape == (2, 16, 16)
    # a constant image stays constant (amplitude preserved)
    torch.testing.assert_close(
        low_resolution(torch.ones(1, 32, 32), 2), torch.ones(1, 16, 16), atol=1e-5, rtol=0
    )
    with pytest.raises(ParameterError, match="divisible"):
        low_resolution(torch.rand(1, 33, 32), 2)
