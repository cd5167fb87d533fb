"""Synthetic findings inserted into an image before coil weighting, with a truth mask.

Conventions: images are magnitude ``(H, W)`` (or ``(S, H, W)``) with square pixels of
``pixel_mm``; positions are ``(row, column)`` in pixels, centre of pixel ``(0, 0)`` at 0.
A finding changes the signal by ``contrast`` times the *local* background signal (the
magnitude smoothed over about three lesion diameters), so ``contrast=+0.5`` is a finding
50 % brighter than the tissue around it and ``-0.8`` an 80 % signal drop, whatever the
tissue's own intensity. Profiles are computed on a 4x supersampled grid and averaged, so a
1-2 pixel finding has the partial-volume edge a real acquisition gives it.

Kinds (sizes in mm):
- ``oedema``: ill-defined focal hyperintensity (marrow-oedema-like), a Gaussian bump whose
  full width at half maximum is ``size_mm``; truth = the disc of that diameter.
- ``focus``: sharp round focus of diameter ``size_mm`` (hypointense with a negative contrast).
- ``cartilage_defect``: a band ``size_mm`` long and ``max(size_mm / 4, 1 pixel)`` thick
  with a signal drop, oriented by ``angle_deg``.
- ``tear``: a line ``size_mm`` long and one pixel thick (meniscal-tear-like), oriented by
  ``angle_deg``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from recon_engine.fft import fftc
from recon_engine.registry import ParameterError
from recon_engine.simulation import coil_sensitivities, noise_std_for_snr, smooth_phase

LESION_KINDS = ("oedema", "focus", "cartilage_defect", "tear")
SUPERSAMPLING = 4
# A finding must lie on tissue: at least this share of its truth mask inside the object.
MIN_INSIDE_OBJECT = 0.9


@dataclass(frozen=True)
class Lesion:
    """One synthetic finding (see the module doc for kinds, units and conventions)."""

    kind: str
    size_mm: float
    contrast: float
    center: tuple[float, float]
    angle_deg: float = 0.0

    def validate(self, shape: tuple[int, int], pixel_mm: float) -> None:
        """Raise :class:`ParameterError` with a clear message for an impossible finding."""
        if self.kind not in LESION_KINDS:
            raise ParameterError(
                f"unknown lesion kind {self.kind!r}; choose one of {', '.join(LESION_KINDS)}"
            )
        if not (math.isfinite(pixel_mm) and pixel_mm > 0):
            raise ParameterError(f"pixel size must be a positive number of mm, got {pixel_mm}")
        if not math.isfinite(self.size_mm) or self.size_mm < pixel_mm:
            raise ParameterError(
                f"lesion size {self.size_mm} mm is below one pixel ({pixel_mm} mm): "
                "it can't be represented on this matrix"
            )
        if not math.isfinite(self.contrast) or self.contrast == 0 or self.contrast < -1:
            raise ParameterError(
                f"contrast must be a non-zero fraction of the local signal >= -1, "
                f"got {self.contrast}"
            )
        row, col = self.center
        h, w = shape
        if not (0 <= row <= h - 1 and 0 <= col <= w - 1):
            raise ParameterError(f"lesion centre {self.center} lies outside the {h}x{w} image")


def _coordinates(shape: tuple[int, int], center: tuple[float, float], angle_deg: float):
    """Supersampled pixel-unit coordinates (along, across) rotated by ``angle_deg``."""
    h, w = shape
    s = SUPERSAMPLING
    offsets = (torch.arange(s, dtype=torch.float64) + 0.5) / s - 0.5
    rows = (torch.arange(h, dtype=torch.float64)[:, None] + offsets[None]).reshape(-1)
    cols = (torch.arange(w, dtype=torch.float64)[:, None] + offsets[None]).reshape(-1)
    y = rows[:, None] - center[0]
    x = cols[None, :] - center[1]
    theta = math.radians(angle_deg)
    along = x * math.cos(theta) + y * math.sin(theta)
    across = -x * math.sin(theta) + y * math.cos(theta)
    return along, across


def _downsample(fine: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(fine[None, None], SUPERSAMPLING)[0, 0]


def lesion_profile(
    shape: tuple[int, int], lesion: Lesion, pixel_mm: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(profile, truth)`` for one finding on an ``(H, W)`` grid.

    profile: float64 in [0, 1], the share of the finding's full contrast in each pixel.
    truth: bool, the pixels the finding occupies (at least half covered; for ``oedema``
    the disc whose diameter is the FWHM).
    """
    lesion.validate(shape, pixel_mm)
    along, across = _coordinates(shape, lesion.center, lesion.angle_deg)
    size_px = lesion.size_mm / pixel_mm
    if lesion.kind == "oedema":
        sigma = size_px / (2 * math.sqrt(2 * math.log(2)))
        r2 = along**2 + across**2
        fine = torch.exp(-r2 / (2 * sigma**2))
        inside = (r2 <= (size_px / 2) ** 2).to(torch.float64)
    else:
        if lesion.kind == "focus":
            inside = ((along**2 + across**2) <= (size_px / 2) ** 2).to(torch.float64)
        else:
            thickness = max(size_px / 4, 1.0) if lesion.kind == "cartilage_defect" else 1.0
            inside = ((along.abs() <= size_px / 2) & (across.abs() <= thickness / 2)).to(
                torch.float64
            )
        fine = inside
    profile = _downsample(fine)
    truth = _downsample(inside) >= 0.5
    if not truth.any():  # a thin line between pixel centres: keep its best-covered pixels
        coverage = _downsample(inside)
        truth = coverage >= coverage.max() * 0.5
    return profile, truth


