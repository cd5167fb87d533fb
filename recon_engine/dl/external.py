"""A site's own network as a registry method: TorchScript or ONNX, with a card and sha256.

I/O contract ``kspace-mask-v1`` (what every external model must accept and return):

- input ``kspace``: float32 ``(B, C, H, W, 2)``, the masked multi-coil k-space (real and
  imaginary parts last), centred orthonormal FFT convention as fastMRI
  (``recon_engine.fft``), zeros where not acquired;
- input ``mask``: float32 ``(B, 1, 1, W)`` (1D column mask) or ``(B, 1, H, W)``, 1 where
  acquired;
- output ``image``: float32 ``(B, H, W)`` (or ``(B, 1, H, W)``), the magnitude image at the
  k-space matrix size.

ONNX has no complex FFT: an ONNX model does its transforms in real arithmetic (DFT as
matrix products, or the ONNX DFT operator); TorchScript models can use ``torch.fft``.

The model card ``<name>.json`` sits beside the model file in a directory on
``RECON_MODEL_PATH`` (see :mod:`recon_engine.dl.weights`)::

    {"format": "torchscript" | "onnx", "io": "kspace-mask-v1", "weights": "<file>",
     "sha256": "<hex of the file>", "title": "...", "description": "...",
     "training_data": "...", "intended_use": "...", "coils": 8 (optional),
     "matrix": [H, W] (optional)}

Each such card becomes the method ``ext_<name>`` (family ``deep_learning``). The file's
sha256 is checked on every load; a mismatched or corrupt file, a card that breaks the
contract, or an output of the wrong shape is a :class:`ReconError` with the reason.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from recon_engine.dl.batching import slice_batches
from recon_engine.dl.weights import model_dirs, sha256_file
from recon_engine.metrics import Timer
from recon_engine.registry import (
    MethodSpec,
    Param,
    ParameterError,
    ReconError,
    ReconInput,
    ReconOutput,
)

IO_CONTRACT = "kspace-mask-v1"
FORMATS = ("torchscript", "onnx")
METHOD_PREFIX = "ext_"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
REQUIRED_CARD_KEYS = ("format", "io", "weights", "sha256", "title", "description")


def validate_card(card: dict, name: str) -> None:
    """Raise :class:`ParameterError` naming what is wrong with an external model card."""
    check_name(name)
    missing = [key for key in REQUIRED_CARD_KEYS if not card.get(key)]
    if missing:
        raise ParameterError(f"model card for {name!r} lacks {', '.join(missing)}")
    if card["format"] not in FORMATS:
        raise ParameterError(
            f"model card for {name!r}: format {card['format']!r} is not one of {', '.join(FORMATS)}"
        )
    if card["io"] != IO_CONTRACT:
        raise ParameterError(
            f"model card for {name!r}: I/O contract {card['io']!r} is not supported "
            f"(this engine runs {IO_CONTRACT!r}; see recon_engine.dl.external)"
        )
    if not re.fullmatch(r"[0-9a-f]{64}", str(card["sha256"])):
        raise ParameterError(f"model card for {name!r}: sha256 must be 64 hex digits")
    if card["weights"] != model_filename(name, card["format"]):
        raise ParameterError(
            f"model card for {name!r}: the model file must be "
            f"{model_filename(name, card['format'])!r} in the card's own directory"
        )


def model_filename(name: str, fmt: str) -> str:
    """The only file name a card may point at: ``<name>.onnx`` or ``<name>.pt`` (no paths)."""
    return f"{name}{'.onnx' if fmt == 'onnx' else '.pt'}"


def check_name(name: str) -> None:
    """Refuse a name that is malformed or would shadow a shipped model or built-in method."""
    from recon_engine.dl.weights import SHIPPED_DIR

    if not _NAME.match(name):
        raise ParameterError(
            f"model name {name!r} must be lower-case letters, digits and _ (max 48), "
            "starting with a letter"
        )
    if (SHIPPED_DIR / f"{name}.json").exists():
        raise ParameterError(f"{name!r} is the name of a shipped model; choose another")


def build_card(
    fmt: str,
    path: Path,
    title: str,
    description: str,
    training_data: str = "",
    intended_use: str = "",
    coils: int | None = None,
    matrix: tuple[int, int] | None = None,
) -> dict:
    """The model card of the model file at ``path`` (sha256 computed from the file)."""
    card = {
        "format": fmt,
        "io": IO_CONTRACT,
        "weights": model_filename(path.stem, fmt),
        "sha256": sha256_file(path),
        "title": title,
        "description": description,
        "training_data": training_data,
        "intended_use": intended_use,
    }
    if coils:
        card["coils"] = int(coils)
    if matrix:
        card["matrix"] = [int(matrix[0]), int(matrix[1])]
    return card


def external_cards() -> dict[str, tuple[dict, Path]]:
    """``{name: (card, model file)}`` of every external model card on the search path.

    A card whose ``format`` is not external (the shipped state-dict cards) is skipped; the
    first directory that defines a name wins, as for weights.
    """
    found: dict[str, tuple[dict, Path]] = {}
    for directory in model_dirs():
        if not directory.is_dir():
            continue
        for card_path in sorted(directory.glob("*.json")):
            try:
                card = json.loads(card_path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if not isinstance(card, dict) or card.get("format") not in FORMATS:
                continue
            name = card_path.stem
            if name not in found:
                # Never a path the card names: only <name>.pt / <name>.onnx beside it.
                found[name] = (card, directory / model_filename(name, card["format"]))
    return found


def _verified_file(name: str, card: dict, path: Path) -> Path:
    if not path.is_file():
        raise ReconError(f"external model {name!r}: model file {path} is missing")
    actual = sha256_file(path)
    if actual != card["sha256"]:
        raise ReconError(
            f"external model {name!r}: file {path} is corrupt or was replaced: sha256 "
            f"{actual} does not match the card's {card['sha256']}"
        )
    return path


# TorchScript runs no Python, but its graph may call any registered operator, and a few
# reach outside the tensors: aten::from_file maps a server file into a tensor (verified:
# its bytes come back in the output). Only tensor-maths namespaces are allowed, minus
# operators that touch files, and nothing from custom (torch.ops.*) namespaces.
_ALLOWED_NAMESPACES = {"aten", "prim", "prims"}
_FORBIDDEN_OPERATORS = {"aten::from_file"}


def check_torchscript_graph(module: torch.jit.ScriptModule, label: str) -> None:
    """Refuse a TorchScript module whose inlined graph uses a disallowed operator."""
    graphs = [module.inlined_graph] if hasattr(module, "inlined_graph") else []
    bad = set()
    while graphs:
        graph = graphs.pop()
        for node in graph.nodes():
            kind = node.kind()
            namespace = kind.split("::", 1)[0]
            if namespace not in _ALLOWED_NAMESPACES or kind in _FORBIDDEN_OPERATORS:
                bad.add(kind)
            graphs.extend(node.blocks())
    if bad:
        raise ReconError(
            f"{label} uses operators not allowed in a site network: {', '.join(sorted(bad))} "
            "(only tensor operations; no file access or custom operators)"
        )


class _TorchScriptRunner:
    def __init__(self, path: Path, device: torch.device) -> None:
        try:
            self.module = torch.jit.load(str(path), map_location=device).eval()
        except Exception as exc:  # torch raises several types for unreadable archives
            raise ReconError(f"{path.name} is not a loadable TorchScript model: {exc}") from None
        check_torchscript_graph(self.module, path.name)

    def __call__(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(kspace, mask)


class _OnnxRunner:
    def __init__(self, path: Path, device: torch.device) -> None:
        import onnxruntime

        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in (
            onnxruntime.get_available_providers()
        ):
            providers.insert(0, "CUDAExecutionProvider")
        try:
            # From bytes, not the path: tensors stored as "external data" name files that
            # onnxruntime would otherwise read relative to the model; here it can't.
            self.session = onnxruntime.InferenceSession(path.read_bytes(), providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception classes
            raise ReconError(f"{path.name} is not a loadable ONNX model: {exc}") from None
        names = [i.name for i in self.session.get_inputs()]
        if sorted(names) != ["kspace", "mask"]:
            raise ReconError(
                f"{path.name}: ONNX inputs are {names}, the contract needs 'kspace' and 'mask'"
            )

    def __call__(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        feeds = {
            "kspace": kspace.detach().cpu().numpy().astype(np.float32),
            "mask": mask.detach().cpu().numpy().astype(np.float32),
        }
        try:
            (out, *_) = self.session.run(None, feeds)
        except Exception as exc:  # onnxruntime raises its own exception classes
            raise ReconError(f"the ONNX model failed on this input: {exc}") from None
        return torch.from_numpy(np.asarray(out)).to(kspace.device)


@lru_cache(maxsize=8)
def _runner(name: str, path: str, sha256: str, fmt: str, device: str):
    """Loaded model, cached per (file, hash, device) so a volume loads it once."""
    cls = _TorchScriptRunner if fmt == "torchscript" else _OnnxRunner
    return cls(Path(path), torch.device(device))


def open_model(name: str, card: dict, path: Path, device: torch.device | str = "cpu"):
    """The loaded model (``callable(kspace, mask) -> image``) after checking card and sha256."""
    try:
        validate_card(card, name)
    except ParameterError as exc:
        raise ReconError(str(exc)) from None
    _verified_file(name, card, path)
    return _runner(name, str(path), card["sha256"], card["format"], str(torch.device(device)))


def load_external(name: str, device: torch.device | str = "cpu"):
    """``(callable(kspace, mask) -> image, card)`` for the external model ``name``."""
    cards = external_cards()
    if name not in cards:
        raise ReconError(
            f"no external model {name!r}: put {name}.json and its model file in a "
            "RECON_MODEL_PATH directory"
        )
    card, path = cards[name]
    return open_model(name, card, path, device), card


def check_model(name: str, card: dict, path: Path) -> None:
    """Run a model once on synthetic k-space of its declared size (default 8 coils, 64²).

    Raises :class:`ReconError` if it can't load, breaks the contract or fails.
    """
    from recon_engine.sampling import make_mask

    model = open_model(name, card, path)
    h, w = card.get("matrix") or (64, 64)
    coils = int(card.get("coils") or 8)
    generator = torch.Generator().manual_seed(0)
    kspace = torch.randn((1, coils, h, w), dtype=torch.complex64, generator=generator)
    mask = make_mask("equispaced", (h, w), 2, center_fraction=0.25).mask
    _apply(model, kspace * mask, mask, name)


def _apply(model, kspace: torch.Tensor, mask: torch.Tensor, name: str) -> torch.Tensor:
    """One batch through the model under the contract: ``(B, H, W)`` float32 image."""
    b, _, h, w = kspace.shape
    mask = mask.expand(b, 1, mask.shape[-2], w).to(torch.float32)
    out = model(torch.view_as_real((kspace * mask).to(torch.complex64)).contiguous(), mask)
    return _as_image(out, b, h, w, name)


def _as_image(out, batch: int, h: int, w: int, name: str) -> torch.Tensor:
    if not torch.is_tensor(out):
        raise ReconError(f"external model {name!r} returned {type(out).__name__}, not a tensor")
    if out.ndim == 4 and out.shape[1] == 1:
        out = out[:, 0]
    if tuple(out.shape) != (batch, h, w):
        raise ReconError(
            f"external model {name!r} returned shape {tuple(out.shape)}; the "
            f"{IO_CONTRACT} contract needs ({batch}, {h}, {w})"
        )
    if out.is_complex():
        out = out.abs()
    out = out.to(torch.float32)
    if not bool(torch.isfinite(out).all()):
        raise ReconError(f"external model {name!r} produced NaN or infinite values")
    return out


def run_external(name: str, data: ReconInput, params: dict) -> ReconOutput:
    """Run the external model ``name`` over the input's slices in batches."""
    from recon_engine.methods.zero_filled import check_input

    check_input(data)
    s, _, h, w = data.kspace.shape
    timer = Timer(data.device)
    with timer("load_model"):
        model, card = load_external(name, data.device)
    if card.get("coils") and int(card["coils"]) != data.kspace.shape[1]:
        raise ReconError(
            f"external model {name!r} was made for {card['coils']} coils; this k-space has "
            f"{data.kspace.shape[1]}"
        )
    if card.get("matrix") and list(card["matrix"]) != [h, w]:
        raise ReconError(
            f"external model {name!r} was made for a {card['matrix'][0]}x{card['matrix'][1]} "
            f"matrix; this k-space is {h}x{w}"
        )
    images = []
    for _, _, kb, mb in slice_batches(data, params["batch_size"], timer):
        with timer("network"):
            images.append(_apply(model, kb, mb, name).cpu())
    return ReconOutput(
        image=torch.cat(images),
        timings=timer.timings,
        info={"model": name, "sha256": card["sha256"], "format": card["format"], "card": card},
    )


def external_spec(name: str, card: dict) -> MethodSpec:
    """The registry entry for one external model card."""

    def run(data: ReconInput, params: dict) -> ReconOutput:
        return run_external(name, data, params)

    return MethodSpec(
        name=f"{METHOD_PREFIX}{name}",
        title=str(card["title"]),
        family="deep_learning",
        description=(
            f"{card['description']} External {card['format']} model registered by the site "
            f"(I/O contract {IO_CONTRACT}; file sha256 {card['sha256'][:12]}…, checked on "
            "every load). Training data: "
            f"{card.get('training_data') or 'not stated in its card'}."
        ),
        run=run,
        params=(Param("batch_size", "int", 4, "Slices per network call.", min=1, max=256),),
        references=tuple(card.get("references", ())),
    )


def external_specs() -> list[MethodSpec]:
    """Registry entries of every valid external card on the search path.

    Invalid cards are skipped (the registry must load); ``register-model`` and the upload
    page say why a card is invalid.
    """
    specs = []
    for name, (card, _) in external_cards().items():
        try:
            validate_card(card, name)
        except ParameterError:
            continue
        specs.append(external_spec(name, card))
    return specs
