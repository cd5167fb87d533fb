"""Device selection: CUDA when present, CPU otherwise."""

from __future__ import annotations

import os

import torch


def default_device() -> torch.device:
    """Return the device computations should run on.

    ``RECON_DEVICE`` (e.g. ``cpu``, ``cuda:1``) overrides the automatic choice,
    so a GPU worker can be pinned to one card and tests can force the CPU.
    """
    requested = os.environ.get("RECON_DEVICE")
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe_device(device: torch.device | None = None) -> dict:
    """A JSON-friendly description of ``device`` (name, memory) for provenance."""
    device = device or default_device()
    info: dict = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_bytes=int(props.total_memory), cuda=torch.version.cuda)
    else:
        info.update(name="cpu", threads=torch.get_num_threads())
    return info
