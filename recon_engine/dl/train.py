"""Generic training pipeline for the networks of :mod:`recon_engine.dl.zoo`.

A run is described by a JSON or YAML config (see :data:`DEFAULTS`; examples in
``configs/train/``): the model (``model.type`` plus constructor arguments), the data
(simulated multi-coil k-space from magnitude volumes, or fully sampled fastMRI HDF5
directories), physics augmentations (coil count, SNR, motion), masks (patterns and
accelerations), image augmentations (flip, contrast, gamma, elastic), epochs and seed.
Train and validation sets are split by volume (or directory).

Every random draw (slice order, augmentation, physics, noise, mask) is seeded from
``(seed, epoch, batch, index)``, so a run is deterministic and a resumed run reproduces
the weights of an uninterrupted one. A checkpoint (model, optimiser, scheduler, history)
is written after each epoch; at the end the weights and a model card (architecture,
parameter count, data, split, validation NMSE/PSNR/SSIM per epoch, sha256) are written
with :func:`recon_engine.dl.weights.save_model`.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from recon_engine.device import default_device
from recon_engine.dl import zoo
from recon_engine.dl.data import (
    draw_physics,
    make_dataset,
    recon_batch,
    sr_batch,
)
from recon_engine.dl.weights import save_model
from recon_engine.metrics import evaluate
from recon_engine.registry import ParameterError
from recon_engine.sr.baselines import bicubic_upsample

DEFAULTS: dict[str, Any] = {
    "name": "varnet",
    "model": {
        "type": "VarNet",
        "num_cascades": 4,
        "sens_chans": 4,
        "sens_pools": 3,
        "chans": 8,
        "pools": 3,
    },
    "data": {
        "source": "simulated",
        "train_volumes": [],
        "val_volumes": [],
        "train_dir": None,
        "val_dir": None,
        "n_slices": 8,
        "val_slices": None,
        "axes": None,
        "size": [64, 64],
        "spread": 0.6,
    },
    "physics": {"n_coils": [4], "snr": [40.0, 40.0], "motion": None},
    "mask": {"patterns": ["equispaced"], "accelerations": [4], "center_fractions": [0.08]},
    "augment": {"flip": True, "contrast": [1.0, 1.0], "gamma": [0.8, 1.25], "elastic": None},
    "sr": {"factor": 2},
    "epochs": 1,
    "batch_size": 2,
    "lr": 1e-3,
    "seed": 0,
    "output_dir": "runs/varnet",
}

_VAL_SEED = 10_000_000


def load_config(path: str | Path | None, overrides: dict | None = None) -> dict:
    """DEFAULTS deep-merged with the JSON/YAML file and ``overrides``; checks the basics.

    A ``model`` section naming a different ``type`` than the defaults replaces the default
    model arguments instead of merging with them.
    """
    config = copy.deepcopy(DEFAULTS)
    layers = []
    if path is not None:
        text = Path(path).read_text()
        layers.append(json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text))
    layers.append(overrides or {})
    for layer in layers:
        if layer is not None and not isinstance(layer, dict):
            raise ParameterError("config: expected a mapping at the top level")
        for key, value in (layer or {}).items():
            if key not in config:
                raise ParameterError(f"config: unknown key {key!r}; known: {', '.join(config)}")
            if key == "model" and value.get("type", config["model"]["type"]) != config[key]["type"]:
                config[key] = dict(value)
            elif isinstance(config[key], dict):
                if not isinstance(value, dict):
                    raise ParameterError(f"config: {key} must be a mapping")
                config[key] = {**config[key], **value}
            else:
                config[key] = value
    _check(config)
    return config


def _check(config: dict) -> None:
    data = config["data"]
    zoo.get(config["model"].get("type", ""))
    if data["source"] not in ("simulated", "fastmri"):
        raise ParameterError("config: data.source must be 'simulated' or 'fastmri'")
    if data["source"] == "simulated":
        if not data["train_volumes"] or not data["val_volumes"]:
            raise ParameterError("config: data.train_volumes and data.val_volumes must be given")
        overlap = set(data["train_volumes"]) & set(data["val_volumes"])
        if overlap:
            raise ParameterError(f"config: volumes in both train and validation: {sorted(overlap)}")
    elif not data["train_dir"] or not data["val_dir"] or data["train_dir"] == data["val_dir"]:
        raise ParameterError("config: data.train_dir and data.val_dir must be two directories")
    mask = config["mask"]
    if not mask["patterns"] or len(mask["accelerations"]) != len(mask["center_fractions"]):
        raise ParameterError(
            "config: mask.patterns must be non-empty and mask.accelerations and "
            "mask.center_fractions must have the same length"
        )
    if not config["physics"]["n_coils"]:
        raise ParameterError("config: physics.n_coils must list at least one coil count")
    if int(config["epochs"]) < 1 or int(config["batch_size"]) < 1:
        raise ParameterError("config: epochs and batch_size must be >= 1")


def _fingerprint(config: dict) -> str:
    """Hash of everything but epochs/output_dir: a checkpoint resumes only the same run."""
    rest = {k: v for k, v in config.items() if k not in ("epochs", "output_dir")}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def make_batch(
    entry: zoo.ZooEntry, dataset, indices: list[int], config: dict, seed: int, augment: bool
) -> dict:
    """The task's batch dict for ``indices`` (physics drawn once per batch from ``seed``)."""
    aug = config["augment"] if augment else None
    if entry.task == "super_resolution":
        images = [dataset.image(i, aug, seed + j) for j, i in enumerate(indices)]
        return sr_batch(images, int(config["sr"]["factor"]))
    phys = draw_physics(config["physics"], config["mask"], torch.Generator().manual_seed(seed))
    samples = [dataset.kspace(i, phys, aug, seed + 1 + j) for j, i in enumerate(indices)]
    return recon_batch(samples, phys, seed)


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _baseline(entry: zoo.ZooEntry, batch: dict) -> torch.Tensor:
    if entry.task == "super_resolution":
        return bicubic_upsample(batch["low"], int(batch["factor"]))
    return batch["zero_filled"]


