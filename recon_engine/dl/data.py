"""Training data: slices from magnitude volumes (simulated multi-coil k-space) or from
fully sampled fastMRI HDF5 directories, with image and physics augmentations.

Every random draw takes an explicit :class:`torch.Generator`, so a sample is a pure
function of its seed (deterministic training and resume).

Image augmentations (:func:`augment_image`): left-right flip, random contrast (intensity
scale and offset), random gamma and a smooth elastic deformation (a coarse random
displacement grid, bicubically up-sampled, so the warp is smooth and diffeomorphic for
small amplitudes). Physics augmentations (:func:`draw_physics`, in the spirit of VORTEX,
Desai et al. MIDL 2022): coil count, noise level (SNR), rigid inter-shot motion, and the
mask pattern / acceleration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from recon_engine.fft import fftc, ifftc, rss
from recon_engine.io.fastmri import read_fastmri
from recon_engine.registry import ParameterError, ReconError
from recon_engine.sampling import make_mask
from recon_engine.simulation import load_slices, simulate_motion, simulate_multicoil


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _choice(g: torch.Generator, options: list) -> Any:
    return options[int(torch.randint(len(options), (), generator=g))]


def elastic_deform(
    image: torch.Tensor, alpha_px: float, grid: int, g: torch.Generator
) -> torch.Tensor:
    """Warp ``(..., H, W)`` real or complex images by a smooth random displacement field.

    Displacements (pixels, uniform in ``[-alpha_px, alpha_px]``) are drawn on a
    ``grid x grid`` lattice and bicubically interpolated to ``H x W`` (which may overshoot
    ``alpha_px`` slightly between control points); all leading images
    (e.g. coil images) get the same warp. Bilinear resampling, zero outside the FOV.
    """
    h, w = image.shape[-2:]
    coarse = (torch.rand(1, 2, grid, grid, generator=g) * 2 - 1) * alpha_px
    disp = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)[0]
    ys = torch.linspace(-1, 1, h)[:, None].expand(h, w)
    xs = torch.linspace(-1, 1, w)[None, :].expand(h, w)
    field = torch.stack((xs + disp[1] * 2 / max(w - 1, 1), ys + disp[0] * 2 / max(h - 1, 1)), -1)
    flat = image.reshape(-1, h, w)
    parts = torch.view_as_real(flat).permute(0, 3, 1, 2) if flat.is_complex() else flat[:, None]
    parts = parts.reshape(1, -1, h, w).float()
    out = F.grid_sample(parts, field[None], mode="bilinear", align_corners=True)
    out = out.reshape(flat.shape[0], -1, h, w)
    if flat.is_complex():
        out = torch.view_as_complex(out.permute(0, 2, 3, 1).contiguous())
    else:
        out = out[:, 0]
    return out.reshape(image.shape)


def augment_image(image: torch.Tensor, aug: dict, g: torch.Generator) -> torch.Tensor:
    """Flip / elastic warp (real or complex ``(..., H, W)``) and, for real magnitude images,
    contrast and gamma (output clipped to ``>= 0``). ``aug`` keys: ``flip`` (bool),
    ``contrast`` ``[lo, hi]`` scale, ``gamma`` ``[lo, hi]``, ``elastic``
    ``{probability, alpha_px, grid}``."""
    if aug.get("flip") and torch.rand((), generator=g) < 0.5:
        image = image.flip(-1)
    elastic = aug.get("elastic") or {}
    if elastic and torch.rand((), generator=g) < float(elastic.get("probability", 0.5)):
        image = elastic_deform(
            image, float(elastic.get("alpha_px", 2.0)), int(elastic.get("grid", 5)), g
        )
    if not image.is_complex():
        lo, hi = aug.get("contrast", [1.0, 1.0])
        image = image * _uniform(g, lo, hi)
        lo, hi = aug.get("gamma", [1.0, 1.0])
        image = image.clamp_min(0) ** _uniform(g, lo, hi)
    return image


@dataclass(frozen=True)
class Physics:
    """Acquisition drawn for one batch: coil count, SNR (``None`` = no added noise), mask
    pattern, acceleration, centre fraction and motion (``None`` or simulate_motion kwargs)."""

    n_coils: int
    snr: float | None
    pattern: str
    acceleration: int
    center_fraction: float
    motion: dict | None


def draw_physics(physics: dict, mask: dict, g: torch.Generator) -> Physics:
    """Draw a :class:`Physics` from the config's ``physics`` and ``mask`` sections.

    ``physics.n_coils``: list of coil counts; ``physics.snr``: ``[lo, hi]`` (log-uniform)
    or ``None``; ``physics.motion``: ``{probability, n_shots, max_translation_px,
    max_rotation_deg}``; ``mask.patterns``; ``mask.accelerations`` with the matching
    ``mask.center_fractions``.
    """
    n_coils = int(_choice(g, list(physics["n_coils"])))
    snr = physics.get("snr")
    if snr is not None:
        lo, hi = snr
        snr = math.exp(_uniform(g, math.log(lo), math.log(hi)))
    pattern = _choice(g, list(mask["patterns"]))
    i = int(torch.randint(len(mask["accelerations"]), (), generator=g))
    motion = physics.get("motion") or None
    if motion and torch.rand((), generator=g) >= float(motion.get("probability", 0.0)):
        motion = None
    elif motion:
        motion = {k: v for k, v in motion.items() if k != "probability"}
    return Physics(
        n_coils,
        snr,
        pattern,
        int(mask["accelerations"][i]),
        float(mask["center_fractions"][i]),
        motion,
    )


def simulate_kspace(
    image: torch.Tensor, phys: Physics, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(coil k-space (C, H, W) complex, RSS target (H, W))`` from a magnitude slice.

    With motion, the k-space comes from the moving object in stationary coils (plus the
    same noise level) while the target stays the motion-free RSS image, so a network
    learns to suppress the artefacts.
    """
    sim = simulate_multicoil(image, n_coils=phys.n_coils, snr=phys.snr, seed=seed)
    kspace = sim.kspace[0]
    target = rss(ifftc(kspace), coil_dim=0)
    if phys.motion:
        moved = simulate_motion(
            sim.image, seed=seed, sensitivities=sim.sensitivities, **phys.motion
        ).kspace[0]
        noise = sim.kspace[0] - fftc(sim.sensitivities[0] * sim.image[0])
        kspace = moved + noise
    return kspace, target


