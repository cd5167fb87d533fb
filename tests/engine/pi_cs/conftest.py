"""Helpers for the parallel-imaging / compressed-sensing tests: BART cfl I/O and runner."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

BART = shutil.which("bart")
needs_bart = pytest.mark.skipif(BART is None, reason="BART (`bart` on PATH) is not installed")


def writecfl(name: Path, arr: np.ndarray) -> None:
    """BART's .hdr/.cfl pair: dimensions line, complex64 data in Fortran order."""
    arr = np.asarray(arr, dtype=np.complex64)
    Path(f"{name}.hdr").write_text("# Dimensions\n" + " ".join(map(str, arr.shape)) + "\n")
    arr.ravel(order="F").tofile(f"{name}.cfl")


def readcfl(name: Path) -> np.ndarray:
    dims = [int(d) for d in Path(f"{name}.hdr").read_text().splitlines()[1].split()]
    data = np.fromfile(f"{name}.cfl", dtype=np.complex64, count=int(np.prod(dims)))
    return data.reshape(dims, order="F")


def bart(tmp: Path, *args: str) -> None:
    """Run ``bart`` with file arguments relative to ``tmp``."""
    subprocess.run([BART, *args], check=True, capture_output=True, cwd=tmp)


def to_bart(ksp: np.ndarray) -> np.ndarray:
    """(C, H, W) -> BART (H, W, 1, C)."""
    return np.transpose(ksp, (1, 2, 0))[:, :, None, :]


def from_bart(arr: np.ndarray, c: int) -> np.ndarray:
    """BART (H, W, 1, C[, 1]) -> (C, H, W)."""
    h, w = arr.shape[:2]
    return np.transpose(arr.reshape(h, w, c), (2, 0, 1))


def map_correlation(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel ``|<a, b>| / (|a||b|)`` over the coil axis -3, at pixels where both are
    non-zero (and ``where``): 1 means equal up to a per-pixel phase."""
    inner = np.abs((a.conj() * b).sum(-3))
    norm = np.sqrt((np.abs(a) ** 2).sum(-3) * (np.abs(b) ** 2).sum(-3))
    sel = norm > 0
    if where is not None:
        sel &= where
    return inner[sel] / norm[sel]


def nrmse(x: np.ndarray, gt: np.ndarray) -> float:
    """Magnitude NRMSE."""
    return float(np.linalg.norm(np.abs(x) - np.abs(gt)) / np.linalg.norm(np.abs(gt)))