def validate(
    entry: zoo.ZooEntry, model: torch.nn.Module, dataset, config: dict, device: torch.device
) -> tuple[dict[str, float], dict[str, float]]:
    """fastMRI metrics (NMSE, PSNR, SSIM) of the model and of the non-learned baseline
    (zero-filled RSS / bicubic) on every validation slice, with seeded physics and masks
    and no augmentation (the same draws every epoch)."""
    model.eval()
    preds, baselines, targets = [], [], []
    with torch.no_grad():
        for i in range(len(dataset)):
            batch = make_batch(entry, dataset, [i], config, _VAL_SEED + 1000 * i, augment=False)
            preds.append(entry.forward(model, _to(batch, device)).cpu()[0])
            baselines.append(_baseline(entry, batch)[0])
            targets.append(batch["target"][0])
    gt = torch.stack(targets).numpy()
    return evaluate(gt, torch.stack(preds).numpy()), evaluate(gt, torch.stack(baselines).numpy())


def _card(config: dict, entry: zoo.ZooEntry, model, history: list, baseline: dict) -> dict:
    data, mask = config["data"], config["mask"]
    arch = dict(config["model"])
    card: dict[str, Any] = {
        "architecture": arch,
        "description": entry.description,
        "task": entry.task,
        "parameters": sum(p.numel() for p in model.parameters()),
        "data": dict(data),
        "split": {
            "train": data["train_volumes"] if data["source"] == "simulated" else data["train_dir"],
            "validation": data["val_volumes"] if data["source"] == "simulated" else data["val_dir"],
            "rule": "split by volume: no validation volume contributes any training slice",
        },
        "physics": config["physics"],
        "augment": config["augment"],
        "epochs": config["epochs"],
        "epochs_completed": len(history),
        "batch_size": config["batch_size"],
        "lr": config["lr"],
        "seed": config["seed"],
        "history": history,
        "validation": {k: history[-1][k] for k in ("nmse", "psnr", "ssim")} if history else {},
        "validation_baseline": baseline,
        "training_seconds": round(sum(h["seconds"] for h in history), 1),
    }
    if entry.task == "super_resolution":
        card["factor"] = int(config["sr"]["factor"])
        card["degradation"] = "central 1/factor of k-space (lower-resolution acquisition)"
        arch.setdefault("factor", card["factor"])
    else:
        card["n_coils"] = sorted(int(c) for c in config["physics"]["n_coils"])
        card["mask"] = mask
        card["min_acs_fraction"] = min(float(cf) for cf in mask["center_fractions"])
        card["min_matrix"] = 32
    return card


