"""Small simulated multi-coil data for the GRAPPA / SMS tests (independent of the engine)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from sigpy.mri import birdcage_maps

from recon_engine.fft import fftc, ifftc, rss

DATA = Path(__file__).resolve().parents[3] / "data" / "mri" / "colin27_t1_1mm.nii.gz"


def brain_slices(n: int, size: int) -> torch.Tensor:
    """``n`` axial slices of the Colin27 T1 brain spread over its middle, ``(n, size, size)``."""
    vol = np.asarray(nib.load(str(DATA)).dataobj, dtype=np.float32)
    zs = np.linspace(vol.shape[2] * 0.35, vol.shape[2] * 0.65, n).astype(int)
    sl = torch.from_numpy(np.stack([vol[:, :, z] for z in zs]))[:, None]
    img = torch.nn.functional.interpolate(sl, size=(size, size), mode="bilinear")[:, 0]
    return img / img.max()


def coil_maps(n_slices: int, size: int, n_coils: int) -> torch.Tensor:
    """SigPy birdcage receive profiles ``(S, C, H, W)``: two rings of ``n_coils / 2`` coils
    around the slab, so the profiles change from slice to slice (slice separation needs it).
    A single slice uses one ring of ``n_coils`` coils."""
    if n_slices == 1:
        maps = birdcage_maps((n_coils, size, size))[None]
    else:
        maps = birdcage_maps((n_coils, n_slices, size, size), nzz=n_coils // 2)
        maps = maps.transpose(1, 0, 2, 3)
    return torch.from_numpy(np.ascontiguousarray(maps)).to(torch.complex64)


def make_data(
    n_slices: int = 1,
    size: int = 64,
    n_coils: int = 8,
    noise: float = 0.0,
    smooth: bool = False,
    seed: int = 0,
) -> dict:
    """k-space ``(S, C, H, W)``, coil maps, complex ground-truth image and its RSS."""
    if smooth:
        y, x = torch.meshgrid(
            torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij"
        )
        img = torch.exp(-(x**2 + (y / 0.8) ** 2) / 0.3) + 0.5 * torch.exp(
            -((x - 0.3) ** 2 + (y + 0.2) ** 2) / 0.05
        )
        img = img.expand(n_slices, size, size)
    else:
        img = brain_slices(n_slices, size)
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    image = (img * torch.exp(1j * (0.7 * x - 0.4 * y))).to(torch.complex64)
    maps = coil_maps(n_slices, size, n_coils)
    kspace = fftc(maps * image[:, None])
    if noise:
        g = torch.Generator().manual_seed(seed)
        n = torch.randn(kspace.shape, generator=g) + 1j * torch.randn(kspace.shape, generator=g)
        kspace = kspace + (noise * image.abs().mean() / np.sqrt(2)) * n.to(torch.complex64)
    return {
        "kspace": kspace,
        "maps": maps,
        "image": image,
        "rss": rss(ifftc(kspace), coil_dim=1),
    }


def line_mask(w: int, r: int, acs: int, offset: int = 0) -> torch.Tensor:
    """Uniform 1D mask ``(1, 1, 1, W)``: every ``r``-th line from ``offset`` plus ``acs``
    central lines."""
    m = torch.zeros(1, 1, 1, w)
    m[..., offset::r] = 1
    m[..., w // 2 - acs // 2 : w // 2 - acs // 2 + acs] = 1
    return m


def random_line_mask(w: int, r: int, acs: int, seed: int = 0) -> torch.Tensor:
    """Random 1D mask with ``acs`` central lines and about ``w / r`` lines in total."""
    rng = np.random.default_rng(seed)
    prob = (w / r - acs) / (w - acs)
    m = (rng.random(w) < prob).astype(np.float32)
    m[w // 2 - acs // 2 : w // 2 - acs // 2 + acs] = 1
    return torch.from_numpy(m).reshape(1, 1, 1, w)


def nrmse(pred: torch.Tensor, ref: torch.Tensor) -> float:
    """||pred - ref|| / ||ref||."""
    return float(torch.linalg.norm(pred - ref) / torch.linalg.norm(ref))


@pytest.fixture(scope="session")
def brain8():
    """One 8-coil 96x96 brain slice with noise SD 1% of the mean image magnitude."""
    return make_data(1, 96, 8, noise=0.01)
