"""A site's own networks on the platform: validate an upload, store it, and make every
process (web, workers on other machines) see it as a registry method.

Each process keeps a local model cache (``EXTERNAL_MODEL_CACHE``, on its own disk) that
is on ``RECON_MODEL_PATH``; :func:`sync_external_models` copies into it, through the
storage API, every stored model it lacks (checked by sha256) and re-registers the
engine's external methods. Nothing is read from a path another machine wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.db import transaction

from mriplatform.protocols.models import ExternalModel
from recon_engine.dl.external import (
    build_card,
    check_model,
    check_name,
    model_filename,
    validate_card,
)
from recon_engine.dl.weights import sha256_file
from recon_engine.registry import ParameterError, ReconError, refresh_external_methods


class ExternalModelError(ValueError):
    """An upload that can't become a method; the message says why (shown to the user)."""


def cache_dir() -> Path:
    """This process's model cache, put on ``RECON_MODEL_PATH`` (first) once."""
    directory = Path(settings.EXTERNAL_MODEL_CACHE)
    directory.mkdir(parents=True, exist_ok=True)
    search = [p for p in os.environ.get("RECON_MODEL_PATH", "").split(os.pathsep) if p]
    if str(directory) not in search:
        os.environ["RECON_MODEL_PATH"] = os.pathsep.join([str(directory), *search])
    return directory


def sync_external_models() -> list[str]:
    """Bring the local cache in line with the stored models; returns the ext_ methods."""
    directory = cache_dir()
    wanted = {}
    for model in ExternalModel.objects.all():
        wanted[model.name] = model
        card_path = directory / f"{model.name}.json"
        target = directory / model_filename(model.name, model.format)
        if card_path.is_file() and target.is_file() and _known_hash(target) == model.sha256:
            continue
        # Copy to a private name, then rename: a process reading the cache meanwhile sees
        # the old complete file or the new complete file, never a half-written one.
        partial = directory / f".{target.name}.{os.getpid()}.partial"
        with model.file.open("rb") as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(partial, target)
        partial_card = directory / f".{card_path.name}.{os.getpid()}.partial"
        partial_card.write_text(json.dumps(model.card, indent=2, sort_keys=True))
        os.replace(partial_card, card_path)
    for card_path in directory.glob("*.json"):
        name = card_path.stem
        if name not in wanted:  # removed from the database: forget it here too
            for suffix in (".pt", ".onnx"):
                (directory / f"{name}{suffix}").unlink(missing_ok=True)
            card_path.unlink(missing_ok=True)
    return refresh_external_methods()


_HASHES: dict[tuple[str, int, int], str] = {}


def _known_hash(path: Path) -> str:
    """sha256 of a cached file, remembered per (path, size, mtime) so pages don't rehash."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(path)
    return _HASHES[key]


def add_external_model(upload, *, name: str, fmt: str, user=None, **card_fields) -> ExternalModel:
    """Check an uploaded model keeps the contract (one run on synthetic k-space), store it.

    ``card_fields``: title, description, training_data, intended_use, coils, matrix.
    Raises :class:`ExternalModelError` with the reason; nothing is stored then.
    """
    try:
        check_name(name)  # before the name is used as a file name anywhere
    except ParameterError as exc:
        raise ExternalModelError(str(exc)) from None
    if ExternalModel.objects.filter(name=name).exists():
        raise ExternalModelError(f"a model called {name!r} already exists")
    with tempfile.TemporaryDirectory(prefix="recontrial-model-") as scratch:
        path = Path(scratch) / model_filename(name, fmt)
        with open(path, "wb") as dst:
            for chunk in upload.chunks():
                dst.write(chunk)
        card = build_card(fmt, path, **card_fields)
        try:
            validate_card(card, name)
            check_model(name, card, path)
        except (ParameterError, ReconError) as exc:
            raise ExternalModelError(str(exc)) from None
        with transaction.atomic(), open(path, "rb") as fh:
            model = ExternalModel(
                name=name, format=fmt, sha256=card["sha256"], card=card, uploaded_by=user
            )
            model.file.save(path.name, File(fh), save=False)
            model.save()
    sync_external_models()
    return model
