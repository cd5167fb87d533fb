"""File-to-file super-resolution: a reconstruction file in, an enlarged one out (CLI verb
``super-resolve``).

The input is a fastMRI reconstruction file (``reconstruction`` ``(S, H, W)``, as written by
``reconstruct``) or a raw file's ``reconstruction_rss``; the output is a reconstruction
file holding the enlarged magnitude volume plus provenance attributes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from recon_engine import __version__
from recon_engine.device import default_device, describe_device
from recon_engine.io.fastmri import read_reconstruction, write_reconstruction
from recon_engine.registry import ReconError, ReconInput, get_method

__all__ = ["super_resolve_file"]


def super_resolve_file(
    input_h5: str | Path,
    output_h5: str | Path,
    method: str,
    params: dict | None = None,
    device: torch.device | str | None = None,
) -> dict:
    """Enlarge the volume of ``input_h5`` with the super-resolution ``method`` and write
    ``output_h5``; returns a summary (shapes, params, timings, info)."""
    input_h5, output_h5 = Path(input_h5), Path(output_h5)
    try:
        spec = get_method(method)
    except KeyError as exc:
        raise ReconError(str(exc.args[0])) from None
    if spec.family != "super_resolution":
        raise ReconError(
            f"{method} is a {spec.family.replace('_', ' ')} method, not super-resolution; "
            "use `reconstruct` for it"
        )
    params = spec.validate(params)
    if not input_h5.is_file():
        raise ReconError(f"{input_h5}: no such file")
    volume, attrs = read_reconstruction(input_h5)
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ReconError("device 'cuda' requested but CUDA is not available")
    data = ReconInput(
        kspace=torch.zeros(0, dtype=torch.complex64),
        mask=torch.ones(1, 1, 1, 1),
        metadata={"image": torch.from_numpy(volume), "source": input_h5.name},
        device=device,
    )
    try:
        out = spec.run(data, params)
    except ReconError as exc:
        raise ReconError(f"{input_h5.name}: {exc}") from None
    image = out.image.detach().cpu()
    image = (image.abs() if image.is_complex() else image).float()
    if not bool(torch.isfinite(image).all()):
        raise ReconError(f"{method} produced NaN or infinite values")
    info = {k: v for k, v in out.info.items() if k != "card"}
    provenance = {
        "method": method,
        "method_title": spec.title,
        "params": json.dumps(params),
        "engine_version": __version__,
        "device": json.dumps(describe_device(device), default=str),
        "timings": json.dumps(out.timings),
        "info": json.dumps(info, default=str),
        "source": input_h5.name,
        "input_shape": json.dumps(list(volume.shape)),
    }
    for key in ("patient_id", "acquisition"):
        if key in attrs:
            provenance[key] = attrs[key]
    write_reconstruction(output_h5, image, provenance)
    return {
        "output": str(output_h5),
        "input_shape": list(volume.shape),
        "shape": list(image.shape),
        "method": method,
        "params": params,
        "timings": out.timings,
        "info": info,
    }