def train(
    config: dict, resume: bool = True, progress: bool = True, stop_after: int | None = None
) -> dict:
    """Train (or resume) per ``config``; returns the model card written at the end.

    ``stop_after``: end this call after that many epochs (a time-boxed session; the
    checkpoint lets a later call continue with the same schedule and result).
    """
    entry = zoo.get(config["model"]["type"])
    device = default_device()
    seed = int(config["seed"])
    out = Path(config["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    if entry.task == "super_resolution":
        config = copy.deepcopy(config)
        config["model"].setdefault("factor", int(config["sr"]["factor"]))
        if int(config["model"]["factor"]) != int(config["sr"]["factor"]):
            raise ParameterError("config: model.factor and sr.factor differ")
    torch.manual_seed(seed)
    kwargs = {k: v for k, v in config["model"].items() if k != "type"}
    try:
        model = entry.build(**kwargs).to(device)
    except TypeError as exc:
        raise ParameterError(f"config: model arguments do not fit {entry.name}: {exc}") from None
    epochs = int(config["epochs"])
    optimiser = torch.optim.Adam(model.parameters(), lr=float(config["lr"]))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs, eta_min=0.0)
    train_set = make_dataset(config["data"], "train")
    val_set = make_dataset(config["data"], "val")
    history: list[dict] = []
    start_epoch = 0
    ckpt_path = out / "checkpoint.pt"
    fingerprint = _fingerprint(config)
    if resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        if ckpt.get("fingerprint") != fingerprint:
            raise ParameterError(
                f"{ckpt_path} belongs to a different configuration; use --no-resume or "
                "another output_dir"
            )
        model.load_state_dict(ckpt["model"])
        optimiser.load_state_dict(ckpt["optimiser"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch, history = int(ckpt["epoch"]), json.loads(ckpt["history"])
        if start_epoch > epochs:
            raise ParameterError(f"checkpoint is at epoch {start_epoch} > epochs {epochs}")
        scheduler.T_max = epochs  # a run extended with --epochs anneals to its new end
    baseline: dict[str, float] = {}
    n = len(train_set)
    bs = int(config["batch_size"])
    last = epochs if stop_after is None else min(epochs, start_epoch + int(stop_after))
    for epoch in range(start_epoch, last):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        losses = []
        bar = tqdm(range(0, n, bs), desc=f"epoch {epoch + 1}/{epochs}", disable=not progress)
        for b0 in bar:
            base = seed * 1_000_003 + epoch * 100_003 + b0 * 101
            batch = make_batch(entry, train_set, order[b0 : b0 + bs], config, base, augment=True)
            batch = _to(batch, device)
            loss = torch.nn.functional.l1_loss(entry.forward(model, batch), batch["target"])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        scheduler.step()
        metrics, baseline = validate(entry, model, val_set, config, device)
        history.append(
            {
                "epoch": epoch + 1,
                "train_l1": sum(losses) / len(losses),
                **metrics,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        if progress:
            tqdm.write(
                f"epoch {epoch + 1}: train L1 {history[-1]['train_l1']:.4f}  val PSNR "
                f"{metrics['psnr']:.2f} dB SSIM {metrics['ssim']:.4f} NMSE {metrics['nmse']:.4g}"
                f"  (baseline PSNR {baseline['psnr']:.2f} dB)"
            )
        torch.save(
            {
                "model": model.state_dict(),
                "optimiser": optimiser.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch + 1,
                "history": json.dumps(history),
                "fingerprint": fingerprint,
            },
            ckpt_path,
        )
    if not baseline:
        baseline = validate(entry, model, val_set, config, device)[1]
    card = _card(config, entry, model, history, baseline)
    save_model({k: v.cpu() for k, v in model.state_dict().items()}, card, out, config["name"])
    return json.loads((out / f"{config['name']}.json").read_text())


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``train`` to the CLI: ``train --config run.yaml [--epochs N] [--no-resume]``."""
    parser = subparsers.add_parser(
        "train",
        help="train a deep-learning model (" + ", ".join(zoo.names()) + ")",
    )
    parser.add_argument("--config", required=True, help="JSON or YAML training config")
    parser.add_argument("--epochs", type=int, help="override the config's epochs")
    parser.add_argument("--output-dir", help="override the config's output_dir")
    parser.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    parser.add_argument(
        "--stop-after", type=int, help="stop after N epochs (resume later from the checkpoint)"
    )
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
    if not Path(args.config).is_file():
        raise ParameterError(f"{args.config}: no such config file")
    config = load_config(args.config, overrides)
    card = train(config, not args.no_resume, not args.quiet, args.stop_after)
    print(json.dumps({k: v for k, v in card.items() if k != "history"}, indent=2))
    return 0


def _fmt(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


SELECTION_VOLUME = "mni152_2009a_t1_1mm.nii.gz"  # every shipped model was selected on it


def _card_split(card: dict) -> tuple[Any, Any]:
    """(training volumes or directory, validation ones) of a card of either trainer."""
    if "split" in card:
        return card["split"]["train"], card["split"]["validation"]
    data = card.get("data", {})
    return data.get("train_volumes"), data.get("val_volumes")


def _metric_line(label: str, metrics: dict) -> str:
    return (
        f"{label}: PSNR {metrics.get('psnr', 0):.2f} dB, SSIM {metrics.get('ssim', 0):.4f}, "
        f"NMSE {metrics.get('nmse', 0):.4f}"
    )


def _generic_card_lines(name: str, card: dict) -> list[str]:
    """Card written by :func:`train` (``configs/train/*.yaml``)."""
    val, base = card.get("validation", {}), card.get("validation_baseline", {})
    baseline_name = "bicubic" if card.get("task") == "super_resolution" else "zero-filled"
    lines = [
        f"- Training data: {_fmt(card.get('data'))}",
        f"- Simulation / physics augmentation: {_fmt(card.get('physics'))}",
        f"- Image augmentation: {_fmt(card.get('augment'))}",
    ]
    if "mask" in card:
        lines.append(
            f"- Masks: {_fmt(card['mask'])}; coils {card.get('n_coils')}; needs an ACS of "
            f">= {card.get('min_acs_fraction')} of the phase-encode lines"
        )
    if "factor" in card:
        lines.append(f"- Factor: {card['factor']}x; degradation: {card.get('degradation')}")
    lines += [
        f"- Epochs: {card.get('epochs_completed', card.get('epochs'))}, batch "
        f"{card.get('batch_size')}, Adam lr {card.get('lr')} (cosine), seed "
        f"{card.get('seed')}; training time {card.get('training_seconds')} s on "
        "1 CPU thread (shared 2-core machine); trained by `python -m recon_engine train "
        f"--config configs/train/{name}.yaml`",
        "- "
        + _metric_line("Validation (selection volume, final epoch; not a test)", val)
        + "; "
        + _metric_line(f"{baseline_name} on the same data", base),
    ]
    for key in ("notes", "findings"):
        if card.get(key):
            lines.append(f"- {key.capitalize()}: {card[key]}")
    return lines


def _family_card_lines(card: dict) -> list[str]:
    """Card written by :mod:`recon_engine.dl.family_training` (steps, not epochs)."""
    training = card.get("training", {})
    lines = [f"- Simulation: {_fmt(card.get('simulation'))}"]
    if card.get("mask"):
        lines.append(f"- Masks: {_fmt(card['mask'])}")
    lines.append(
        f"- Coils: {card.get('n_coils') or 'any'}; matrix: {card.get('matrix') or 'any'}"
        + (f"; factor {card['factor']}x {card.get('direction', '')}" if "factor" in card else "")
    )
    lines += [
        f"- Training: {training.get('steps')} of {training.get('max_steps')} Adam steps "
        f"(cosine), batch {training.get('batch_size')}, lr {training.get('lr')}, loss "
        f"{training.get('loss')}, seed {training.get('seed')}; {training.get('seconds')} s on "
        f"{training.get('threads')} CPU thread(s); reproduce: `{card.get('reproduce', '')}`",
        "- "
        + _metric_line("Validation (selection volume; not a test)", card.get("validation", {})),
    ]
    for key in sorted(card):
        if key.startswith("validation_"):
            label = key.removeprefix("validation_").replace("_", " ")
            lines.append("- " + _metric_line(f"Baseline ({label}) on the same data", card[key]))
    for key in ("notes", "findings"):
        if card.get(key):
            lines.append(f"- {key.capitalize()}: {card[key]}")
    return lines


def _test_card_lines(card: dict) -> list[str]:
    """The card's test-set result and map calibration (``benchmarks/eval_model_cards.py``)."""
    lines = []
    test = card.get("test")
    if test and "unavailable" in test:
        lines.append(f"- Test: {test['unavailable']}")
    elif test and "metrics" in test:
        data = test["data"]
        lines.append(
            f"- Test (never used for selection): {len(data['images'])} images from "
            f"{data['source']}; {data['matrix'][0]}x{data['matrix'][1]}"
        )
        net = test["metrics"]["network"]
        against = "; ".join(
            f"{label} {test['metrics'][label]['psnr']:.2f} / {test['metrics'][label]['ssim']:.3f}"
            f" ({gain:+.2f} dB)"
            for label, gain in test["gain_db"].items()
        )
        lines.append(f"  - network PSNR {net['psnr']:.2f} dB / SSIM {net['ssim']:.3f}; {against}")
        if not test["beats_baseline"]:
            lines.append(
                f"- **Does not beat its baseline ({test['baseline']}) on the test images**: a "
                "demonstration, marked so in the method list and kept out of default protocols."
            )
        if test.get("uncertainty"):
            lines.append(f"- Uncertainty map: {test['uncertainty']}")
    elif test:
        data = test["data"]
        lines.append(
            f"- Test (never used for selection): {len(data['images'])} images from "
            f"{data['source']}; {data['matrix'][0]}x{data['matrix'][1]}, {data['coils']} coils, "
            f"SNR {data['snr']}; CS lambda: {data['cs_lambda']}"
        )
        for key, row in test["settings"].items():
            net, zf, cs = row["network"], row["zero_filled"], row["cs_wavelet_tuned"]
            lines.append(
                f"  - {key}: network PSNR {net['psnr']:.2f} dB / SSIM {net['ssim']:.3f}; "
                f"zero-filled {zf['psnr']:.2f} / {zf['ssim']:.3f} "
                f"({row['gain_over_zero_filled_db']:+.2f} dB); tuned CS (lambda "
                f"{cs['lambda']}) {cs['psnr']:.2f} / {cs['ssim']:.3f} "
                f"({row['gain_over_cs_db']:+.2f} dB)"
            )
        settings = test["settings"]

        def losses(keys: list[str], gain: str) -> str:
            return ", ".join(f"{k} ({settings[k][gain]:+.2f} dB)" for k in keys) or "none"

        zf_losses = losses(test["loses_to_zero_filled_in"], "gain_over_zero_filled_db")
        cs_losses = losses(test["loses_to_cs_in"], "gain_over_cs_db")
        if not test["beats_zero_filled"]:
            lines.append(
                "- **Does not beat zero-filled on the test images** (mean gain "
                f"{test['mean_gain_over_zero_filled_db']:+.2f} dB; loses at {zf_losses}): a "
                "demonstration, marked so in the method list and kept out of default protocols."
            )
        else:
            lines.append(
                f"- Against zero-filled: mean gain {test['mean_gain_over_zero_filled_db']:+.2f} "
                f"dB; loses at {zf_losses}."
            )
        lines.append(
            f"- Against tuned CS: mean gain {test['mean_gain_over_cs_db']:+.2f} dB; loses at "
            f"{cs_losses}."
        )
    cal = card.get("uncertainty_calibration")
    if cal:
        t, v = cal["test"], cal["validation"]
        lines.append(
            f"- Uncertainty map calibration ({cal['method']}; {cal['mc_samples']} passes, "
            f"dropout {cal['mc_dropout']}; scale {cal['scale']} fitted on {cal['fitted_on']}): "
            f"on test data Spearman rho {t['spearman']:.2f}, mean |error| / mean sigma "
            f"{t['error_to_sigma']:.2f}, coverage of the 68 % / 95 % intervals "
            f"{100 * t['coverage_68']:.0f} % / {100 * t['coverage_95']:.0f} % (validation "
            f"{100 * v['coverage_68']:.0f} % / {100 * v['coverage_95']:.0f} %); uncalibrated "
            f"mean |error| / mean sigma {cal['test_uncalibrated']['error_to_sigma']:.2f}. "
            f"{cal['statement']}"
        )
    check = card.get("dc_residual_check")
    if check:
        lines.append(f"- Data-consistency residual map: {check['statement']}")
    return lines


def model_cards_markdown(directory: Path, names: list[str]) -> str:
    """Human-readable model cards (Markdown) for the named ``<name>.json`` cards: a split
    summary (is the benchmark volume held out?) then one section per model."""
    cards = {name: json.loads((directory / f"{name}.json").read_text()) for name in names}
    lines = [
        "# Shipped model cards",
        "",
        "Written by `python -m recon_engine.dl.train cards DIR NAME...` from the JSON cards",
        "next to the weights (the engine verifies each file's sha256 against its card when",
        "loading). Small demonstrators trained on simulated data from three public template",
        "volumes (Colin27, INIA19 macaque, MNI152 2009a): not clinical models.",
        "",
        "## Data split per model",
        "",
        f"Every model below was selected on {SELECTION_VOLUME} (validation), which is also",
        "the volume of `benchmarks/bench_dl.py`: figures on it are validation figures, not",
        "held-out results. The test figures in each reconstruction network's section come",
        "from `benchmarks/eval_model_cards.py` on images no model selection ever saw (the",
        "non-brain MR images of pydicom-data: a shoulder and an abdomen), against",
        "zero-filled and CS L1-wavelet with lambda tuned on the validation volume.",
        "",
        "| model | trainer | training volumes | validation volumes | test images |"
        " beats zero-filled (or its baseline) on test |",
        "|---|---|---|---|---|---|",
    ]
    for name, card in cards.items():
        train_on, val_on = _card_split(card)
        trainer = "family_training" if "training" in card else "train (config)"
        test = card.get("test") or {}
        images = f"{len(test['data']['images'])} (pydicom-data)" if "data" in test else "none"
        beats = test.get("beats_zero_filled", test.get("beats_baseline"))
        verdict = {True: "yes", False: "**NO**", None: "-"}[beats]
        if "metrics" in test:
            verdict += f" ({test['baseline']})"
        lines.append(
            f"| {name} | {trainer} | {_fmt(train_on)} | {_fmt(val_on)} | {images} | {verdict} |"
        )
    for name, card in cards.items():
        train_on, val_on = _card_split(card)
        description = f" ({card['description']})" if card.get("description") else ""
        lines += [
            "",
            f"## {name}",
            "",
            f"- Architecture: {_fmt(card['architecture'])}{description}",
            f"- Parameters: {card['parameters']:,}"
            + (f"; task: {card['task']}" if card.get("task") else ""),
            f"- Weights: `{card['weights']}`, sha256 `{card['sha256']}`",
            f"- Split (by volume): train {_fmt(train_on)}; validation {_fmt(val_on)}",
        ]
        lines += _family_card_lines(card) if "training" in card else _generic_card_lines(name, card)
        lines += _test_card_lines(card)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    # python -m recon_engine.dl.train cards DIR NAME... : write DIR/MODEL_CARDS.md
    if len(sys.argv) < 4 or sys.argv[1] != "cards":
        sys.exit("usage: python -m recon_engine.dl.train cards DIR NAME [NAME...]")
    target = Path(sys.argv[2])
    (target / "MODEL_CARDS.md").write_text(model_cards_markdown(target, sys.argv[3:]))