def local_background(magnitude: torch.Tensor, size_px: float) -> torch.Tensor:
    """Magnitude smoothed by a Gaussian of SD ``1.5 * size_px`` (pixels), shape kept."""
    sigma = max(1.5 * size_px, 1.0)
    radius = int(math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    img = magnitude.to(torch.float64)[None, None]
    pad = (radius, radius, radius, radius)
    img = F.conv2d(F.pad(img, pad, mode="reflect"), kernel.view(1, 1, 1, -1))
    img = F.conv2d(img, kernel.view(1, 1, -1, 1))
    return img[0, 0]


def insert_lesion(
    magnitude: torch.Tensor | np.ndarray, lesion: Lesion, pixel_mm: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(magnitude with the finding, truth mask)`` for an ``(H, W)`` magnitude image.

    The change is ``contrast * local_background * profile``; a finding less than 90 % on
    tissue (magnitude above 10 % of the maximum) is refused with a clear message.
    """
    mag = torch.as_tensor(magnitude).abs().to(torch.float64)
    if mag.ndim != 2:
        raise ParameterError(f"insert a lesion into one (H, W) image, got {tuple(mag.shape)}")
    profile, truth = lesion_profile(tuple(mag.shape), lesion, pixel_mm)
    tissue = mag > 0.1 * mag.max()
    inside = float(tissue[truth].to(torch.float64).mean()) if truth.any() else 0.0
    if inside < MIN_INSIDE_OBJECT:
        raise ParameterError(
            f"lesion at {lesion.center} lies outside the object ({inside:.0%} of it on "
            "tissue): place it inside the anatomy"
        )
    background = local_background(mag, lesion.size_mm / pixel_mm)
    lesioned = (mag + lesion.contrast * background * profile).clamp_min(0)
    return lesioned, truth


@dataclass
class LesionTwins:
    """Lesion-absent and lesion-present acquisitions of one slice over noise realisations.

    kspace_absent, kspace_present: ``(N, C, H, W)`` complex64, fully sampled, noise added.
    image_absent, image_present: ``(H, W)`` complex64 noiseless truths.
    truth: ``(H, W)`` bool, the finding's pixels.
    sensitivities: ``(N, C, H, W)`` complex64 coil maps.
    noise_std: complex noise SD per k-space sample (same for both twins).
    """

    kspace_absent: torch.Tensor
    kspace_present: torch.Tensor
    image_absent: torch.Tensor
    image_present: torch.Tensor
    truth: torch.Tensor
    sensitivities: torch.Tensor
    noise_std: float


def lesion_twins(
    magnitude: torch.Tensor | np.ndarray,
    lesion: Lesion,
    pixel_mm: float,
    n_realisations: int = 50,
    n_coils: int = 8,
    snr: float = 30.0,
    same_noise: bool = True,
    seed: int = 0,
) -> LesionTwins:
    """Lesion-present/absent twins of one ``(H, W)`` slice, ``n_realisations`` noise draws each.

    The finding is added to the magnitude, then both images get the same smooth phase and
    coil weighting, so every coil's k-space is consistent. Noise SD follows ``snr`` on the
    lesion-absent image (:func:`recon_engine.simulation.noise_std_for_snr`).
    ``same_noise=True`` gives both twins the same noise in each realisation (paired
    differences isolate the finding); ``False`` draws them independently.
    """
    if n_realisations < 1:
        raise ParameterError(f"n_realisations must be >= 1, got {n_realisations}")
    mag = torch.as_tensor(magnitude).abs().to(torch.float64)
    lesioned, truth = insert_lesion(mag, lesion, pixel_mm)
    h, w = mag.shape
    phi = smooth_phase((1, h, w), seed=seed)[0].to(torch.float64)
    absent = torch.polar(mag, phi).to(torch.complex64)
    present = torch.polar(lesioned, phi).to(torch.complex64)
    maps = coil_sensitivities((h, w), n_coils, "birdcage")
    noise_std = noise_std_for_snr(absent[None], snr)
    generator = torch.Generator().manual_seed(int(seed) + 1)

    def noisy(image: torch.Tensor) -> torch.Tensor:
        clean = fftc(maps * image[None])
        draws = torch.randn((n_realisations, *clean.shape, 2), generator=generator)
        return clean[None] + torch.view_as_complex(draws) * (noise_std / math.sqrt(2))

    state = generator.get_state()
    kspace_absent = noisy(absent)
    if same_noise:
        generator.set_state(state)
    kspace_present = noisy(present)
    return LesionTwins(
        kspace_absent=kspace_absent.to(torch.complex64),
        kspace_present=kspace_present.to(torch.complex64),
        image_absent=absent,
        image_present=present,
        truth=truth,
        sensitivities=maps[None].expand(n_realisations, -1, -1, -1).contiguous(),
        noise_std=noise_std,
    )
