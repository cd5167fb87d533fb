"""Training pipeline for the VarNet on simulated multi-coil k-space from NIfTI volumes.

A run is described by a JSON or YAML config (see :data:`DEFAULTS`). Train and validation
sets are split by volume. Every random draw (slice order, augmentation, coil noise, mask)
is seeded from ``(seed, epoch, index)`` so a run is deterministic and a resumed run
reproduces the weights of an uninterrupted one. A checkpoint is written after each epoch;
at the end the weights and a model card (with validation NMSE/PSNR/SSIM and sha256) are
written for :mod:`recon_engine.dl.weights`.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from recon_engine.device import default_device
from recon_engine.dl.varnet import VarNet
from recon_engine.dl.weights import save_model
from recon_engine.fft import ifftc, rss
from recon_engine.metrics import evaluate
from recon_engine.registry import ParameterError
from recon_engine.sampling import make_mask
from recon_engine.simulation import load_slices, simulate_multicoil

DEFAULTS: dict[str, Any] = {
    "name": "varnet",
    "model": {"num_cascades": 4, "sens_chans": 4, "sens_pools": 3, "chans": 8, "pools": 3},
    "data": {
        "train_volumes": [],
        "val_volumes": [],
        "n_slices": 8,
        "size": [64, 64],
        "spread": 0.6,
        "n_coils": 4,
        "snr": 40.0,
    },
    "mask": {"pattern": "equispaced", "acceleration": 4, "center_fraction": 0.08},
    "augment": {"flip": True, "gamma": [0.8, 1.25]},
    "epochs": 1,
    "batch_size": 2,
    "lr": 1e-3,
    "seed": 0,
    "output_dir": "runs/varnet",
}


def load_config(path: str | Path | None, overrides: dict | None = None) -> dict:
    """DEFAULTS deep-merged with the JSON/YAML file and ``overrides``; checks the basics."""
    config = copy.deepcopy(DEFAULTS)
    layers = []
    if path is not None:
        text = Path(path).read_text()
        layers.append(json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text))
    layers.append(overrides or {})
    for layer in layers:
        for key, value in (layer or {}).items():
            if key not in config:
                raise ParameterError(f"config: unknown key {key!r}; known: {', '.join(config)}")
            if isinstance(config[key], dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
    if not config["data"]["train_volumes"] or not config["data"]["val_volumes"]:
        raise ParameterError("config: data.train_volumes and data.val_volumes must be given")
    overlap = set(config["data"]["train_volumes"]) & set(config["data"]["val_volumes"])
    if overlap:
        raise ParameterError(f"config: volumes in both train and validation: {sorted(overlap)}")
    if int(config["epochs"]) < 1:
        raise ParameterError("config: epochs must be >= 1")
    return config


def _slices(volumes: list[str], data: dict) -> torch.Tensor:
    stacks = [
        load_slices(v, data["n_slices"], size=tuple(data["size"]), spread=data["spread"])
        for v in volumes
    ]
    return torch.cat(stacks)


def make_sample(
    image: torch.Tensor, config: dict, seed: int, augment: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(masked k-space ``(C, H, W, 2)``, bool mask ``(1, 1, W, 1)``, RSS target ``(H, W)``)."""
    g = torch.Generator().manual_seed(seed)
    if augment:
        aug = config["augment"]
        if aug.get("flip") and torch.rand((), generator=g) < 0.5:
            image = image.flip(-1)
        lo, hi = aug.get("gamma", [1.0, 1.0])
        gamma = lo + (hi - lo) * float(torch.rand((), generator=g))
        image = image.clamp_min(0) ** gamma
    data = config["data"]
    sim = simulate_multicoil(image, n_coils=data["n_coils"], snr=data["snr"], seed=seed)
    kspace = sim.kspace[0]
    target = rss(ifftc(kspace), coil_dim=0)
    m = config["mask"]
    mask = make_mask(
        m["pattern"],
        tuple(kspace.shape[-2:]),
        m["acceleration"],
        seed=seed,
        center_fraction=m["center_fraction"],
    ).mask[0]
    scale = target.max().clamp_min(1e-12)
    masked = torch.view_as_real(kspace * mask / scale)
    return masked, mask.bool()[..., None], target / scale


