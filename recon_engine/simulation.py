"""Simulated multi-coil acquisitions from magnitude images (for tests, benchmarks, trials).

Coil sensitivities, smooth background phase, complex Gaussian noise at a stated SNR and
rigid in-plane motion between k-space segments, all in torch so a whole volume is
simulated in one batched call (CUDA when the inputs live there).

Noise and SNR (used by every function here): noise is i.i.d. circular complex Gaussian
in each coil's k-space with ``E|n|^2 = noise_std^2`` (each of the real and imaginary
parts has SD ``noise_std / sqrt(2)``). With the orthonormal FFT the coil-image noise has
the same SD, and because the coil maps are sum-of-squares normalised the optimally
combined image ``sum_c conj(S_c) x_c`` also has noise SD ``noise_std``. The SNR is

    SNR = mean(|image| over the object) / noise_std,

where "the object" is every voxel of the volume whose magnitude exceeds 10 % of the
volume maximum (so background air does not dilute the mean).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from recon_engine.fft import fftc
from recon_engine.registry import ParameterError, ReconError

__all__ = [
    "COIL_KINDS",
    "SimulatedData",
    "MotionResult",
    "coil_sensitivities",
    "smooth_phase",
    "object_mask",
    "noise_std_for_snr",
    "simulate_multicoil",
    "simulate_motion",
    "load_volume",
    "load_slices",
]

COIL_KINDS = ("birdcage", "loop")
OBJECT_THRESHOLD = 0.1  # fraction of the maximum that defines "the object" for the SNR


@dataclass
class SimulatedData:
    """A simulated fully sampled multi-coil acquisition.

    kspace: ``(S, C, H, W)`` complex64, fully sampled, noise included.
    sensitivities: ``(S, C, H, W)`` complex64 coil maps (sum-of-squares normalised).
    image: ``(S, H, W)`` complex64 ground truth (magnitude times smooth phase).
    noise_std: complex noise SD per k-space sample (0 for noiseless data).
    """

    kspace: torch.Tensor
    sensitivities: torch.Tensor
    image: torch.Tensor
    noise_std: float


def _grid(shape: tuple[int, int], device: torch.device | str | None) -> tuple:
    """Normalised coordinates ``(y, x)`` in ``[-1, 1)``, centre at index ``n // 2``."""
    h, w = shape
    y = (torch.arange(h, dtype=torch.float64, device=device) - h / 2) / (h / 2)
    x = (torch.arange(w, dtype=torch.float64, device=device) - w / 2) / (w / 2)
    return torch.meshgrid(y, x, indexing="ij")


def _birdcage(shape: tuple[int, int], n_coils: int, radius: float, device) -> torch.Tensor:
    # Same model as sigpy.mri.birdcage_maps (2D): coil c sits at angle 2 pi c / C on a
    # circle of ``radius`` (in half-FOV units); its field falls off as 1 / distance with
    # a phase that follows the angle around the coil.
    y, x = _grid(shape, device)
    c = torch.arange(n_coils, dtype=torch.float64, device=device)[:, None, None]
    angle = c * (2 * math.pi / n_coils)
    x_co = x - radius * torch.cos(angle)
    y_co = y - radius * torch.sin(angle)
    rr = torch.sqrt(x_co**2 + y_co**2)
    phi = torch.atan2(x_co, -y_co) - angle
    return torch.polar(1.0 / rr, phi)


def _loop_field(rho: np.ndarray, z: np.ndarray, a: float) -> tuple[np.ndarray, np.ndarray]:
    """Axial and radial magnetic field of a unit-current circular loop of radius ``a``
    (units of mu0 I / 2 pi) at cylindrical coordinates ``(rho, z)`` about its axis
    (exact Biot-Savart solution with complete elliptic integrals)."""
    from scipy.special import ellipe, ellipk

    q = (a + rho) ** 2 + z**2
    m = 4 * a * rho / q
    k_m, e_m = ellipk(m), ellipe(m)
    d = (a - rho) ** 2 + z**2
    b_axial = (k_m + (a**2 - rho**2 - z**2) / d * e_m) / np.sqrt(q)
    with np.errstate(divide="ignore", invalid="ignore"):
        b_radial = z / (rho * np.sqrt(q)) * (-k_m + (a**2 + rho**2 + z**2) / d * e_m)
    b_radial = np.where(rho > 1e-9, b_radial, 0.0)
    return b_axial, b_radial


