"""SENSE reconstruction (Pruessmann et al., MRM 1999 and 2001), batched over slices.

* :func:`sense_unfold` - Cartesian SENSE for uniform undersampling (every ``R``-th
  phase-encode line): when ``R`` divides ``W`` the zero-filled coil images are aliased
  copies ``W / R`` apart, so each aliased pixel is a ``C x R`` least-squares problem. All
  groups of all slices are solved at once as one batched ``R x R`` system (optionally
  Tikhonov regularised). When ``R`` does not divide ``W`` (``R = 3`` on 256 lines, the
  literature's standard example) the lattice's point-spread function is not a set of
  ``R`` deltas, so :func:`sense_unfold_exact` solves each readout row with the exact
  ``W x W`` aliasing operator ``K = F^H M F`` instead. Extra ACS lines are not used for
  unfolding (as in mSENSE / ASSET): only the uniform lattice enters the model.
* :func:`cg_sense` - iterative SENSE for any sampling: conjugate gradients on
  ``(A^H A + lamda I) x = A^H y`` with :class:`recon_engine.operators.SenseOperator`.

Noise is assumed white across coils (pre-whiten with the noise covariance first).

Why hand-written: SigPy/BART have no batched Cartesian unfolding and work slice by
slice; these are torch, slice-batched and run on CPU or CUDA.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from recon_engine.espirit import sensitivities_for
from recon_engine.fft import fftc, ifftc
from recon_engine.linalg import solve_hpd
from recon_engine.operators import (
    SenseOperator,
    check_kspace,
    check_mask,
    check_sensitivities,
    conjugate_gradient,
    slices_per_chunk,
)
from recon_engine.registry import ParameterError, ReconError, ReconInput, ReconOutput

__all__ = [
    "UniformPattern",
    "cg_sense",
    "run_batched",
    "aliasing_operator",
    "sense_unfold",
    "sense_unfold_exact",
    "uniform_pattern",
    "unfolding_system",
]


@dataclass(frozen=True)
class UniformPattern:
    """A uniform line lattice: lines ``offset, offset + R, ...`` along W are sampled."""

    acceleration: int
    offset: int

    def line_mask(self, w: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """``(1, 1, 1, W)`` float32 mask of the lattice lines only (no ACS)."""
        m = torch.zeros(1, 1, 1, w, device=device)
        m[..., self.offset :: self.acceleration] = 1
        return m


def uniform_pattern(mask: torch.Tensor, w: int, acceleration: int | None = None) -> UniformPattern:
    """Find ``R`` and the offset of the uniform lattice in a 1D ``mask`` (ACS lines allowed).

    ``R`` is the most common gap between sampled lines unless given. Raises
    :class:`ReconError` when the mask is 2D or no offset has every ``R``-th line.
    """
    if mask.ndim >= 2 and mask.shape[-2] != 1:
        raise ReconError("SENSE unfolding needs a 1D mask (same on every readout row)")
    m = check_mask(mask, (mask.shape[0] if mask.ndim == 4 else 1, 1, 1, w))
    if m.shape[0] > 1 and not bool((m == m[:1]).all()):
        raise ReconError("SENSE unfolding needs the same mask on every slice")
    line = m[0, 0, 0].cpu().numpy() > 0
    idx = np.flatnonzero(line)
    if acceleration is None:
        gaps = np.diff(idx)
        gaps = gaps[gaps > 1] if (gaps > 1).any() else gaps
        if gaps.size == 0:
            return UniformPattern(1, 0)
        values, counts = np.unique(gaps, return_counts=True)
        acceleration = int(values[np.argmax(counts)])
    r = int(acceleration)
    if r < 1:
        raise ParameterError(f"acceleration must be >= 1, got {r}")
    for offset in range(r):
        if line[offset::r].all():
            return UniformPattern(r, offset)
    raise ReconError(
        f"the mask is not uniform: no offset has every {r}-th line sampled; "
        "use CG-SENSE (cg_sense) for random or variable-density sampling"
    )


def _check_inputs(kspace: torch.Tensor, sens: torch.Tensor) -> None:
    check_kspace(kspace)
    check_sensitivities(sens, tuple(kspace.shape))


def unfolding_system(
    sens: torch.Tensor, pattern: UniformPattern
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoding matrices ``E`` ``(S, H, W/R, C, R)`` of every aliased pixel group.

    Group ``y0`` gathers pixels ``y0 + j W / R``; ``E[c, j] = kappa_j s_c(y0 + j W / R)``
    where ``kappa`` is the point-spread function of the lattice (computed numerically
    from the centred FFT, so the sign/shift conventions are exact by construction).
    Also returns ``kappa_j`` ``(R,)``.
    """
    s, c, h, w = sens.shape
    r = pattern.acceleration
    if w % r:
        raise ReconError(f"phase-encode size {w} is not a multiple of the acceleration {r}")
    if r > c:
        raise ReconError(
            f"acceleration R={r} exceeds the number of coils C={c}: SENSE unfolding is "
            "underdetermined (needs R <= C)"
        )
    line = pattern.line_mask(w, sens.device)[0, 0, 0].to(sens.dtype)
    delta = torch.zeros(w, dtype=sens.dtype, device=sens.device)
    delta[0] = 1
    kappa_full = ifftc(line * fftc(delta, dims=(-1,)), dims=(-1,))
    wr = w // r
    kappa = kappa_full[(-torch.arange(r, device=sens.device) * wr) % w]
    e = sens.reshape(s, c, h, r, wr) * kappa.reshape(1, 1, 1, r, 1)
    return e.permute(0, 2, 4, 1, 3), kappa


