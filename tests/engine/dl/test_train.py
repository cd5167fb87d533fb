"""Training pipeline: loss decreases, resume reproduces an uninterrupted run, card written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from recon_engine.dl.train import load_config, train
from recon_engine.dl.weights import sha256_file
from recon_engine.registry import ParameterError

MRI = Path(__file__).resolve().parents[3] / "data" / "mri"


def _config(out: Path, epochs: int, **extra) -> dict:
    return load_config(
        None,
        {
            "data": {
                "train_volumes": [str(MRI / "colin27_t1_1mm.nii.gz")],
                "val_volumes": [str(MRI / "mni152_2009a_t1_1mm.nii.gz")],
                "n_slices": 2,
                "size": [32, 32],
                "n_coils": 3,
            },
            "model": {"num_cascades": 1, "sens_chans": 2, "sens_pools": 1, "chans": 4, "pools": 2},
            "epochs": epochs,
            "output_dir": str(out),
            **extra,
        },
    )


def test_loss_decreases(tmp_path: Path) -> None:
    cfg = _config(tmp_path, 8, lr=1e-2, augment={"flip": False, "gamma": [1.0, 1.0]})
    card = train(cfg, resume=False, progress=False)
    losses = [h["train_l1"] for h in card["history"]]
    assert losses[-1] < 0.9 * losses[0]  # untrained: changes only by noise draws (<1%)
    assert set(card["validation"]) >= {"nmse", "psnr", "ssim"}
    assert card["sha256"] == sha256_file(tmp_path / "varnet.pt")
    assert json.loads((tmp_path / "varnet.json").read_text())["parameters"] == card["parameters"]


def test_resume_reproduces_uninterrupted_run(tmp_path: Path) -> None:
    train(_config(tmp_path / "a", 2), resume=False, progress=False)
    train(_config(tmp_path / "b", 1), resume=False, progress=False)
    train(_config(tmp_path / "b", 2), resume=True, progress=False)
    a = torch.load(tmp_path / "a" / "varnet.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "varnet.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="unknown key"):
        load_config(None, {"epoch": 3})
    with pytest.raises(ParameterError, match="train_volumes"):
        load_config(None, {})
    vol = str(MRI / "colin27_t1_1mm.nii.gz")
    with pytest.raises(ParameterError, match="both train and validation"):
        load_config(None, {"data": {"train_volumes": [vol], "val_volumes": [vol]}})
    yml = tmp_path / "c.yaml"
    yml.write_text("epochs: 3\ndata:\n  train_volumes: [a]\n  val_volumes: [b]\n")
    assert load_config(yml)["epochs"] == 3