def _loops(shape: tuple[int, int], n_coils: int, radius: float, z: float, device) -> torch.Tensor:
    # Circular surface loops evenly spaced on a circle of ``radius`` (half-FOV units)
    # around the FOV, each loop's axis pointing at the centre, in the plane z = ``z``.
    # The receive sensitivity is B1- = Bx - i By of the loop's static field (reciprocity).
    h, w = shape
    y = (np.arange(h) - h / 2) / (h / 2)
    x = (np.arange(w) - w / 2) / (w / 2)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    loop_radius = min(0.5, 0.9 * math.pi * radius / n_coils)
    maps = np.empty((n_coils, h, w), dtype=np.complex128)
    for c in range(n_coils):
        theta = 2 * math.pi * c / n_coils
        n = np.array([-math.cos(theta), -math.sin(theta), 0.0])  # axis, towards the centre
        rel = np.stack(
            [xx - radius * math.cos(theta), yy - radius * math.sin(theta), np.full_like(xx, z)],
            axis=-1,
        )
        axial = rel @ n
        radial_vec = rel - axial[..., None] * n
        rho = np.linalg.norm(radial_vec, axis=-1)
        b_ax, b_rad = _loop_field(rho, axial, loop_radius)
        unit = np.divide(
            radial_vec, rho[..., None], out=np.zeros_like(radial_vec), where=rho[..., None] > 1e-9
        )
        field = b_ax[..., None] * n + b_rad[..., None] * unit
        maps[c] = field[..., 0] - 1j * field[..., 1]
    return torch.from_numpy(maps).to(device)


def coil_sensitivities(
    shape: tuple[int, int],
    n_coils: int = 8,
    kind: str = "birdcage",
    radius: float | None = None,
    z: float = 0.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Smooth receive coil maps ``(C, H, W)`` complex64, sum-of-squares normalised
    (``sqrt(sum_c |S_c|^2) == 1`` at every voxel).

    ``kind="birdcage"``: SigPy's birdcage model (``sigpy.mri.birdcage_maps``), coils on a
    circle of ``radius`` (default 1.5) half-FOVs. ``kind="loop"``: circular surface loops
    on a circle of ``radius`` (default 1.5) half-FOVs facing the centre, sensitivity from
    the exact Biot-Savart field of each loop; ``z`` moves the slice along the bore (in
    half-FOV units), which changes the loop profiles from slice to slice.
    """
    h, w = _check_shape(shape)
    if isinstance(n_coils, bool) or int(n_coils) != n_coils or n_coils < 1:
        raise ParameterError(f"n_coils must be a positive integer, got {n_coils!r}")
    if kind not in COIL_KINDS:
        raise ParameterError(f"unknown coil kind {kind!r}; known: {', '.join(COIL_KINDS)}")
    radius = 1.5 if radius is None else float(radius)
    if radius <= math.sqrt(2):
        raise ParameterError(f"coil radius {radius} must lie outside the FOV (> sqrt(2))")
    if kind == "birdcage":
        maps = _birdcage((h, w), int(n_coils), radius, device)
    else:
        maps = _loops((h, w), int(n_coils), radius, float(z), device)
    maps = maps / torch.sqrt((maps.abs() ** 2).sum(dim=0, keepdim=True))
    return maps.to(torch.complex64)


def smooth_phase(
    shape: tuple[int, ...],
    seed: int = 0,
    max_phase: float = math.pi,
    order: int = 2,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Smooth random phase map (radians) ``shape`` = ``(H, W)`` or ``(S, H, W)``.

    A polynomial of total degree ``order`` in normalised ``(y, x)`` with seeded random
    coefficients (independent per slice), scaled so its largest magnitude is
    ``max_phase``: the slowly varying B0/receive phase of real MR images.
    """
    if len(shape) not in (2, 3):
        raise ParameterError(f"phase shape must be (H, W) or (S, H, W), got {shape!r}")
    n_slices = shape[0] if len(shape) == 3 else 1
    h, w = shape[-2:]
    y, x = _grid((h, w), device)
    terms = [x**i * y**j for i in range(order + 1) for j in range(order + 1 - i)]
    basis = torch.stack(terms)  # (T, H, W)
    g = torch.Generator().manual_seed(int(seed))
    coef = torch.randn(n_slices, len(terms), generator=g, dtype=torch.float64).to(device)
    phase = torch.einsum("st,thw->shw", coef, basis)
    peak = phase.abs().amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    phase = phase / peak * max_phase
    return phase if len(shape) == 3 else phase[0]


def object_mask(magnitude: torch.Tensor) -> torch.Tensor:
    """Voxels belonging to the object: magnitude above 10 % of the maximum."""
    return magnitude > OBJECT_THRESHOLD * magnitude.max()


def noise_std_for_snr(image: torch.Tensor, snr: float) -> float:
    """Complex noise SD giving ``snr`` = mean object magnitude / noise SD (module doc)."""
    if not math.isfinite(snr) or snr <= 0:
        raise ParameterError(f"snr must be a positive number, got {snr}")
    mag = image.abs()
    return float(mag[object_mask(mag)].mean()) / snr


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) != 2 or any(int(n) != n or n < 2 for n in shape):
        raise ParameterError(f"shape must be two integers >= 2 (H, W), got {tuple(shape)!r}")
    return int(shape[0]), int(shape[1])