def _regularised_gram(e: torch.Tensor, lamda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``G = E^H E`` and ``A = G + lamda_eff I`` with ``lamda_eff`` relative to the slice's mean
    ``trace(G) / R`` (plus 1e-6 of it so groups without coil signal stay solvable)."""
    gram = e.conj().transpose(-1, -2) @ e
    r = gram.shape[-1]
    diag = torch.diagonal(gram, dim1=-2, dim2=-1).real
    scale = diag.reshape(diag.shape[0], -1).mean(dim=1).clamp_min(1e-30)
    lam = (lamda + 1e-6) * scale
    eye = torch.eye(r, dtype=gram.dtype, device=gram.device)
    return gram, gram + lam.reshape(-1, 1, 1, 1, 1) * eye


def sense_unfold(
    kspace: torch.Tensor,
    sens: torch.Tensor,
    mask: torch.Tensor,
    acceleration: int | None = None,
    lamda: float = 0.0,
) -> torch.Tensor:
    """Cartesian SENSE image ``(S, H, W)`` from uniformly undersampled ``kspace``.

    kspace: ``(S, C, H, W)`` complex64, zero where not sampled.
    sens: ``(S|1, C, H, W)`` coil sensitivities.
    mask: 1D mask; its uniform lattice (``R``, offset) is detected (ACS lines ignored).
    lamda: Tikhonov weight relative to the mean ``trace(E^H E) / R`` (0 = plain SENSE).
    """
    _check_inputs(kspace, sens)
    if lamda < 0:
        raise ParameterError(f"lamda must be >= 0, got {lamda}")
    s, c, h, w = kspace.shape
    pattern = uniform_pattern(mask, w, acceleration)
    sens = sens.to(kspace.device, kspace.dtype).expand(s, -1, -1, -1)
    if w % pattern.acceleration:
        return sense_unfold_exact(kspace, sens, pattern, lamda)
    e, _ = unfolding_system(sens, pattern)
    aliased = ifftc(kspace * pattern.line_mask(w, kspace.device))
    wr = w // pattern.acceleration
    a0 = aliased[..., :wr].permute(0, 2, 3, 1).unsqueeze(-1)  # (S, H, W/R, C, 1)
    _, amat = _regularised_gram(e, lamda)
    rhs = e.conj().transpose(-1, -2) @ a0
    x = solve_hpd(amat.to(torch.complex128), rhs.to(torch.complex128)).to(kspace.dtype)
    x = x.squeeze(-1)  # (S, H, W/R, R)
    return x.permute(0, 1, 3, 2).reshape(s, h, w)


def aliasing_operator(w: int, pattern: UniformPattern, device=None) -> torch.Tensor:
    """``K`` ``(W, W)`` complex128: the zero-filled image of the lattice is ``K @ x`` along W.

    ``K = F^H M F`` (centred orthonormal DFT ``F``, lattice mask ``M``) is built column by
    column from the engine's own FFTs, so its conventions are exact by construction. It is
    circulant; its diagonal is ``n / W`` (``n`` sampled lines).
    """
    eye = torch.eye(w, dtype=torch.complex128, device=device)
    line = pattern.line_mask(w, eye.device)[0, 0, 0].to(torch.float64)
    return ifftc(line[:, None] * fftc(eye, dims=(0,)), dims=(0,))


def _exact_regularisation(sens: torch.Tensor, kmat: torch.Tensor, lamda: float) -> torch.Tensor:
    """``lamda_eff`` per slice ``(S,)``: ``(lamda + 1e-6)`` times the mean diagonal of
    ``E^H E`` over the slice (the same scaling as the ``R x R`` unfolding)."""
    power = (sens.abs() ** 2).sum(dim=1).to(torch.float64)  # (S, H, W)
    scale = (kmat.diagonal().real.mean() * power.mean(dim=(-2, -1))).clamp_min(1e-30)
    return (lamda + 1e-6) * scale


def _exact_gram(sens_rows: torch.Tensor, kmat: torch.Tensor) -> torch.Tensor:
    """``E^H E`` ``(S, h, W, W)`` of readout rows ``sens_rows`` ``(S, C, h, W)``:
    ``G[y, z] = K[y, z] sum_c conj(s_c(y)) s_c(z)``."""
    s128 = sens_rows.to(torch.complex128)
    return torch.einsum("schy,schz->shyz", s128.conj(), s128) * kmat


# readout rows per exact solve: keeps the (S, rows, W, W) complex128 systems near 64 MiB
_EXACT_BLOCK_BYTES = 64 * 2**20


def exact_rows_per_block(s: int, w: int) -> int:
    """Readout rows solved at once by the exact unfolding of ``s`` slices of width ``w``."""
    return max(1, _EXACT_BLOCK_BYTES // (3 * 16 * s * w * w))


def sense_unfold_exact(
    kspace: torch.Tensor, sens: torch.Tensor, pattern: UniformPattern, lamda: float = 0.0
) -> torch.Tensor:
    """Cartesian SENSE image ``(S, H, W)`` with the exact aliasing operator, for any ``W``.

    Each readout row is the ``W``-unknown least-squares problem
    ``min sum_c ||M F (s_c x) - y_c||^2 + lamda_eff ||x||^2``, solved through its normal
    equations ``(sum_c S_c^H K S_c + lamda_eff I) x = sum_c S_c^H F^H M y_c`` (Cholesky).
    For ``R`` dividing ``W`` this equals the ``R x R`` unfolding of :func:`sense_unfold`;
    it is what makes ``R = 3`` on 256 lines exact. kspace ``(S, C, H, W)``; sens
    ``(S, C, H, W)``; lamda as in :func:`sense_unfold`.
    """
    s, c, h, w = kspace.shape
    if pattern.acceleration > c:
        raise ReconError(
            f"acceleration R={pattern.acceleration} exceeds the number of coils C={c}: SENSE "
            "unfolding is underdetermined (needs R <= C)"
        )
    sens = sens.to(kspace.device, kspace.dtype).expand(s, -1, -1, -1)
    kmat = aliasing_operator(w, pattern, kspace.device)
    aliased = ifftc(kspace * pattern.line_mask(w, kspace.device))
    rhs = (sens.conj() * aliased).sum(dim=1).to(torch.complex128)  # (S, H, W)
    lam = _exact_regularisation(sens, kmat, lamda)
    eye = torch.eye(w, dtype=torch.complex128, device=kspace.device)
    out = torch.empty((s, h, w), dtype=kspace.dtype, device=kspace.device)
    step = exact_rows_per_block(s, w)
    for r0 in range(0, h, step):
        r1 = min(h, r0 + step)
        amat = _exact_gram(sens[:, :, r0:r1], kmat) + lam[:, None, None, None] * eye
        out[:, r0:r1] = solve_hpd(amat, rhs[:, r0:r1, :, None])[..., 0].to(kspace.dtype)
    return out


def cg_sense(
    kspace: torch.Tensor,
    sens: torch.Tensor,
    mask: torch.Tensor,
    lamda: float = 0.0,
    max_iter: int = 30,
    tol: float = 0.0,
    x0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """CG-SENSE image ``(S, H, W)`` for any Cartesian ``mask``; returns ``(image, iterations)``.

    Solves ``(A^H A + lamda I) x = A^H y`` (SigPy ``SenseRecon`` / BART ``pics -l2``
    model) with ``max_iter`` CG iterations; ``lamda`` is absolute (ESPIRiT maps give
    ``||A^H A|| <= 1``, so it is relative to the largest eigenvalue).
    """
    _check_inputs(kspace, sens)
    if lamda < 0:
        raise ParameterError(f"lamda must be >= 0, got {lamda}")
    s, c, h, w = kspace.shape
    m = check_mask(mask.to(kspace.device), tuple(kspace.shape))
    op = SenseOperator(sens.to(kspace.device, kspace.dtype).expand(s, -1, -1, -1), m)
    rhs = op.adjoint(kspace)
    return conjugate_gradient(op.normal, rhs, x0=x0, max_iter=max_iter, tol=tol, damping=lamda)


def run_batched(
    data: ReconInput,
    params: dict,
    solve: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    step: str,
    slices_per_batch: int | None = None,
) -> ReconOutput:
    """Shared driver of the SENSE / CS methods: maps, then ``solve`` batch by batch of slices.

    ``solve(kspace_b, sens_b, mask_b) -> image_b`` runs on ``data.device``. Timings are
    ``{"sensitivities": s, step: s}``; ``data.progress`` is called after each batch.
    ``slices_per_batch`` defaults to :func:`recon_engine.operators.slices_per_chunk`.
    """
    check_kspace(data.kspace)
    kspace = data.kspace
    s = kspace.shape[0]
    mask = check_mask(data.mask, tuple(kspace.shape))
    if data.acs_mask is not None:
        check_mask(data.acs_mask, tuple(kspace.shape), "ACS mask")
    device = torch.device(data.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)
    t0 = time.perf_counter()
    sens, info = sensitivities_for(data, params)
    sync()
    t_sens = time.perf_counter() - t0
    per_slice = mask.shape[0] == s and s > 1
    slices_per_batch = slices_per_batch or slices_per_chunk(device)
    images = []
    t_solve = 0.0
    for b0 in range(0, s, slices_per_batch):
        b1 = min(s, b0 + slices_per_batch)
        t1 = time.perf_counter()
        img = solve(
            kspace[b0:b1].to(device),
            sens[b0:b1],
            (mask[b0:b1] if per_slice else mask).to(device),
        )
        sync()
        t_solve += time.perf_counter() - t1
        images.append(img.cpu())
        if data.progress is not None:
            data.progress(b1, s)
    return ReconOutput(
        image=torch.cat(images),
        maps={"sensitivities": sens.cpu()},
        timings={"sensitivities": t_sens, step: t_solve},
        info=info,
    )
