"""Model weights: locate, verify (sha256) and load, with clear errors.

A model is a directory entry ``<name>.pt`` (a torch state dict) next to ``<name>.json``,
its model card (architecture, hyper-parameters, training data, metrics, ``sha256``).
Search order: directories in ``RECON_MODEL_PATH`` (``os.pathsep``-separated, so sites can
register their own weights) then the shipped ``recon_engine/dl/models``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from recon_engine.registry import ReconError

SHIPPED_DIR = Path(__file__).resolve().parent / "models"


def model_dirs() -> list[Path]:
    """Directories searched for model cards, site directories first."""
    env = os.environ.get("RECON_MODEL_PATH", "")
    return [Path(p) for p in env.split(os.pathsep) if p] + [SHIPPED_DIR]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_model(name: str) -> tuple[dict, Path]:
    """Model card and weights path for ``name``; ReconError naming the files looked for."""
    tried = []
    for directory in model_dirs():
        card_path = directory / f"{name}.json"
        weights_path = directory / f"{name}.pt"
        tried.append(str(weights_path))
        if card_path.is_file() and weights_path.is_file():
            try:
                card = json.loads(card_path.read_text())
            except json.JSONDecodeError as exc:
                raise ReconError(f"model card {card_path} is not valid JSON: {exc}") from None
            if isinstance(card, dict) and card.get("format") in ("torchscript", "onnx"):
                continue  # a site network (recon_engine.dl.external), never a state dict
            return card, weights_path
    raise ReconError(
        f"no trained weights for model {name!r}: looked for {', '.join(tried)} (with a "
        f"{name}.json model card); train one with `python -m recon_engine train` or set "
        "RECON_MODEL_PATH"
    )


def load_state_dict(name: str, map_location: torch.device | str = "cpu") -> tuple[dict, dict]:
    """``(state_dict, card)`` for model ``name`` after checking the card's sha256."""
    card, weights_path = find_model(name)
    expected = card.get("sha256")
    if not expected:
        raise ReconError(f"model card for {name!r} has no sha256; refusing unverified weights")
    actual = sha256_file(weights_path)
    if actual != expected:
        raise ReconError(
            f"weights file {weights_path} is corrupt or was replaced: sha256 {actual} does "
            f"not match the model card's {expected}"
        )
    try:
        state = torch.load(weights_path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for unreadable files
        raise ReconError(f"weights file {weights_path} cannot be read: {exc}") from None
    return state, card


def save_model(state_dict: dict, card: dict, directory: Path, name: str) -> Path:
    """Write ``<name>.pt`` and its card (with the sha256 filled in) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    weights_path = directory / f"{name}.pt"
    torch.save(state_dict, weights_path)
    card = dict(card, sha256=sha256_file(weights_path), weights=weights_path.name)
    (directory / f"{name}.json").write_text(json.dumps(card, indent=2, sort_keys=True))
    return weights_path