def _as_volume(image: torch.Tensor | np.ndarray) -> torch.Tensor:
    image = torch.as_tensor(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise ReconError(f"image must be (H, W) or (S, H, W), got shape {tuple(image.shape)}")
    if image.numel() == 0:
        raise ReconError("image is empty")
    if not torch.isfinite(image).all():
        raise ReconError("image contains NaN or infinite values")
    return image


def simulate_multicoil(
    image: torch.Tensor | np.ndarray,
    n_coils: int = 8,
    coil_kind: str = "birdcage",
    snr: float | None = 30.0,
    phase: bool = True,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> SimulatedData:
    """Fully sampled multi-coil k-space from a magnitude image ``(S, H, W)`` or ``(H, W)``.

    The complex ground truth is ``|image| * exp(i phi)`` with a seeded smooth phase
    ``phi`` (:func:`smooth_phase`, zero when ``phase=False``); coil ``c`` sees
    ``S_c * image`` and k-space is its centred orthonormal FFT. ``snr`` (module doc;
    ``None`` = noiseless) sets one complex Gaussian noise SD for the whole volume. The
    same coil maps are used for every slice (loop coils can vary with ``z``, see
    :func:`coil_sensitivities`). Seeded: same inputs and seed give the same data.
    """
    vol = _as_volume(image)
    device = torch.device(device) if device is not None else vol.device
    s, h, w = vol.shape
    if vol.is_complex():
        vol = vol.abs()
    vol = vol.to(device=device, dtype=torch.float32)
    if phase:
        phi = smooth_phase((s, h, w), seed=seed, device=device).to(torch.float32)
        truth = torch.polar(vol.abs(), phi)
    else:
        truth = vol.abs().to(torch.complex64)
    maps = coil_sensitivities((h, w), n_coils, coil_kind, device=device)
    kspace = fftc(maps[None] * truth[:, None])
    noise_std = 0.0
    if snr is not None:
        noise_std = noise_std_for_snr(truth, snr)
        g = torch.Generator().manual_seed(int(seed) + 1)
        noise = torch.randn((*kspace.shape, 2), generator=g, dtype=torch.float32)
        noise = torch.view_as_complex(noise).to(device) * (noise_std / math.sqrt(2))
        kspace = kspace + noise
    return SimulatedData(
        kspace=kspace.to(torch.complex64),
        sensitivities=maps[None].expand(s, -1, -1, -1).contiguous(),
        image=truth.to(torch.complex64),
        noise_std=noise_std,
    )


@dataclass
class MotionResult:
    """k-space of an object that moved rigidly between shots.

    kspace: ``(S, C, H, W)`` complex64 (``C = 1`` without coil maps).
    shot_index: ``(W,)`` int64, the shot that acquired each phase-encode line.
    transforms: ``(n_shots, 3)`` float64 per shot ``(dy_px, dx_px, rotation_deg)``;
        shot 0 is the reference position (all zero).
    """

    kspace: torch.Tensor
    shot_index: torch.Tensor
    transforms: torch.Tensor


def _rigid(image: torch.Tensor, dy: float, dx: float, angle_deg: float) -> torch.Tensor:
    """Rotate ``(S, ...)`` complex images by ``angle_deg`` about the array centre
    (bilinear; positive = counter-clockwise as displayed, i.e. ``torch.rot90(k=1)`` at 90
    degrees; square pixels), then translate by ``(dy, dx)`` pixels exactly (Fourier shift
    along the last two axes)."""
    s, h, w = image.shape[0], image.shape[-2], image.shape[-1]
    flat = image.reshape(-1, 1, h, w)
    if angle_deg:
        t = math.radians(angle_deg)
        # affine_grid works in normalised coords; scale the rotation for non-square FOVs.
        theta = torch.tensor(
            [[math.cos(t), -math.sin(t) * h / w, 0.0], [math.sin(t) * w / h, math.cos(t), 0.0]],
            dtype=torch.float32,
            device=image.device,
        )
        grid = F.affine_grid(
            theta.expand(flat.shape[0], 2, 3), list(flat.shape), align_corners=False
        )
        parts = torch.cat([flat.real, flat.imag], dim=1).float()
        out = F.grid_sample(parts, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        flat = torch.complex(out[:, :1], out[:, 1:])
    rotated = flat.reshape(image.shape)
    if dy or dx:
        ky = torch.fft.fftfreq(h, device=image.device, dtype=torch.float64)[:, None]
        kx = torch.fft.fftfreq(w, device=image.device, dtype=torch.float64)[None, :]
        ramp = torch.exp(-2j * math.pi * (ky * dy + kx * dx)).to(torch.complex64)
        rotated = torch.fft.ifft2(torch.fft.fft2(rotated) * ramp)
    return rotated.reshape(s, *image.shape[1:])


def simulate_motion(
    image: torch.Tensor | np.ndarray,
    n_shots: int,
    max_translation_px: float,
    max_rotation_deg: float,
    seed: int = 0,
    sensitivities: torch.Tensor | None = None,
    ordering: str = "sequential",
) -> MotionResult:
    """k-space of ``image`` ``(S, H, W)`` / ``(H, W)`` moving rigidly in-plane between shots.

    The phase-encode lines (axis ``W``) are split into ``n_shots`` groups
    (``ordering="sequential"``: contiguous blocks, as a linearly ordered segmented
    acquisition; ``"interleaved"``: line ``k`` belongs to shot ``k % n_shots``). Shot 0 is
    the reference position; every later shot draws a seeded uniform translation in
    ``[-max_translation_px, max_translation_px]`` per axis and rotation in
    ``[-max_rotation_deg, max_rotation_deg]``. Each shot's lines come from the k-space of
    the transformed object; with ``sensitivities`` ``(C, H, W)`` or ``(S, C, H, W)`` the
    object moves inside stationary coils. Noise is not added (add it separately).
    """
    vol = _as_volume(image).to(torch.complex64)
    s, h, w = vol.shape
    if isinstance(n_shots, bool) or int(n_shots) != n_shots or not 1 <= n_shots <= w:
        raise ParameterError(f"n_shots must be an integer in [1, {w}], got {n_shots!r}")
    if max_translation_px < 0 or max_rotation_deg < 0:
        raise ParameterError("motion amplitudes must be >= 0")
    if ordering not in ("sequential", "interleaved"):
        raise ParameterError(f"ordering must be 'sequential' or 'interleaved', got {ordering!r}")
    if sensitivities is None:
        maps = torch.ones(1, 1, h, w, dtype=torch.complex64, device=vol.device)
    else:
        maps = torch.as_tensor(sensitivities).to(device=vol.device, dtype=torch.complex64)
        if maps.ndim == 3:
            maps = maps[None]
        if maps.ndim != 4 or maps.shape[-2:] != (h, w) or maps.shape[0] not in (1, s):
            raise ReconError(
                f"sensitivities {tuple(maps.shape)} do not match the image {(s, h, w)}"
            )
    lines = torch.arange(w)
    if ordering == "sequential":
        shot_index = lines * n_shots // w
    else:
        shot_index = lines % n_shots
    rng = np.random.default_rng(int(seed))
    transforms = np.zeros((int(n_shots), 3))
    if n_shots > 1:
        transforms[1:, :2] = rng.uniform(-max_translation_px, max_translation_px, (n_shots - 1, 2))
        transforms[1:, 2] = rng.uniform(-max_rotation_deg, max_rotation_deg, n_shots - 1)
    kspace = torch.zeros(s, maps.shape[1], h, w, dtype=torch.complex64, device=vol.device)
    for shot in range(int(n_shots)):
        dy, dx, angle = transforms[shot]
        moved = _rigid(vol, float(dy), float(dx), float(angle))
        cols = (shot_index == shot).nonzero().squeeze(1).to(vol.device)
        kspace[..., cols] = fftc(maps * moved[:, None])[..., cols]
    return MotionResult(
        kspace=kspace, shot_index=shot_index, transforms=torch.from_numpy(transforms)
    )


def load_volume(path: str | Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """A magnitude volume and its voxel size (mm) from a NIfTI file or a DICOM directory.

    NIfTI volumes are reoriented to RAS (``nibabel.as_closest_canonical``), so axis 2 is
    inferior->superior (axial slices); DICOM series come back as ``(slices, rows, cols)``.
    """
    path = Path(path)
    if path.is_dir():
        from recon_engine.io.dicom import read_dicom_series

        series = read_dicom_series(path)
        return series.volume, series.spacing
    from recon_engine.io.nifti import read_nifti

    return read_nifti(path, canonical=True)


def load_slices(
    path: str | Path,
    n_slices: int,
    size: tuple[int, int] = (256, 256),
    axis: int | None = None,
    spread: float = 0.0,
) -> torch.Tensor:
    """``n_slices`` central slices of a volume, resized to ``size``, as ``(S, H, W)`` float32
    in ``[0, 1]``.

    ``axis`` is the slice axis (default: 2, axial, for NIfTI; 0 for DICOM series). With
    ``spread = 0`` the slices are contiguous around the centre; ``0 < spread <= 1`` spreads
    them evenly over that central fraction of the volume. Axial NIfTI slices are shown
    radiologically (anterior up). Each slice is zero padded to the aspect ratio of
    ``size`` using the voxel size (no anatomical distortion), then resized with
    anti-aliased bilinear interpolation; the stack is scaled by its maximum.
    """
    h, w = _check_shape(size)
    if isinstance(n_slices, bool) or int(n_slices) != n_slices or n_slices < 1:
        raise ParameterError(f"n_slices must be a positive integer, got {n_slices!r}")
    if not 0 <= spread <= 1:
        raise ParameterError(f"spread must be in [0, 1], got {spread}")
    path = Path(path)
    vol, spacing = load_volume(path)
    if vol.ndim != 3:
        raise ReconError(f"{path.name}: expected a 3D volume, got shape {vol.shape}")
    if axis is None:
        axis = 0 if path.is_dir() else 2
    if axis not in (0, 1, 2):
        raise ParameterError(f"axis must be 0, 1 or 2, got {axis}")
    depth = vol.shape[axis]
    if n_slices > depth:
        raise ParameterError(f"{path.name}: {n_slices} slices requested, volume has {depth}")
    centre = depth // 2
    if spread > 0 and n_slices > 1:
        half = spread * (depth - 1) / 2
        idx = np.round(np.linspace(centre - half, centre + half, n_slices)).astype(int)
        idx = np.clip(idx, 0, depth - 1)
    else:
        start = min(max(centre - n_slices // 2, 0), depth - n_slices)
        idx = np.arange(start, start + n_slices)
    slices = np.moveaxis(np.take(vol, idx, axis=axis), axis, 0).astype(np.float32)
    in_plane = [sp for i, sp in enumerate(spacing[:3]) if i != axis]
    if not path.is_dir():
        # RAS voxel axes (x, y) -> display rows = anterior..posterior, cols = right..left
        slices = np.ascontiguousarray(np.flip(np.swapaxes(slices, 1, 2), axis=1))
        in_plane = in_plane[::-1]
    slices = np.nan_to_num(slices, nan=0.0).clip(min=0)
    t = torch.from_numpy(slices)
    # pad to the target aspect ratio in physical units
    rows_mm, cols_mm = t.shape[1] * in_plane[0], t.shape[2] * in_plane[1]
    target = h / w
    if rows_mm / cols_mm < target:
        rows = round(cols_mm * target / in_plane[0])
        pad = rows - t.shape[1]
        t = F.pad(t, (0, 0, pad // 2, pad - pad // 2))
    else:
        cols = round(rows_mm / target / in_plane[1])
        pad = cols - t.shape[2]
        t = F.pad(t, (pad // 2, pad - pad // 2))
    t = F.interpolate(
        t[:, None], size=(h, w), mode="bilinear", antialias=True, align_corners=False
    )[:, 0]
    t = t.clamp_min(0)
    peak = float(t.max())
    if peak <= 0:
        raise ReconError(f"{path.name}: the selected slices are empty (all zero)")
    return (t / peak).to(torch.float32)


def simulate_fastmri_file(
    source: str | Path,
    output: str | Path,
    n_slices: int = 20,
    matrix: tuple[int, int] = (256, 256),
    n_coils: int = 8,
    coil_kind: str = "birdcage",
    snr: float | None = 30.0,
    spread: float = 0.0,
    fov_mm: tuple[float, float] = (220.0, 220.0),
    slice_thickness_mm: float = 3.0,
    rss_crop: tuple[int, int] | None = None,
    acquisition: str = "SIMULATED",
    phase: bool = True,
    seed: int = 0,
) -> SimulatedData:
    """Simulate a fully sampled fastMRI raw file from a magnitude volume (NIfTI or DICOM).

    Writes ``kspace`` (S, C, H, W), an ISMRMRD header stating the simulation, and
    ``reconstruction_rss`` (the fully sampled RSS reference, optionally centre-cropped
    to ``rss_crop`` as fastMRI stores 320 x 320). Returns the simulation.
    """
    import hashlib
    import json

    from recon_engine.fft import ifftc, rss
    from recon_engine.io import make_ismrmrd_header, write_fastmri
    from recon_engine.pipeline import center_crop

    source = Path(source)
    images = load_slices(source, n_slices, size=tuple(matrix), spread=spread)
    data = simulate_multicoil(
        images, n_coils=n_coils, coil_kind=coil_kind, snr=snr, seed=seed, phase=phase
    )
    reference = rss(ifftc(data.kspace), coil_dim=1).numpy()
    if rss_crop is not None:
        reference = np.ascontiguousarray(center_crop(reference, tuple(rss_crop)))
    header = make_ismrmrd_header(
        tuple(matrix),
        n_coils,
        n_slices,
        fov_mm=tuple(fov_mm),
        slice_thickness_mm=slice_thickness_mm,
        protocol=f"simulated from {source.name}",
    )
    simulation = {
        "source": source.name,
        "coils": n_coils,
        "coil_kind": coil_kind,
        "snr": snr,
        "seed": seed,
        "noise_std": data.noise_std,
        "phase": phase,
    }
    attrs = {
        "acquisition": acquisition,
        "patient_id": hashlib.sha256(source.name.encode()).hexdigest()[:32],
        "simulation": json.dumps(simulation),
    }
    write_fastmri(output, data.kspace, header=header, reconstruction_rss=reference, attrs=attrs)
    return data