def _batch(images: torch.Tensor, order: list[int], config: dict, base: int, augment: bool):
    samples = [make_sample(images[i], config, base + i, augment) for i in order]
    return [torch.stack(t) for t in zip(*samples, strict=True)]


def validate(model: VarNet, images: torch.Tensor, config: dict, device) -> dict[str, float]:
    """fastMRI volume metrics on the validation slices with fixed masks and noise."""
    model.eval()
    preds, targets = [], []
    with torch.no_grad():
        for i in range(images.shape[0]):
            k, m, t = make_sample(images[i], config, 10_000_000 + i, augment=False)
            preds.append(model(k[None].to(device), m[None].to(device)).cpu()[0])
            targets.append(t)
    return evaluate(torch.stack(targets).numpy(), torch.stack(preds).numpy())


def train(config: dict, resume: bool = True, progress: bool = True) -> dict:
    """Train (or resume) per ``config``; returns the model card written at the end."""
    device = default_device()
    seed = int(config["seed"])
    out = Path(config["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = VarNet(**config["model"]).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=float(config["lr"]))
    train_images = _slices(config["data"]["train_volumes"], config["data"])
    val_images = _slices(config["data"]["val_volumes"], config["data"])
    history: list[dict] = []
    start_epoch = 0
    ckpt_path = out / "checkpoint.pt"
    if resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimiser.load_state_dict(ckpt["optimiser"])
        start_epoch, history = int(ckpt["epoch"]), json.loads(ckpt["history"])
    n = train_images.shape[0]
    bs = int(config["batch_size"])
    for epoch in range(start_epoch, int(config["epochs"])):
        model.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        losses = []
        bar = tqdm(range(0, n, bs), desc=f"epoch {epoch + 1}", disable=not progress)
        for b0 in bar:
            base = seed * 1_000_003 + epoch * 100_003
            k, m, t = _batch(train_images, order[b0 : b0 + bs], config, base, augment=True)
            pred = model(k.to(device), m.to(device))
            loss = torch.nn.functional.l1_loss(pred, t.to(device))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        metrics = validate(model, val_images, config, device)
        history.append({"epoch": epoch + 1, "train_l1": sum(losses) / len(losses), **metrics})
        torch.save(
            {
                "model": model.state_dict(),
                "optimiser": optimiser.state_dict(),
                "epoch": epoch + 1,
                "history": json.dumps(history),
            },
            ckpt_path,
        )
    card = {
        "architecture": {"type": "VarNet", **config["model"]},
        "parameters": sum(p.numel() for p in model.parameters()),
        "n_coils": config["data"]["n_coils"],
        "data": {
            **config["data"],
            "source": "simulated multi-coil k-space (recon_engine.simulation) from NIfTI",
        },
        "mask": config["mask"],
        "augment": config["augment"],
        "epochs": config["epochs"],
        "seed": seed,
        "history": history,
        "validation": history[-1] if history else {},
    }
    save_model({k: v.cpu() for k, v in model.state_dict().items()}, card, out, config["name"])
    return json.loads((out / f"{config['name']}.json").read_text())


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``train`` to the CLI: ``train --config run.yaml [--epochs N] [--no-resume]``."""
    parser = subparsers.add_parser("train", help="train a deep-learning reconstruction model")
    parser.add_argument("--config", required=True, help="JSON or YAML training config")
    parser.add_argument("--epochs", type=int, help="override the config's epochs")
    parser.add_argument("--output-dir", help="override the config's output_dir")
    parser.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_train)
    return parser


def run_train(args: argparse.Namespace) -> int:
    """CLI entry point: train, print the model card as JSON, return the exit status."""
    overrides: dict[str, Any] = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    card = train(load_config(args.config, overrides), not args.no_resume, not args.quiet)
    print(json.dumps(card, indent=2))
    return 0
