"""GRAPPA (Griswold et al. 2002) in torch, batched over slices, on CPU or CUDA.

Why hand-written: pygrappa is single-slice NumPy/Cython on the CPU and BART has no
GRAPPA; the platform needs a torch version that batches slices and runs on a GPU.

Axes follow the engine convention: k-space is ``(S, C, H, W)`` = (slices, coils,
readout kx, phase encode ky) and 1D undersampling is along ``W``. Two calibration
geometries are supported, chosen from the mask:

* **1D masks** (the mask is the same on every readout row, the usual Cartesian case).
  A kernel is ``kernel_ry`` *acquired* phase-encode lines by ``kernel_rx`` readout
  points (the "4x5" / "2x5" kernels of the literature are ``kernel_ry x kernel_rx``).
  For every missing line the sources are the ``ceil(ry/2)`` nearest acquired lines
  before it and the ``floor(ry/2)`` nearest after it. Missing lines are grouped by the
  offsets of those sources (their *geometry*) and one kernel is calibrated per
  geometry. For a uniform mask this is the classic GRAPPA with one kernel per
  missing-line offset (R-1 kernels, plus variants next to the ACS block and the
  k-space edges); for non-uniform masks (fastMRI "random"/"equispaced") it is the
  pattern-aware scheme of pygrappa's ``cgrappa``/``mdgrappa`` and Lustig's
  kernel look-up table. Each kernel is calibrated on every ACS position where it
  fits, so kernels with a short span use more calibration rows.
* **2D masks** (both ky and kz = ``H`` and ``W`` undersampled, 3D-style data,
  CAIPIRINHA lattices): the sources of a missing point are the acquired points in a
  ``window_h x window_w`` grid window centred on it, exactly as pygrappa's
  ``mdgrappa``; points are grouped by that window pattern.

Calibration solves the Tikhonov-regularised normal equations
``(A^H A + lambda_eff I) w = A^H b`` for each geometry, with
``lambda_eff = lamda * ||A^H A||_F / n`` (``n`` = number of source values): the same
scaling as pygrappa, so ``lamda`` is a dimensionless fraction of the mean Gram
diagonal scale (0.01 by default, as in pygrappa). Acquired samples are always kept
unchanged (data consistency).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from recon_engine.fft import ifftc, rss
from recon_engine.linalg import solve_hpd
from recon_engine.registry import ParameterError, ReconError

__all__ = [
    "GrappaResult",
    "grappa_kspace",
    "find_acs",
    "coil_combine",
    "validate_kspace",
    "normalise_mask",
]

_MEMORY_BUDGET = 64 * 2**20  # bytes of calibration tables per chunk of slices
# Kernel application gathers source lines in blocks of this many bytes: measured on 2 CPU
# cores, 16 MiB blocks (cache friendly) ran a 20-slice batch 2x faster than 256 MiB ones.
_APPLY_BLOCK = 16 * 2**20
# A kernel is only calibrated where the ACS gives at least this many calibration rows per
# unknown; below that the least-squares fit follows the noise (measured: 4-line kernels
# on a 16-line ACS with ~2 rows per unknown were worse than zero filling).
_ROWS_PER_UNKNOWN = 3


@dataclass
class GrappaResult:
    """GRAPPA output: the completed k-space ``(S, C, H, W)`` and facts about the run."""

    kspace: torch.Tensor
    info: dict = field(default_factory=dict)


def validate_kspace(kspace: torch.Tensor, name: str = "kspace") -> None:
    """Raise :class:`ReconError` unless ``kspace`` is a finite complex ``(S, C, H, W)`` tensor."""
    if not isinstance(kspace, torch.Tensor):
        raise ReconError(f"{name} must be a torch.Tensor, got {type(kspace).__name__}")
    if kspace.ndim != 4:
        raise ReconError(
            f"{name} must have shape (S, C, H, W) (slices, coils, readout, phase encode); "
            f"got {tuple(kspace.shape)}"
        )
    if not kspace.is_complex():
        raise ReconError(f"{name} must be complex, got dtype {kspace.dtype}")
    if min(kspace.shape) == 0:
        raise ReconError(f"{name} is empty: shape {tuple(kspace.shape)}")
    if not bool(torch.isfinite(torch.view_as_real(kspace)).all()):
        raise ReconError(f"{name} contains NaN or infinite values")


def normalise_mask(mask: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Return ``mask`` as a bool tensor ``(S or 1, H or 1, W)`` checked against ``shape``.

    ``mask`` must be broadcastable to the k-space ``shape`` ``(S, C, H, W)`` with one
    entry along the coil axis, and contain only 0 and 1.
    """
    s, _, h, w = shape
    if not isinstance(mask, torch.Tensor):
        mask = torch.as_tensor(mask)
    if mask.ndim != 4:
        raise ReconError(
            f"mask must have 4 dims broadcastable to (S, C, H, W) = {tuple(shape)}, "
            f"got shape {tuple(mask.shape)}"
        )
    ms, mc, mh, mw = mask.shape
    if mc != 1 or ms not in (1, s) or mh not in (1, h) or mw != w:
        raise ReconError(
            f"mask shape {tuple(mask.shape)} does not match k-space {tuple(shape)}; "
            "expected (1 or S, 1, 1 or H, W)"
        )
    maskf = mask.detach().to("cpu")
    if maskf.is_complex():
        raise ReconError("mask must be real 0/1, got a complex tensor")
    maskf = maskf.to(torch.float32)
    if not bool(((maskf == 0) | (maskf == 1)).all()):
        raise ReconError("mask must contain only 0 and 1")
    return maskf[:, 0].bool()


