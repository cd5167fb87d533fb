"""Adding a site's own networks from the command line.

``python -m recon_engine register-model FILE --name NAME --format onnx|torchscript ...``
copies a TorchScript/ONNX model into a model directory with its card (sha256 filled in),
after a smoke run on synthetic k-space that proves it keeps the ``kspace-mask-v1``
contract (:mod:`recon_engine.dl.external`); it is then the method ``ext_NAME``.

``python -m recon_engine import-fastmri-varnet CHECKPOINT --name NAME`` adds a state dict
of fastMRI's E2E-VarNet (e.g. the knee checkpoint the fastMRI repository publishes, which a
site downloads itself) as weights for the built-in ``varnet`` method: it is loaded strictly
into fastMRI's default architecture (12 cascades, 18 channels, 4 pools; sensitivity net 8
channels, 4 pools) and used with ``--method varnet --param model=NAME``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import torch

from recon_engine.dl.weights import sha256_file
from recon_engine.registry import ParameterError, ReconError

# fastMRI's VarNet defaults (fastmri.models.VarNet and its published checkpoints).
FASTMRI_VARNET_ARCHITECTURE = {
    "type": "VarNet",
    "num_cascades": 12,
    "sens_chans": 8,
    "sens_pools": 4,
    "chans": 18,
    "pools": 4,
}


def _target_directory(into: str | None) -> Path:
    if into:
        directory = Path(into)
    else:
        search = [p for p in os.environ.get("RECON_MODEL_PATH", "").split(os.pathsep) if p]
        if not search:
            raise ParameterError("give --into DIR or set RECON_MODEL_PATH to a directory")
        directory = Path(search[0])
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _refuse_existing(directory: Path, name: str) -> None:
    if (directory / f"{name}.json").exists():
        raise ParameterError(f"a model called {name!r} already exists in {directory}")


def register_model(args: argparse.Namespace) -> dict:
    """Copy the model, write its card, prove it runs; remove both again if it doesn't."""
    from recon_engine.dl.external import build_card, check_model, check_name, model_filename
    from recon_engine.registry import refresh_external_methods

    source = Path(args.file)
    if not source.is_file():
        raise ParameterError(f"model file {source} does not exist")
    check_name(args.name)  # before any file is written: the name becomes a file name
    directory = _target_directory(args.into)
    _refuse_existing(directory, args.name)
    target = directory / model_filename(args.name, args.format)
    if target.exists():
        raise ParameterError(f"{target} already exists")
    shutil.copyfile(source, target)
    card = build_card(
        args.format,
        target,
        args.title,
        args.description,
        args.training_data,
        args.intended_use,
        args.coils,
        args.matrix,
    )
    card_path = directory / f"{args.name}.json"
    try:
        check_model(args.name, card, target)
    except (ParameterError, ReconError):
        target.unlink(missing_ok=True)
        raise
    card_path.write_text(json.dumps(card, indent=2, sort_keys=True))
    refresh_external_methods()
    return {"method": f"ext_{args.name}", "card": str(card_path), "sha256": card["sha256"]}


def import_fastmri_varnet(args: argparse.Namespace) -> dict:
    """Check a fastMRI VarNet state dict loads strictly, then store it with a card."""
    from recon_engine.dl.external import check_name
    from recon_engine.dl.varnet import VarNet

    source = Path(args.checkpoint)
    if not source.is_file():
        raise ParameterError(f"checkpoint {source} does not exist")
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for unreadable files
        raise ReconError(f"{source} is not a readable PyTorch state dict: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state:  # a Lightning checkpoint
        state = {k.removeprefix("varnet."): v for k, v in state["state_dict"].items()}
    architecture = {k: v for k, v in FASTMRI_VARNET_ARCHITECTURE.items() if k != "type"}
    try:
        VarNet(**architecture).load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ReconError(
            f"{source} is not a fastMRI E2E-VarNet state dict with the default architecture: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    check_name(args.name)
    directory = _target_directory(args.into)
    _refuse_existing(directory, args.name)
    target = directory / f"{args.name}.pt"
    if target.exists():
        raise ParameterError(f"{target} already exists")
    torch.save(state, target)
    card = {
        "architecture": FASTMRI_VARNET_ARCHITECTURE,
        "sha256": sha256_file(target),
        "weights": target.name,
        "source": f"fastMRI E2E-VarNet state dict imported from {source.name}",
        "training_data": args.training_data,
    }
    (directory / f"{args.name}.json").write_text(json.dumps(card, indent=2, sort_keys=True))
    return {"method": "varnet", "param": f"model={args.name}", "sha256": card["sha256"]}


def _print_result(func):
    def command(args: argparse.Namespace) -> int:
        print(json.dumps(func(args), indent=2))
        return 0

    return command


def add_site_model_parsers(sub) -> None:
    """Add ``register-model`` and ``import-fastmri-varnet`` to the CLI's sub-parsers."""
    p = sub.add_parser("register-model", help="add a site's TorchScript/ONNX network")
    p.add_argument("file", help="the model file (.pt TorchScript archive or .onnx)")
    p.add_argument("--name", required=True, help="becomes the method ext_NAME")
    p.add_argument("--format", required=True, choices=("torchscript", "onnx"))
    p.add_argument("--title", required=True)
    p.add_argument("--description", required=True)
    p.add_argument("--training-data", default="", help="what it was trained on (model card)")
    p.add_argument("--intended-use", default="")
    p.add_argument("--coils", type=int, help="the coil count it was made for")
    p.add_argument("--matrix", type=int, nargs=2, metavar=("H", "W"))
    p.add_argument("--into", help="model directory (default: first RECON_MODEL_PATH entry)")
    p.set_defaults(func=_print_result(register_model))

    p = sub.add_parser(
        "import-fastmri-varnet", help="add a fastMRI E2E-VarNet state dict as varnet weights"
    )
    p.add_argument("checkpoint", help="fastMRI VarNet .pt state dict (downloaded by the site)")
    p.add_argument("--name", required=True, help="used as --param model=NAME")
    p.add_argument("--training-data", default="fastMRI (as published with the checkpoint)")
    p.add_argument("--into", help="model directory (default: first RECON_MODEL_PATH entry)")
    p.set_defaults(func=_print_result(import_fastmri_varnet))
