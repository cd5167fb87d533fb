"""Cartesian undersampling masks (1D along phase encode ``W``, 2D over ``(H, W)``).

Every generator returns a :class:`MaskResult` whose ``mask`` is a float32 0/1 tensor
broadcastable to fastMRI-layout k-space ``(S, C, H, W)``: ``(1, 1, 1, W)`` for 1D masks
and ``(1, 1, H, W)`` for 2D masks (3D Cartesian / CAIPIRINHA, where ``H`` is the second
phase-encode axis ``kz``). The fully sampled calibration (ACS) block is reported
separately in ``acs_mask`` so calibrating methods (GRAPPA, ESPIRiT) find it without
guessing. Random masks are reproducible: the same seed gives the same mask.

``random_mask`` and ``equispaced_mask`` reproduce fastMRI's ``RandomMaskFunc`` and
``EquispacedMaskFractionFunc`` sample for sample (same RandomState draws), so masks
match those of the fastMRI challenge for the same seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from recon_engine.registry import ParameterError

__all__ = [
    "MaskResult",
    "PATTERNS",
    "uniform_mask",
    "random_mask",
    "equispaced_mask",
    "variable_density_mask",
    "poisson_disc_mask",
    "caipirinha_mask",
    "sms_caipi_phases",
    "make_mask",
    "center_block",
    "infer_mask",
    "acs_region",
]

PATTERNS = ("uniform", "random", "equispaced", "variable_density", "poisson", "caipirinha")


@dataclass
class MaskResult:
    """A sampling mask and what it achieves.

    mask: float32 0/1, ``(1, 1, 1, W)`` (1D) or ``(1, 1, H, W)`` (2D).
    acs_mask: float32 0/1 of the fully sampled calibration block, same layout.
    pattern: generator name (one of :data:`PATTERNS`).
    acceleration: the nominal (requested) acceleration factor.
    effective_acceleration: total samples / acquired samples of the actual mask.
    seed: the random seed used, ``None`` for deterministic patterns.
    """

    mask: torch.Tensor
    acs_mask: torch.Tensor
    pattern: str
    acceleration: float
    effective_acceleration: float
    seed: int | None

    @property
    def is_2d(self) -> bool:
        """True for masks over ``(H, W)`` (both axes phase encoded)."""
        return self.mask.shape[-2] > 1

    @property
    def n_acs(self) -> int:
        """Number of ACS lines (1D) or ACS samples (2D)."""
        return int(self.acs_mask.sum())


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    if len(shape) != 2 or any(int(n) != n or n < 1 for n in shape):
        raise ParameterError(f"mask shape must be two positive integers (H, W), got {shape!r}")
    return int(shape[0]), int(shape[1])


def _check_acceleration(acceleration: float, integer: bool = False) -> None:
    if isinstance(acceleration, bool) or not isinstance(acceleration, int | float):
        raise ParameterError(f"acceleration must be a number, got {acceleration!r}")
    if not math.isfinite(acceleration) or acceleration < 1:
        raise ParameterError(f"acceleration must be >= 1, got {acceleration}")
    if integer and int(acceleration) != acceleration:
        raise ParameterError(f"this pattern needs an integer acceleration, got {acceleration}")


def _check_acs(n_acs: int, n: int, axis: str) -> None:
    if int(n_acs) != n_acs or n_acs < 0:
        raise ParameterError(f"ACS size along {axis} must be a non-negative integer, got {n_acs}")
    if n_acs > n:
        raise ParameterError(f"ACS size {n_acs} is larger than the matrix ({n}) along {axis}")


def center_block(n: int, n_center: int) -> slice:
    """Indices of ``n_center`` central samples of ``n`` (fastMRI's convention: the block
    starts at ``(n - n_center + 1) // 2``, so it covers the DC sample ``n // 2``)."""
    start = (n - n_center + 1) // 2
    return slice(start, start + n_center)


def _result_1d(
    line: np.ndarray,
    acs_line: np.ndarray,
    pattern: str,
    acceleration: float,
    seed: int | None,
) -> MaskResult:
    line = np.asarray(line, dtype=np.float32)
    sampled = float(line.sum())
    return MaskResult(
        mask=torch.from_numpy(line.copy()).reshape(1, 1, 1, -1),
        acs_mask=torch.from_numpy(np.asarray(acs_line, dtype=np.float32)).reshape(1, 1, 1, -1),
        pattern=pattern,
        acceleration=float(acceleration),
        effective_acceleration=line.size / sampled if sampled else math.inf,
        seed=seed,
    )


def _result_2d(
    mask: np.ndarray,
    acs: np.ndarray,
    pattern: str,
    acceleration: float,
    seed: int | None,
) -> MaskResult:
    mask = np.asarray(mask, dtype=np.float32)
    sampled = float(mask.sum())
    h, w = mask.shape
    return MaskResult(
        mask=torch.from_numpy(mask.copy()).reshape(1, 1, h, w),
        acs_mask=torch.from_numpy(np.asarray(acs, dtype=np.float32)).reshape(1, 1, h, w),
        pattern=pattern,
        acceleration=float(acceleration),
        effective_acceleration=mask.size / sampled if sampled else math.inf,
        seed=seed,
    )


def uniform_mask(
    shape: tuple[int, int], acceleration: int, acs_lines: int = 24, offset: int = 0
) -> MaskResult:
    """Regular 1D undersampling: every ``acceleration``-th line along ``W`` starting at
    ``offset``, plus ``acs_lines`` fully sampled central lines (GRAPPA/SENSE style)."""
    _, w = _check_shape(shape)
    _check_acceleration(acceleration, integer=True)
    _check_acs(acs_lines, w, "W")
    r = int(acceleration)
    if int(offset) != offset or not 0 <= offset < r:
        raise ParameterError(f"offset must be an integer in [0, {r}), got {offset}")
    line = np.zeros(w, dtype=np.float32)
    line[int(offset) :: r] = 1
    acs = np.zeros(w, dtype=np.float32)
    acs[center_block(w, acs_lines)] = 1
    return _result_1d(np.maximum(line, acs), acs, "uniform", r, None)


def _fastmri_center(w: int, center_fraction: float) -> tuple[int, np.ndarray]:
    if not 0 <= center_fraction <= 1:
        raise ParameterError(f"center_fraction must be in [0, 1], got {center_fraction}")
    n_low = round(w * center_fraction)
    center = np.zeros(w, dtype=np.float32)
    center[center_block(w, n_low)] = 1
    return n_low, center


def _fastmri_rng(seed: int) -> np.random.RandomState:
    """A RandomState in the state fastMRI's ``MaskFunc.__call__(shape, seed=seed)`` leaves
    it in before drawing the acceleration mask (seeded, then one ``randint`` for the
    choice among a single centre-fraction/acceleration pair)."""
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ParameterError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.RandomState(int(seed))
    rng.randint(1)
    return rng


def random_mask(
    shape: tuple[int, int], acceleration: float, center_fraction: float = 0.08, seed: int = 0
) -> MaskResult:
    """fastMRI ``RandomMaskFunc``: ``round(W * center_fraction)`` central lines fully
    sampled, every other line kept independently with probability
    ``(W / acceleration - N_low) / (W - N_low)``, so ``W / acceleration`` lines on average
    (the exact count varies with the seed; see ``effective_acceleration``)."""
    _, w = _check_shape(shape)
    _check_acceleration(acceleration)
    n_low, center = _fastmri_center(w, center_fraction)
    if n_low >= w:
        prob = 1.0
    else:
        prob = (w / acceleration - n_low) / (w - n_low)
    if prob < 0:
        raise ParameterError(
            f"acceleration {acceleration} is impossible with center_fraction {center_fraction}: "
            f"the {n_low} central lines alone exceed W / acceleration = {w / acceleration:.1f}"
        )
    rng = _fastmri_rng(seed)
    accel = (rng.uniform(size=w) < prob).astype(np.float32)
    return _result_1d(np.maximum(center, accel), center, "random", acceleration, int(seed))


def equispaced_mask(
    shape: tuple[int, int], acceleration: float, center_fraction: float = 0.08, seed: int = 0
) -> MaskResult:
    """fastMRI ``EquispacedMaskFractionFunc``: the central ``round(W * center_fraction)``
    lines plus lines at the (non-integer, rounded) spacing
    ``R_adj = R (N_low - W) / (N_low R - W)`` chosen so the total is about ``W / R``,
    starting at a random offset in ``[0, round(R_adj))`` drawn from ``seed``."""
    _, w = _check_shape(shape)
    _check_acceleration(acceleration)
    n_low, center = _fastmri_center(w, center_fraction)
    if acceleration == 1 or n_low == w:
        line = np.ones(w, dtype=np.float32)
        return _result_1d(line, center, "equispaced", acceleration, int(seed))
    denom = n_low * acceleration - w
    if denom >= 0:
        raise ParameterError(
            f"acceleration {acceleration} is impossible with center_fraction {center_fraction}: "
            f"the {n_low} central lines alone reach W / acceleration = {w / acceleration:.1f}"
        )
    adjusted = acceleration * (n_low - w) / denom
    rng = _fastmri_rng(seed)
    offset = rng.randint(0, high=round(adjusted))
    accel = np.zeros(w, dtype=np.float32)
    samples = np.around(np.arange(offset, w - 1, adjusted)).astype(np.uint64)
    accel[samples] = 1
    return _result_1d(np.maximum(center, accel), center, "equispaced", acceleration, int(seed))


def variable_density_mask(
    shape: tuple[int, int],
    acceleration: float,
    acs_lines: int = 24,
    seed: int = 0,
    power: float = 2.0,
) -> MaskResult:
    """Random 1D variable-density mask: ``acs_lines`` central lines plus exactly
    ``round(W / acceleration) - acs_lines`` further lines drawn without replacement with
    probability proportional to ``(1 - |k| / k_max) ** power`` (``k`` the distance from
    DC), so low frequencies are denser. The line count hits ``W / acceleration`` exactly
    (up to rounding), unlike :func:`random_mask`."""
    _, w = _check_shape(shape)
    _check_acceleration(acceleration)
    _check_acs(acs_lines, w, "W")
    if not math.isfinite(power) or power < 0:
        raise ParameterError(f"power must be a finite number >= 0, got {power}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ParameterError(f"seed must be a non-negative integer, got {seed!r}")
    target = round(w / acceleration)
    if target < acs_lines:
        raise ParameterError(
            f"acceleration {acceleration} is impossible with {acs_lines} ACS lines: "
            f"W / acceleration = {w / acceleration:.1f} lines in total"
        )
    acs = np.zeros(w, dtype=np.float32)
    acs[center_block(w, acs_lines)] = 1
    candidates = np.flatnonzero(acs == 0)
    n_extra = target - acs_lines
    line = acs.copy()
    if n_extra > 0:
        k = np.abs(candidates - w // 2).astype(np.float64)
        weight = (1.0 - k / (k.max() + 1.0)) ** power
        rng = np.random.default_rng(int(seed))
        chosen = rng.choice(candidates, size=n_extra, replace=False, p=weight / weight.sum())
        line[chosen] = 1
    return _result_1d(line, acs, "variable_density", acceleration, int(seed))


def _calib(calib: tuple[int, int] | int, h: int, w: int) -> tuple[int, int]:
    if isinstance(calib, int):
        calib = (calib, calib)
    if len(calib) != 2:
        raise ParameterError(f"calib must be (H, W) sizes, got {calib!r}")
    _check_acs(calib[0], h, "H")
    _check_acs(calib[1], w, "W")
    return int(calib[0]), int(calib[1])


def _acs_2d(h: int, w: int, calib: tuple[int, int]) -> np.ndarray:
    acs = np.zeros((h, w), dtype=np.float32)
    acs[center_block(h, calib[0]), center_block(w, calib[1])] = 1
    return acs


def poisson_disc_mask(
    shape: tuple[int, int],
    acceleration: float,
    calib: tuple[int, int] = (24, 24),
    seed: int = 0,
    crop_corner: bool = True,
    tol: float = 0.1,
) -> MaskResult:
    """Variable-density Poisson-disc 2D mask over ``(H, W)`` (= ``(kz, ky)``) with a fully
    sampled ``calib`` block, from :func:`sigpy.mri.poisson` (Bridson's algorithm with the
    density slope bisected until the acceleration is within ``tol`` of the target).
    ``crop_corner`` leaves the k-space corners outside the inscribed ellipse unsampled."""
    h, w = _check_shape(shape)
    _check_acceleration(acceleration)
    ch, cw = _calib(calib, h, w)
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ParameterError(f"seed must be a non-negative integer, got {seed!r}")
    acs = _acs_2d(h, w, (ch, cw))
    if acceleration == 1:
        return _result_2d(np.ones((h, w)), acs, "poisson", 1.0, int(seed))
    if h * w / max(acs.sum(), 1) < acceleration:
        raise ParameterError(
            f"acceleration {acceleration} is impossible with a {ch}x{cw} calibration block "
            f"in a {h}x{w} matrix"
        )
    from sigpy.mri import poisson

    try:
        mask = poisson(
            (h, w),
            acceleration,
            calib=(ch, cw),
            dtype=np.float32,
            crop_corner=crop_corner,
            seed=int(seed),
            tol=tol,
        )
    except ValueError as exc:
        raise ParameterError(f"Poisson-disc sampling: {exc}") from None
    mask = np.maximum(np.real(mask).astype(np.float32), acs)
    return _result_2d(mask, acs, "poisson", acceleration, int(seed))


def caipirinha_mask(
    shape: tuple[int, int],
    ry: int,
    rz: int,
    shift: int = 1,
    calib: tuple[int, int] = (24, 24),
) -> MaskResult:
    """2D CAIPIRINHA lattice over ``(H, W)`` = ``(kz, ky)``: every ``ry``-th ky line is
    acquired, and on the ``m``-th acquired ky line the kz samples are every ``rz``-th
    starting at ``(m * shift) % rz``, i.e. sample ``(kz, ky)`` is kept when
    ``ky % ry == 0`` and ``(kz - shift * ky // ry) % rz == 0``. ``shift = 0`` is the plain
    ``ry x rz`` grid. A central ``calib`` block is fully sampled. Nominal acceleration
    is ``ry * rz``."""
    h, w = _check_shape(shape)
    for name, r in (("ry", ry), ("rz", rz)):
        if isinstance(r, bool) or int(r) != r or r < 1:
            raise ParameterError(f"{name} must be an integer >= 1, got {r!r}")
    if ry > w or rz > h:
        raise ParameterError(f"ry={ry}, rz={rz} exceed the {h}x{w} matrix")
    if int(shift) != shift or shift < 0:
        raise ParameterError(f"shift must be a non-negative integer, got {shift!r}")
    ch, cw = _calib(calib, h, w)
    kz = np.arange(h)[:, None]
    ky = np.arange(w)[None, :]
    lattice = (ky % ry == 0) & ((kz - int(shift) * (ky // ry)) % rz == 0)
    acs = _acs_2d(h, w, (ch, cw))
    mask = np.maximum(lattice.astype(np.float32), acs)
    return _result_2d(mask, acs, "caipirinha", float(ry * rz), None)


def sms_caipi_phases(
    multiband: int, n_pe: int, fov_shift: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Blipped-CAIPI phase modulation ``(MB, n_pe)`` complex64 for SMS acquisitions.

    Slice ``j`` of a multiband group is shifted by ``j * FOV / fov_shift`` along phase
    encode, so line ``k`` of its k-space is multiplied by
    ``exp(-2 pi i (k - n_pe // 2) j / fov_shift)`` (centred FFT convention; an exact
    circular shift of ``j * n_pe / fov_shift`` pixels). ``fov_shift = 1`` means no shift.
    """
    for name, v in (("multiband", multiband), ("n_pe", n_pe), ("fov_shift", fov_shift)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ParameterError(f"{name} must be a positive integer, got {v!r}")
    k = torch.arange(int(n_pe), dtype=torch.float64, device=device) - n_pe // 2
    j = torch.arange(int(multiband), dtype=torch.float64, device=device)[:, None]
    return torch.exp(-2j * torch.pi * k[None, :] * j / fov_shift).to(torch.complex64)


def _default_caipi_factors(acceleration: float) -> tuple[int, int]:
    r = int(acceleration)
    rz = max(d for d in range(1, int(math.isqrt(r)) + 1) if r % d == 0)
    return r // rz, rz


def make_mask(
    pattern: str,
    shape: tuple[int, int],
    acceleration: float,
    seed: int = 0,
    **kw: Any,
) -> MaskResult:
    """Build a mask by pattern name (one of :data:`PATTERNS`).

    ``center_fraction`` is accepted by every pattern: it sets the fastMRI centre fraction
    (random, equispaced), ``acs_lines = round(W * center_fraction)`` (uniform, variable
    density) or the calibration block ``(round(H * cf), round(W * cf))`` (poisson,
    caipirinha) unless ``acs_lines`` / ``calib`` are given. ``caipirinha`` takes ``ry``,
    ``rz`` and ``shift``; by default ``acceleration`` is factored as evenly as possible
    (``ry >= rz``) with ``shift = 1`` when ``rz > 1``.
    """
    if pattern not in PATTERNS:
        raise ParameterError(f"unknown sampling pattern {pattern!r}; known: {', '.join(PATTERNS)}")
    h, w = _check_shape(shape)
    _check_acceleration(acceleration)
    result = _make_mask(pattern, (h, w), acceleration, seed, **kw)
    _check_feasible(result, (h, w))
    return result


def _check_feasible(result: MaskResult, shape: tuple[int, int]) -> None:
    """Refuse an acceleration the matrix cannot hold: ``R`` below half the lines (1D) or
    points (2D), and at least 2 sampled ones outside the ACS in the mask made (``R = 64``
    on 128 lines is all ACS, or nothing)."""
    n = shape[0] * shape[1] if result.is_2d else shape[1]
    unit = "points" if result.is_2d else "lines"
    r = result.acceleration
    outside = float(((result.mask > 0) & (result.acs_mask == 0)).sum())
    if r >= n / 2 or outside < 2:
        raise ParameterError(
            f"R={r:g} is not feasible on {n} phase-encode {unit} with {result.n_acs} ACS "
            f"{unit}: it leaves {outside:.0f} sampled {unit} outside the ACS (at least 2 are "
            "needed, and R below half the lines); lower R or the ACS size"
        )


def _make_mask(
    pattern: str,
    shape: tuple[int, int],
    acceleration: float,
    seed: int = 0,
    **kw: Any,
) -> MaskResult:
    h, w = shape
    kw = dict(kw)
    cf = kw.pop("center_fraction", None)

    def take(*names: str) -> dict:
        out = {n: kw.pop(n) for n in names if n in kw}
        if kw:
            raise ParameterError(
                f"pattern {pattern!r} does not take parameter(s) {', '.join(sorted(kw))}"
            )
        return out

    if pattern in ("random", "equispaced"):
        fn = random_mask if pattern == "random" else equispaced_mask
        extra = {} if cf is None else {"center_fraction": float(cf)}
        take()
        return fn((h, w), acceleration, seed=seed, **extra)
    if pattern in ("uniform", "variable_density"):
        extra = take("acs_lines", "offset", "power")
        if cf is not None and "acs_lines" not in extra:
            extra["acs_lines"] = round(w * float(cf))
        if pattern == "uniform":
            if "power" in extra:
                raise ParameterError("pattern 'uniform' does not take parameter power")
            return uniform_mask((h, w), acceleration, **extra)
        if "offset" in extra:
            raise ParameterError("pattern 'variable_density' does not take parameter offset")
        return variable_density_mask((h, w), acceleration, seed=seed, **extra)
    calib_default = None if cf is None else (round(h * float(cf)), round(w * float(cf)))
    if pattern == "poisson":
        extra = take("calib", "crop_corner", "tol")
        if calib_default is not None and "calib" not in extra:
            extra["calib"] = calib_default
        return poisson_disc_mask((h, w), acceleration, seed=seed, **extra)
    extra = take("ry", "rz", "shift", "calib")
    if "ry" not in extra and "rz" not in extra:
        _check_acceleration(acceleration, integer=True)
        extra["ry"], extra["rz"] = _default_caipi_factors(acceleration)
    elif "ry" not in extra or "rz" not in extra:
        raise ParameterError("caipirinha needs both ry and rz (or neither)")
    elif extra["ry"] * extra["rz"] != acceleration:
        raise ParameterError(
            f"caipirinha ry*rz = {extra['ry'] * extra['rz']} does not equal "
            f"acceleration {acceleration}"
        )
    extra.setdefault("shift", 1 if extra["rz"] > 1 else 0)
    if calib_default is not None and "calib" not in extra:
        extra["calib"] = calib_default
    return caipirinha_mask((h, w), **extra)


def infer_mask(kspace: torch.Tensor) -> torch.Tensor:
    """The sampling mask implied by the zeros of ``(S, C, H, W)`` k-space: a sample counts
    as acquired when any coil has a non-zero value there.

    Returns ``(1, 1, 1, W)`` when every phase-encode column is either fully acquired or
    empty (1D sampling), else ``(1, 1, H, W)``; a leading ``S`` replaces the first 1 when
    slices differ.
    """
    if kspace.ndim != 4:
        raise ParameterError(f"k-space must be (S, C, H, W), got shape {tuple(kspace.shape)}")
    sampled = (kspace != 0).any(dim=1)  # (S, H, W)
    if not bool(sampled.any()):
        raise ParameterError("k-space is all zero: nothing was acquired")
    columns = sampled.any(dim=1)  # (S, W)
    one_d = bool(torch.all(sampled == columns[:, None, :]))
    m = columns[:, None, None, :] if one_d else sampled[:, None]
    if bool(torch.all(m == m[:1])):
        m = m[:1]
    return m.to(torch.float32)


def _acs_1d(line: np.ndarray) -> np.ndarray:
    w = line.size
    acs = np.zeros(w, dtype=np.float32)
    c = w // 2
    if not line[c]:
        return acs
    lo, hi = c, c
    while lo > 0 and line[lo - 1]:
        lo -= 1
    while hi < w - 1 and line[hi + 1]:
        hi += 1
    acs[lo : hi + 1] = 1
    return acs


def _acs_2d_region(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    acs = np.zeros((h, w), dtype=np.float32)
    r0, c0 = h // 2, w // 2
    if not mask[r0, c0]:
        return acs
    r1, c1 = r0 + 1, c0 + 1  # half-open rectangle [r0, r1) x [c0, c1)
    grown = True
    while grown:  # grow the fully sampled rectangle one side at a time
        grown = False
        if r0 > 0 and mask[r0 - 1, c0:c1].all():
            r0, grown = r0 - 1, True
        if r1 < h and mask[r1, c0:c1].all():
            r1, grown = r1 + 1, True
        if c0 > 0 and mask[r0:r1, c0 - 1].all():
            c0, grown = c0 - 1, True
        if c1 < w and mask[r0:r1, c1].all():
            c1, grown = c1 + 1, True
    acs[r0:r1, c0:c1] = 1
    return acs


def acs_region(mask: torch.Tensor) -> torch.Tensor:
    """The contiguous fully sampled centre of ``mask`` (same layout as ``mask``).

    1D masks ``(S|1, 1, 1, W)``: the run of acquired lines through ``W // 2``. 2D masks
    ``(S|1, 1, H, W)``: the fully sampled rectangle grown around ``(H // 2, W // 2)``.
    All zero when the centre itself was not acquired.
    """
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ParameterError(f"mask must be (S|1, 1, H|1, W), got shape {tuple(mask.shape)}")
    m = mask.detach().cpu().numpy() > 0
    out = np.zeros(m.shape, dtype=np.float32)
    for i in range(m.shape[0]):
        if m.shape[2] == 1:
            out[i, 0, 0] = _acs_1d(m[i, 0, 0])
        else:
            out[i, 0] = _acs_2d_region(m[i, 0])
    return torch.from_numpy(out)