def _longest_run_around_centre(line: np.ndarray) -> tuple[int, int]:
    """``[start, stop)`` of the run of True containing the centre, else the longest run."""
    n = line.size
    centre = n // 2
    padded = np.concatenate([[False], line, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    starts, stops = edges[0::2], edges[1::2]
    if starts.size == 0:
        return 0, 0
    hit = np.flatnonzero((starts <= centre) & (stops > centre))
    pick = int(hit[0]) if hit.size else int(np.argmax(stops - starts))
    return int(starts[pick]), int(stops[pick])


def find_acs(mask2d: torch.Tensor, acs_mask: torch.Tensor | None = None) -> tuple[slice, slice]:
    """Fully sampled calibration box ``(rows, cols)`` in a single-slice ``(H, W)`` mask.

    With ``acs_mask`` the box is its bounding box (which must be fully sampled).
    Otherwise, for a 1D mask it is all readout rows by the run of consecutive acquired
    lines through the centre; for a 2D mask it is the largest centred rectangle of
    acquired points, grown from the centre as pygrappa's ``find_acs`` does.
    """
    m = mask2d.cpu().numpy().astype(bool)
    h, w = m.shape
    if acs_mask is not None:
        a = acs_mask.detach().cpu().float().numpy().reshape(-1, *acs_mask.shape[-2:])[0] > 0
        a = np.broadcast_to(a, (h, w))
        if not a.any():
            raise ReconError("acs_mask is empty: no calibration region")
        rows = np.flatnonzero(a.any(axis=1))
        cols = np.flatnonzero(a.any(axis=0))
        box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
        if not m[box].all():
            raise ReconError("acs_mask marks points that the sampling mask does not acquire")
        return box
    if (m == m[:1]).all():
        c0, c1 = _longest_run_around_centre(m[0])
        if c1 == c0:
            raise ReconError("mask has no acquired lines: no calibration (ACS) region")
        return slice(0, h), slice(c0, c1)
    ch, cw = h // 2, w // 2
    if not m[ch, cw]:
        raise ReconError("2D mask does not sample the k-space centre: no calibration region")
    r0, r1, c0, c1 = ch, ch + 1, cw, cw + 1
    grew = True
    while grew:
        grew = False
        if r0 > 0 and m[r0 - 1, c0:c1].all():
            r0, grew = r0 - 1, True
        if r1 < h and m[r1, c0:c1].all():
            r1, grew = r1 + 1, True
        if c0 > 0 and m[r0:r1, c0 - 1].all():
            c0, grew = c0 - 1, True
        if c1 < w and m[r0:r1, c1].all():
            c1, grew = c1 + 1, True
    return slice(r0, r1), slice(c0, c1)


def _typical_gap(line: np.ndarray, acs: tuple[int, int]) -> int:
    """Most common spacing of acquired lines outside the ACS block (the nominal R)."""
    idx = np.flatnonzero(line)
    outside = idx[(idx < acs[0]) | (idx >= acs[1])]
    gaps = np.diff(outside)
    gaps = gaps[gaps > 0]
    if gaps.size == 0:
        return 1
    values, counts = np.unique(gaps, return_counts=True)
    return int(values[np.argmax(counts)])


def _solve(gram: torch.Tensor, rhs: torch.Tensor, active: torch.Tensor, lamda: float) -> tuple:
    """Solve masked, Tikhonov-regularised normal equations for a batch of geometries.

    gram: ``(S, G, n, n)`` complex128, rhs ``(S, G, n, C)``, active ``(G, n)`` bool. Inactive
    sources get an identity row and zero right-hand side, so their weights are exactly 0.
    Returns the weights ``(S, G, n, C)`` and the mean ``lambda_eff``.
    """
    act = active.to(gram.real.dtype)
    outer = act[:, :, None] * act[:, None, :]
    gram = gram * outer
    rhs = rhs * act[:, :, None]
    n_active = act.sum(-1).clamp(min=1)
    frob = torch.linalg.matrix_norm(gram, ord="fro")
    lam = lamda * frob / n_active
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    diag = lam[..., None] * act + (1 - act)
    gram = gram + eye * diag[..., None, :]
    weights = solve_hpd(gram, rhs)
    return weights, float(lam.mean())


# --------------------------------------------------------------------------- 1D masks


def _line_geometries(
    line: np.ndarray, ry: int, n_acs: int, rx: int, n_rows: int, n_coils: int, reach: int
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Source offsets ``(n_missing, ry)`` (0 = absent slot) for each missing line.

    Sources farther than ``reach`` lines from the target are not used. Sources that
    would make a kernel impossible to calibrate on ``n_acs`` ACS lines
    (span too wide, or too few calibration rows per unknown) are dropped, farthest
    first. A line left with no source (a gap wider than the ACS, e.g. at the k-space
    edge of a random mask) is not filled, as in pygrappa. Returns (indices of the lines
    to fill, their offsets, number of lines whose kernel shrank, number left unfilled).
    """
    idx = np.flatnonzero(line)
    miss = np.flatnonzero(~line)
    if miss.size == 0:
        return miss, np.zeros((0, ry), dtype=np.int64), 0, 0
    pos = np.searchsorted(idx, miss)
    n_before, n_after = (ry + 1) // 2, ry // 2
    cols = []
    for k in range(n_before):
        j = pos - n_before + k
        ok = j >= 0
        cols.append(np.where(ok, idx[np.clip(j, 0, idx.size - 1)] - miss, 0))
    for k in range(n_after):
        j = pos + k
        ok = j < idx.size
        cols.append(np.where(ok, idx[np.clip(j, 0, idx.size - 1)] - miss, 0))
    offs = np.stack(cols, axis=1).astype(np.int64)
    offs[np.abs(offs) > reach] = 0
    shrunk = np.zeros(miss.size, dtype=bool)
    for _ in range(ry):
        valid = offs != 0
        hi = np.maximum(np.where(valid, offs, 0).max(axis=1), 0)
        lo = np.minimum(np.where(valid, offs, 0).min(axis=1), 0)
        rows = (n_acs - (hi - lo)) * n_rows
        unknowns = valid.sum(axis=1) * n_coils * rx * _ROWS_PER_UNKNOWN
        bad = (rows < np.maximum(unknowns, 1)) & valid.any(axis=1)
        if not bad.any():
            break
        far = np.argmax(np.where(valid, np.abs(offs), -1), axis=1)
        offs[bad, far[bad]] = 0
        shrunk |= bad
    keep = (offs != 0).any(axis=1)  # lines with no calibratable source stay zero
    return miss[keep], offs[keep], int(shrunk[keep].sum()), int((~keep).sum())


def _calibrate_lines(
    calib: torch.Tensor, geoms: np.ndarray, rx: int, lamda: float, pad_acs: bool
) -> tuple[torch.Tensor, float]:
    """Kernels ``(S, G, ry*C*rx, C)`` for line geometries ``geoms`` ``(G, ry)``.

    Uses a prefix-sum trick: with ``V_i`` the readout-unfolded (zero-padded) ACS line
    ``i`` the Gram block of two source lines at offsets ``a <= b`` is
    ``sum_t V_{t+a}^H V_{t+b}`` over the target lines ``t``, a contiguous run of the lag-
    ``(b-a)`` products ``P_L[i] = V_i^H V_{i+L}``. Cumulative sums of ``P_L`` give every
    geometry's exact Gram matrix in O(1), so calibrating many geometries (random masks)
    costs little more than calibrating one.
    """
    s, c, hc, na = calib.shape
    n1 = c * rx
    ry = geoms.shape[1]
    valid = geoms != 0
    lo = np.minimum(np.where(valid, geoms, 0).min(axis=1), 0)
    hi = np.maximum(np.where(valid, geoms, 0).max(axis=1), 0)
    if pad_acs:
        # Every ACS point is a target; sources outside the ACS are taken as zero (the ACS
        # is zero-padded), as pygrappa does. Measured on noisy 256x256 8-coil data this
        # lowers the NRMSE at R=3-4 (it acts as extra regularisation).
        p = int(max(-lo.min(), hi.max()))
        calib = F.pad(calib, (p, p, rx // 2, rx - 1 - rx // 2))
        t0 = np.full(geoms.shape[0], p)
        t1 = t0 + na - 1
        na = na + 2 * p
    else:
        t0, t1 = -lo, na - 1 - hi  # only target lines where the whole kernel fits
    v = calib.unfold(2, rx, 1)  # (S, C, Hr, Na, rx)
    v = v.permute(0, 3, 2, 1, 4).reshape(s, na, -1, n1)  # (S, Na, Hr, C*rx)
    # slots: the ry sources, then the target (offset 0)
    d = np.concatenate([geoms, np.zeros((geoms.shape[0], 1), dtype=np.int64)], axis=1)
    use = np.concatenate([valid, np.ones((geoms.shape[0], 1), dtype=bool)], axis=1)
    lags = sorted(
        {
            int(abs(d[g, k] - d[g, m]))
            for g in range(d.shape[0])
            for k in range(ry + 1)
            for m in range(ry + 1)
            if use[g, k] and use[g, m]
        }
    )
    lag_pos = {lag: i for i, lag in enumerate(lags)}
    q = torch.zeros((s, len(lags), na + 1, n1, n1), dtype=torch.complex128, device=calib.device)
    for lag in lags:
        prod = torch.matmul(v[:, : na - lag].conj().transpose(-1, -2), v[:, lag:])
        q[:, lag_pos[lag], 1 : na - lag + 1] = torch.cumsum(prod.to(torch.complex128), dim=1)
    n_g = geoms.shape[0]
    gram = torch.zeros((s, n_g, ry, n1, ry, n1), dtype=torch.complex128, device=calib.device)
    rhs = torch.zeros((s, n_g, ry, n1, c), dtype=torch.complex128, device=calib.device)
    centre = torch.arange(c, device=calib.device) * rx + rx // 2
    for k in range(ry):
        for m in range(k, ry + 1):
            ok = use[:, k] & use[:, m]
            a = np.where(d[:, k] <= d[:, m], d[:, k], d[:, m])
            lag = np.abs(d[:, m] - d[:, k])
            li = np.array([lag_pos.get(int(x), 0) for x in np.where(ok, lag, 0)])
            start = np.where(ok, t0 + a, 0)
            stop = np.where(ok, t1 + a + 1, 0)
            li_t = torch.as_tensor(li, device=calib.device)
            block = (
                q[:, li_t, torch.as_tensor(stop, device=calib.device)]
                - q[:, li_t, torch.as_tensor(start, device=calib.device)]
            )  # (S, G, n1, n1) = sum V_first^H V_second
            swap = torch.as_tensor(d[:, k] > d[:, m], device=calib.device)
            block = torch.where(swap[None, :, None, None], block.conj().transpose(-1, -2), block)
            if m == ry:
                rhs[:, :, k] = block[..., centre]
            else:
                gram[:, :, k, :, m, :] = block
                if m != k:
                    gram[:, :, m, :, k, :] = block.conj().transpose(-1, -2)
    active = torch.as_tensor(np.repeat(valid, n1, axis=1), device=calib.device)
    weights, lam = _solve(
        gram.reshape(s, n_g, ry * n1, ry * n1), rhs.reshape(s, n_g, ry * n1, c), active, lamda
    )
    return weights.to(calib.dtype), lam


def _apply_lines(
    kspace: torch.Tensor,
    miss: np.ndarray,
    offs: np.ndarray,
    geom_index: np.ndarray,
    weights: torch.Tensor,
    rx: int,
) -> torch.Tensor:
    """Fill the missing lines of ``kspace`` ``(S, C, H, W)`` in place and return it.

    All missing lines are done at once: their source lines are gathered, unfolded along
    the readout, and multiplied by their geometry's kernel in one batched matmul.
    """
    s, c, h, w = kspace.shape
    ry = offs.shape[1]
    left = rx // 2
    kp = torch.zeros((s, c, h + rx - 1, w + 1), dtype=kspace.dtype, device=kspace.device)
    kp[:, :, left : left + h, :w] = kspace  # column w stays zero: the absent-slot source
    src_lines = np.where(offs != 0, offs + miss[:, None], w)
    src_t = torch.as_tensor(src_lines, device=kspace.device)
    n_m = miss.size
    per_line = c * h * ry * rx * kspace.element_size() * 2
    step = max(1, _APPLY_BLOCK // max(per_line * s, 1))
    gi = torch.as_tensor(geom_index, device=kspace.device)
    miss_t = torch.as_tensor(miss, device=kspace.device)
    for j0 in range(0, n_m, step):
        j1 = min(n_m, j0 + step)
        src = kp[:, :, :, src_t[j0:j1]]  # (S, C, H+rx-1, n, ry)
        src = src.unfold(2, rx, 1)  # (S, C, H, n, ry, rx)
        src = src.permute(0, 3, 2, 4, 1, 5).reshape(s * (j1 - j0), h, ry * c * rx)
        wts = weights[:, gi[j0:j1]].reshape(s * (j1 - j0), ry * c * rx, c)
        est = torch.bmm(src, wts).reshape(s, j1 - j0, h, c).permute(0, 3, 2, 1)
        kspace[:, :, :, miss_t[j0:j1]] = est
    return kspace


def _grappa_lines(
    kspace: torch.Tensor,
    calib: torch.Tensor,
    line: np.ndarray,
    ry: int,
    rx: int,
    lamda: float,
    acs_run: tuple[int, int],
    max_reach: int | None,
    pad_acs: bool,
) -> tuple[torch.Tensor, dict]:
    s, c, h, w = kspace.shape
    _, _, hc, na = calib.shape
    if rx > hc:
        raise ParameterError(
            f"kernel_rx={rx} is larger than the calibration readout extent ({hc} points)"
        )
    n_rows = hc - rx + 1
    if line.all():
        info = {"geometry": "1d", "kernel": [ry, rx], "acs_lines": na, "nominal_R": 1}
        info.update(n_kernels=0, shrunk_kernels=0, unfilled_lines=0, lambda_eff=0.0)
        return kspace.clone(), info
    r_nominal = _typical_gap(line, acs_run)
    outer = np.ones_like(line)
    outer[acs_run[0] : acs_run[1]] = False
    r_outer = outer.sum() / max(int((line & outer).sum()), 1)
    if r_outer > c:
        raise ReconError(
            f"acceleration R={r_outer:.1f} outside the ACS exceeds the number of coils ({c}): "
            "GRAPPA cannot unalias more lines than there are coils"
        )
    idx = np.flatnonzero(line)
    gaps = np.concatenate(
        [np.diff(idx[idx < acs_run[0]]), np.diff(idx[idx >= acs_run[1]])]
    )  # spacing on each side of the ACS block
    uniform = gaps.size > 0 and bool((gaps == gaps[0]).all())
    span = (ry - 1) * r_nominal + 1
    if uniform and (span > na or (na - span + 1) * n_rows < ry * c * rx * _ROWS_PER_UNKNOWN):
        raise ReconError(
            f"kernel of {ry}x{rx} at R={r_nominal} spans {span} phase-encode lines; the "
            f"{na}-line ACS gives {max(na - span + 1, 0) * n_rows} calibration positions, "
            f"fewer than {_ROWS_PER_UNKNOWN}x its {ry * c * rx} unknowns: ACS too small for "
            "the kernel; use a smaller kernel or more ACS lines"
        )
    # Far sources make GRAPPA extrapolate: measured on random masks, kernels reaching 5+
    # lines gave errors several times the line's own energy. The default reach covers
    # the classic kernel of a (near-)uniform mask and +-2 lines (pygrappa's 5-wide
    # window) otherwise; lines with no source in reach are left unfilled, as pygrappa.
    # "regular" includes fastMRI's equispaced masks, whose spacing alternates by one line
    regular = gaps.size > 0 and int(gaps.max() - gaps.min()) <= 1
    if max_reach is not None:
        reach = max_reach
    else:
        reach = int(gaps.max()) * ((ry + 1) // 2) if regular else 2
    miss, offs, shrunk, unfilled = _line_geometries(line, ry, na, rx, n_rows, c, reach)
    if unfilled > miss.size:
        raise ReconError(
            f"{unfilled} of {unfilled + miss.size} missing phase-encode lines have no acquired "
            f"line within {reach} lines that a kernel calibrated on the {na}-line ACS could "
            "use: ACS too small or sampling too sparse for GRAPPA"
        )
    info = {
        "geometry": "1d",
        "kernel": [ry, rx],
        "acs_lines": na,
        "nominal_R": r_nominal,
        "outer_R": round(float(r_outer), 3),
        "reach": int(reach),
    }
    if miss.size == 0:
        info.update(n_kernels=0, shrunk_kernels=0, unfilled_lines=unfilled, lambda_eff=0.0)
        return kspace.clone(), info
    geoms, geom_index = np.unique(offs, axis=0, return_inverse=True)
    # slices are calibrated in chunks that keep the prefix-sum tables and Gram matrices
    # within the memory budget (they grow with coils^2)
    n1 = c * rx
    max_lag = int(np.abs(offs).max()) + reach
    per_slice = (
        16 * n1 * n1 * ((max_lag + 1) * (na + 2 * max_lag + 1) + 3 * geoms.shape[0] * ry * ry)
    )
    chunk = max(1, int(_MEMORY_BUDGET // per_slice))
    out = kspace.clone()
    lams = []
    for s0 in range(0, s, chunk):
        s1 = min(s, s0 + chunk)
        weights, lam = _calibrate_lines(calib[s0:s1], geoms, rx, lamda, pad_acs)
        out[s0:s1] = _apply_lines(out[s0:s1], miss, offs, geom_index.reshape(-1), weights, rx)
        lams.append(lam * (s1 - s0))
    lam = sum(lams) / s
    info.update(
        n_kernels=int(geoms.shape[0]),
        shrunk_kernels=shrunk,
        unfilled_lines=unfilled,
        lambda_eff=lam,
    )
    return out, info


# --------------------------------------------------------------------------- 2D masks


def _grappa_window(
    kspace: torch.Tensor,
    calib: torch.Tensor,
    mask2d: np.ndarray,
    window: tuple[int, int],
    lamda: float,
    max_geometries: int,
    pad_acs: bool,
) -> tuple[torch.Tensor, dict]:
    """GRAPPA for a 2D mask: one kernel per distinct pattern of acquired points in a
    ``window`` centred on the missing point (pygrappa ``mdgrappa`` geometry).

    Every geometry's Gram matrix is a sub-matrix of the Gram matrix of *all* window
    positions over the ACS, which is therefore computed once.
    """
    s, c, h, w = kspace.shape
    kh, kw = window
    _, _, hc, wc = calib.shape
    if kh > hc or kw > wc:
        raise ReconError(
            f"kernel window {kh}x{kw} is larger than the {hc}x{wc} calibration region: "
            "ACS too small for the kernel"
        )
    rows = (hc - kh + 1) * (wc - kw + 1)
    nwin = kh * kw
    ph, pw = kh // 2, kw // 2
    padded = np.zeros((h + kh - 1, w + kw - 1), dtype=bool)
    padded[ph : ph + h, pw : pw + w] = mask2d
    patches = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw)).reshape(h * w, nwin)
    missing = np.flatnonzero(~mask2d.reshape(-1))
    info = {"geometry": "2d", "window": [kh, kw], "acs_shape": [hc, wc]}
    sampled_frac = mask2d.mean()
    if missing.size == 0:
        info.update(n_kernels=0, unfilled_points=0, lambda_eff=0.0)
        return kspace.clone(), info
    r_eff = 1.0 / max(sampled_frac, 1e-12)
    if r_eff > c:
        raise ReconError(
            f"acceleration {r_eff:.1f} exceeds the number of coils ({c}): GRAPPA cannot "
            "unalias more points than there are coils"
        )
    pats = patches[missing]
    has_src = pats.any(axis=1)
    unfilled = int((~has_src).sum())
    missing, pats = missing[has_src], pats[has_src]
    geoms, geom_index = np.unique(pats, axis=0, return_inverse=True)
    geom_index = geom_index.reshape(-1)
    if geoms.shape[0] > max_geometries:
        raise ReconError(
            f"the mask has {geoms.shape[0]} distinct kernel geometries (more than "
            f"{max_geometries}): GRAPPA needs a (near-)periodic sampling pattern; use SENSE "
            "or compressed sensing for this mask"
        )
    n_src = int(geoms.sum(axis=1).max())
    if rows < n_src * c:
        raise ReconError(
            f"ACS {hc}x{wc} gives {rows} calibration positions for kernels with up to "
            f"{n_src * c} unknowns: ACS too small for the kernel window"
        )
    dev = kspace.device
    # all windows of the ACS: (S, rows, nwin, C)
    if pad_acs:  # every ACS point is a target, zeros outside (as pygrappa's mdgrappa)
        calib = F.pad(calib, (pw, kw - 1 - pw, ph, kh - 1 - ph))
    cw = calib.unfold(2, kh, 1).unfold(3, kw, 1)  # (S, C, Hr, Wr, kh, kw)
    a_full = cw.permute(0, 2, 3, 4, 5, 1).reshape(s, -1, nwin * c)
    centre = (ph * kw + pw) * c + torch.arange(c, device=dev)
    gram_full = torch.matmul(a_full.conj().transpose(-1, -2), a_full).to(torch.complex128)
    rhs_full = gram_full[..., centre]
    # kspace padded and flattened for gathers
    kp = torch.zeros((s, c, h + kh - 1, w + kw - 1), dtype=kspace.dtype, device=dev)
    kp[:, :, ph : ph + h, pw : pw + w] = kspace
    kp = kp.reshape(s, c, -1)
    wp = w + kw - 1
    win_off = (np.arange(kh)[:, None] * wp + np.arange(kw)[None, :]).reshape(-1)
    tgt_row, tgt_col = np.divmod(missing, w)
    tgt_base = tgt_row * wp + tgt_col  # flat index of each window's top-left corner
    out = kspace.clone().reshape(s, c, -1)
    order = np.argsort(geom_index, kind="stable")
    bounds = np.searchsorted(geom_index[order], np.arange(geoms.shape[0] + 1))
    lam_sum = 0.0
    chunk = max(1, int(_MEMORY_BUDGET // (s * (nwin * c) ** 2 * 16 * 3)))
    for g0 in range(0, geoms.shape[0], chunk):
        g1 = min(geoms.shape[0], g0 + chunk)
        act = torch.as_tensor(np.repeat(geoms[g0:g1], c, axis=1), device=dev)
        gram = gram_full[:, None].expand(s, g1 - g0, -1, -1)
        rhs = rhs_full[:, None].expand(s, g1 - g0, -1, -1)
        wts, lam = _solve(gram, rhs, act, lamda)
        lam_sum += lam * (g1 - g0)
        wts = wts.to(kspace.dtype)
        for g in range(g0, g1):
            pts = order[bounds[g] : bounds[g + 1]]
            sel = np.flatnonzero(geoms[g])
            idx = tgt_base[pts][:, None] + win_off[sel][None, :]
            src = kp[:, :, torch.as_tensor(idx.reshape(-1), device=dev)]
            src = src.reshape(s, c, pts.size, sel.size).permute(0, 2, 3, 1)
            wsel = wts[:, g - g0].reshape(s, nwin, c, c)[:, torch.as_tensor(sel, device=dev)]
            est = torch.matmul(src.reshape(s, pts.size, -1), wsel.reshape(s, -1, c))
            out[:, :, torch.as_tensor(missing[pts], device=dev)] = est.permute(0, 2, 1)
    info.update(
        n_kernels=int(geoms.shape[0]),
        unfilled_points=unfilled,
        lambda_eff=lam_sum / geoms.shape[0],
    )
    return out.reshape(s, c, h, w), info


# --------------------------------------------------------------------------- public API


def grappa_kspace(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    *,
    calib: torch.Tensor | None = None,
    acs_mask: torch.Tensor | None = None,
    kernel_ry: int = 4,
    kernel_rx: int = 5,
    max_reach: int | None = None,
    window: tuple[int, int] = (5, 5),
    lamda: float = 0.01,
    max_geometries: int = 4096,
    pad_acs: bool = True,
    device: torch.device | str | None = None,
) -> GrappaResult:
    """Fill the missing samples of undersampled multi-coil k-space by GRAPPA.

    kspace: ``(S, C, H, W)`` complex, zeros (or anything) where ``mask`` is 0.
    mask: float 0/1 ``(1 or S, 1, 1 or H, W)``; a mask that is identical on every readout
        row is treated as 1D (lines along ``W``), otherwise as 2D (``H`` and ``W``).
    calib: optional fully sampled calibration k-space ``(S, C, Hc, Wc)`` (e.g. a separate
        reference scan); by default the ACS block of each slice (``acs_mask``'s bounding
        box, or the acquired run through the centre) is used.
    kernel_ry, kernel_rx: 1D kernel size: acquired phase-encode lines x readout points.
    max_reach: 1D masks: sources farther than this many lines from the target are not
        used (default: the classic kernel's reach for (near-)uniform masks, 2 otherwise);
        lines with no source in reach are left unfilled (reported as ``unfilled_lines``).
    window: 2D masks: ``(H, W)`` window in grid points whose acquired points are sources.
    lamda: Tikhonov weight, relative (``lambda_eff = lamda * ||A^H A||_F / n``).
    max_geometries: 2D masks with more distinct window patterns are refused.
    pad_acs: calibrate on every ACS point with zeros outside the ACS (pygrappa's choice,
        better in noisy data) rather than only where the whole kernel lies inside the ACS
        (the exact least-squares fit of consistent data, best for noiseless data).
    device: where to compute (default: the device of ``kspace``).

    Returns the completed k-space (acquired samples unchanged) on ``device`` and run info.
    """
    validate_kspace(kspace)
    if kspace.shape[1] < 2:
        raise ReconError(
            "GRAPPA needs multi-coil k-space (it fills missing lines from the other coils); "
            "this k-space has 1 coil"
        )
    if not bool((kspace != 0).any()):
        raise ReconError("k-space is all zero: no acquired samples to calibrate or fill from")
    for name, val in (("kernel_ry", kernel_ry), ("kernel_rx", kernel_rx)):
        if int(val) != val or val < 1:
            raise ParameterError(f"{name} must be a positive integer, got {val!r}")
    if len(window) != 2 or min(window) < 1:
        raise ParameterError(f"window must be two positive integers, got {window!r}")
    if not (lamda >= 0 and np.isfinite(lamda)):
        raise ParameterError(f"lamda must be a finite number >= 0, got {lamda!r}")
    device = torch.device(device) if device is not None else kspace.device
    kspace = kspace.to(device=device, dtype=torch.complex64)
    s, c, h, w = kspace.shape
    m = normalise_mask(mask, tuple(kspace.shape))
    m = m.expand(m.shape[0], h, w)
    if calib is not None:
        validate_kspace(calib, "calib")
        if calib.shape[0] != s or calib.shape[1] != c:
            raise ReconError(
                f"calib shape {tuple(calib.shape)} does not match k-space slices/coils ({s}, {c})"
            )
        calib = calib.to(device=device, dtype=torch.complex64)
    kspace = kspace * m[:, None].to(device=device, dtype=kspace.real.dtype)
    # slices sharing one mask are processed together (the usual case: one mask for all)
    keys: dict[bytes, list[int]] = {}
    for i in range(m.shape[0]):
        keys.setdefault(m[i].numpy().tobytes(), []).append(i)
    out = torch.empty_like(kspace)
    infos = []
    for members in keys.values():
        mask2d = m[members[0]].numpy()
        sl = list(range(s)) if m.shape[0] == 1 else members
        sl_t = torch.as_tensor(sl, device=device)
        rows, cols = find_acs(torch.as_tensor(mask2d), acs_mask)
        cal = calib[sl_t] if calib is not None else kspace[sl_t][:, :, rows, cols]
        if cal.shape[-1] == 0 or cal.shape[-2] == 0:
            raise ReconError("empty calibration (ACS) region")
        is_1d = bool((mask2d == mask2d[:1]).all())
        if is_1d:
            acs_run = (cols.start, cols.stop) if calib is None else (0, 0)
            done, info = _grappa_lines(
                kspace[sl_t],
                cal,
                mask2d[0],
                kernel_ry,
                kernel_rx,
                lamda,
                acs_run,
                max_reach,
                pad_acs,
            )
        else:
            done, info = _grappa_window(
                kspace[sl_t], cal, mask2d, tuple(window), lamda, max_geometries, pad_acs
            )
        out[sl_t] = done
        infos.append(info)
    info = dict(infos[0])
    if len(infos) > 1:
        info["n_kernels"] = sum(i["n_kernels"] for i in infos)
        info["mask_groups"] = len(infos)
    info["lambda"] = lamda
    return GrappaResult(kspace=out, info=info)


def coil_combine(kspace: torch.Tensor, sensitivities: torch.Tensor | None = None) -> torch.Tensor:
    """Coil-combined image ``(S, H, W)`` from k-space ``(S, C, H, W)``.

    Without sensitivities: root-sum-of-squares (real magnitude). With sensitivities
    ``(S, C, H, W)``: the complex sensitivity-weighted combination
    ``sum_c conj(s_c) x_c / sum_c |s_c|^2`` (0 where no coil is sensitive).
    """
    images = ifftc(kspace)
    if sensitivities is None:
        return rss(images, coil_dim=1)
    sens = sensitivities.to(device=images.device, dtype=images.dtype)
    if sens.shape != images.shape:
        raise ReconError(
            f"sensitivities shape {tuple(sens.shape)} does not match coil images "
            f"{tuple(images.shape)}"
        )
    num = (sens.conj() * images).sum(dim=1)
    den = (sens.abs() ** 2).sum(dim=1)
    return torch.where(den > 0, num / den.clamp(min=1e-12), torch.zeros_like(num))