class VolumeSlices:
    """Magnitude slices ``(N, H, W)`` in ``[0, 1]`` from NIfTI / DICOM volumes: ``n_slices``
    per volume and slice axis in ``axes`` (more orientations = more varied anatomy)."""

    def __init__(
        self,
        volumes: list[str],
        n_slices: int,
        size: list[int],
        spread: float,
        axes: tuple[int | None, ...] = (None,),
    ):
        for v in volumes:
            if not Path(v).exists():
                raise ParameterError(f"training volume {v} does not exist")
        images = torch.cat(
            [
                load_slices(v, n_slices, size=tuple(size), spread=spread, axis=axis)
                for v in volumes
                for axis in axes
            ]
        )
        # drop (nearly) empty slices: no anatomy to learn from, and no signal to set SNR by
        peak = images.amax(dim=(-2, -1), keepdim=True)
        tissue = (images > 0.1 * peak).float().mean(dim=(-2, -1))
        self.images = images[(peak[:, 0, 0] > 0.05) & (tissue > 0.05)]
        if len(self.images) == 0:
            raise ParameterError(f"no slice with anatomy in {', '.join(map(str, volumes))}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def kspace(
        self, i: int, phys: Physics, aug: dict | None, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented, simulated ``(coil k-space, target)`` of slice ``i``."""
        image = self.images[i]
        if aug is not None:
            image = augment_image(image, aug, torch.Generator().manual_seed(seed))
        return simulate_kspace(image, phys, seed)

    def image(self, i: int, aug: dict | None, seed: int) -> torch.Tensor:
        """Augmented magnitude slice ``i`` ``(H, W)`` (super-resolution targets)."""
        image = self.images[i]
        if aug is not None:
            image = augment_image(image, aug, torch.Generator().manual_seed(seed))
        return image


class FastMRISlices:
    """Slices of fully sampled multi-coil fastMRI HDF5 files in a directory.

    Each slice's coil images are centre-cropped to ``size`` (when given) and transformed
    back, so the matrix is uniform. Physics augmentation: a random subset of ``n_coils``
    coils (when the file has more) and motion simulated on the coil images; ``snr`` is not
    applied (real data already carries its own noise). Intensity augmentations (contrast,
    gamma) apply to magnitudes only, so real coil data gets flips and warps.
    """

    def __init__(self, directory: str, size: list[int] | None):
        files = sorted(Path(directory).glob("*.h5"))
        if not files:
            raise ParameterError(f"no fastMRI .h5 files in {directory}")
        self.slices: list[torch.Tensor] = []
        for path in files:
            raw = read_fastmri(path)
            if raw.mask is not None and float(raw.mask.min()) < 1:
                raise ReconError(f"{path.name}: undersampled; training needs fully sampled data")
            k = raw.kspace
            if size is not None:
                h, w = size
                if k.shape[-2] < h or k.shape[-1] < w:
                    raise ReconError(f"{path.name}: matrix {tuple(k.shape[-2:])} < size {size}")
                im = ifftc(k)
                r0, c0 = (k.shape[-2] - h) // 2, (k.shape[-1] - w) // 2
                k = fftc(im[..., r0 : r0 + h, c0 : c0 + w])
            self.slices.extend(k.unbind(0))

    def __len__(self) -> int:
        return len(self.slices)

    def kspace(
        self, i: int, phys: Physics, aug: dict | None, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(coil k-space, RSS target)`` of slice ``i`` with coil subset / flip / warp."""
        g = torch.Generator().manual_seed(seed)
        k = self.slices[i]
        if phys.n_coils < k.shape[0]:
            k = k[torch.randperm(k.shape[0], generator=g)[: phys.n_coils].sort().values]
        images = ifftc(k)
        if aug is not None:
            images = augment_image(images, aug, g)
        target = rss(images, coil_dim=0)
        k = fftc(images)
        if phys.motion:
            moved = simulate_motion(images, seed=seed, **phys.motion).kspace[:, 0]
            k = moved
        return k, target

    def image(self, i: int, aug: dict | None, seed: int) -> torch.Tensor:
        """RSS magnitude of slice ``i`` (super-resolution targets), max-normalised."""
        image = rss(ifftc(self.slices[i]), coil_dim=0)
        if aug is not None:
            image = augment_image(image, aug, torch.Generator().manual_seed(seed))
        return image / image.max().clamp_min(1e-12)


def make_dataset(data: dict, split: str) -> VolumeSlices | FastMRISlices:
    """The ``train`` or ``val`` dataset of a config's ``data`` section (``data.axes`` applies
    to training only: validation uses the default, axial, slices)."""
    if data.get("source", "simulated") == "fastmri":
        directory = data.get(f"{split}_dir")
        if not directory:
            raise ParameterError(f"config: data.{split}_dir is required for source fastmri")
        return FastMRISlices(directory, data.get("size"))
    axes = tuple(data.get("axes") or [None]) if split == "train" else (None,)
    n_slices = data["n_slices"] if split == "train" else data.get("val_slices") or data["n_slices"]
    return VolumeSlices(data[f"{split}_volumes"], n_slices, data["size"], data["spread"], axes)


def recon_batch(samples: list[tuple[torch.Tensor, torch.Tensor]], phys: Physics, seed: int):
    """Batch dict for ``kspace_recon`` / ``image_recon`` (see :mod:`recon_engine.dl.zoo`).

    Each sample gets its own mask (seeded); k-space is scaled by the maximum of its
    zero-filled RSS image (known at inference time, unlike the target).
    """
    ks, masks, zfs, targets = [], [], [], []
    for j, (kspace, target) in enumerate(samples):
        h, w = kspace.shape[-2:]
        mask = make_mask(
            phys.pattern,
            (h, w),
            phys.acceleration,
            seed=seed + j,
            center_fraction=phys.center_fraction,
        ).mask[0]
        masked = kspace * mask
        zf = rss(ifftc(masked), coil_dim=0)
        scale = zf.max().clamp_min(1e-12)
        ks.append(torch.view_as_real(masked / scale))
        masks.append(mask.bool()[..., None])
        zfs.append(zf / scale)
        targets.append(target / scale)
    return {
        "kspace": torch.stack(ks).float(),
        "mask": torch.stack(masks),
        "zero_filled": torch.stack(zfs).float(),
        "target": torch.stack(targets).float(),
    }


def low_resolution(image: torch.Tensor, factor: int) -> torch.Tensor:
    """Magnitude of the central ``1/factor`` of k-space (a lower-resolution acquisition of
    the same FOV), ``(..., H, W)`` -> ``(..., H/f, W/f)``, amplitude preserved."""
    h, w = image.shape[-2:]
    if h % factor or w % factor:
        raise ParameterError(f"image {h}x{w} is not divisible by the SR factor {factor}")
    lh, lw = h // factor, w // factor
    k = fftc(image.to(torch.complex64))
    r0, c0 = (h - lh) // 2, (w - lw) // 2
    return ifftc(k[..., r0 : r0 + lh, c0 : c0 + lw]).abs() / factor


def sr_batch(images: list[torch.Tensor], factor: int) -> dict:
    """Batch dict for ``super_resolution``: max-normalised targets and their low-res."""
    targets = torch.stack([im / im.max().clamp_min(1e-12) for im in images]).float()
    return {"low": low_resolution(targets, factor).float(), "target": targets, "factor": factor}
