"""Geometry factor (g-factor) maps: noise amplification of accelerated reconstructions.

* :func:`sense_gfactor` - analytic g-factor of Cartesian SENSE with uniform
  undersampling (Pruessmann 1999): ``g_j = sqrt([(E^H E)^-1]_jj [E^H E]_jj)`` per
  aliased pixel, generalised to Tikhonov-regularised unfolding
  (``cov = A^-1 E^H E A^-1`` with ``A = E^H E + lamda I``). White coil noise assumed.
* :func:`pseudo_replica_gfactor` - pseudo multiple replica (Robson et al., MRM 2008)
  for ANY registered method: the method reconstructs the accelerated and the fully
  sampled data each with ``n_replicas`` independent noise realisations added;
  ``g = SD_accel / (SD_full * sqrt(R))``. Replicas are stacked along the slice axis,
  so one batched ``run`` call handles many of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from recon_engine.linalg import hpd_inverse
from recon_engine.operators import check_kspace, check_mask, check_sensitivities
from recon_engine.registry import ParameterError, ReconError, ReconInput, get_method
from recon_engine.sense import (
    UniformPattern,
    _exact_gram,
    _exact_regularisation,
    _regularised_gram,
    aliasing_operator,
    exact_rows_per_block,
    unfolding_system,
)

__all__ = ["GFactorResult", "pseudo_replica_gfactor", "sense_gfactor"]


def sense_gfactor(
    sens: torch.Tensor, acceleration: int, lamda: float = 0.0, offset: int = 0
) -> torch.Tensor:
    """Analytic SENSE g-factor ``(S, H, W)`` for uniform ``R`` along W (0 where no coil signal).

    sens: ``(S, C, H, W)`` coil sensitivities (white noise assumed). ``lamda`` as in
    :func:`recon_engine.sense.sense_unfold`. When ``R`` divides ``W`` the offset of the
    lattice does not matter; otherwise the lattice ``offset, offset + R, ...`` is used with
    the exact aliasing operator, and ``R`` in ``g = SD_acc / (SD_full sqrt(R))`` is the
    effective ``W / n`` of its ``n`` lines.
    """
    if sens.ndim != 4 or not sens.is_complex():
        raise ReconError(f"sensitivities must be complex (S, C, H, W), got {tuple(sens.shape)}")
    check_sensitivities(sens, tuple(sens.shape))
    s, c, h, w = sens.shape
    r = int(acceleration)
    if r < 1:
        raise ParameterError(f"acceleration must be >= 1, got {acceleration}")
    if w % r:
        return _exact_gfactor(sens, UniformPattern(r, int(offset) % r), lamda)
    e, _ = unfolding_system(sens.to(torch.complex64), UniformPattern(r, 0))
    e = e.to(torch.complex128)
    gram, amat = _regularised_gram(e, lamda)
    ainv = hpd_inverse(amat)
    cov = ainv @ gram @ ainv
    var_acc = torch.diagonal(cov, dim1=-2, dim2=-1).real / r  # aliased-image noise is sigma^2/R
    power = (sens.abs() ** 2).sum(dim=1).to(torch.float64)  # 1 / SD_full^2 (unit sigma)
    power = power.reshape(s, h, r, w // r).permute(0, 1, 3, 2)  # (S, H, W/R, R)
    g = torch.sqrt((var_acc * power).clamp_min(0) / r)
    g = torch.where(power > 1e-12 * power.amax(), g, torch.zeros_like(g))
    return g.permute(0, 1, 3, 2).reshape(s, h, w).to(torch.float32)


def _exact_gfactor(sens: torch.Tensor, pattern: UniformPattern, lamda: float) -> torch.Tensor:
    """g-factor of :func:`recon_engine.sense.sense_unfold_exact`: per readout row the noise
    covariance is ``A^-1 G A^-1`` (unit k-space noise, ``G = E^H E``, ``A = G + lamda I``);
    this is ``(S, H, W)`` float32 with zeros where no coil has signal."""
    s, c, h, w = sens.shape
    kmat = aliasing_operator(w, pattern, sens.device)
    lam = _exact_regularisation(sens, kmat, lamda)
    r_eff = w / float(pattern.line_mask(w).sum())
    eye = torch.eye(w, dtype=torch.complex128, device=sens.device)
    var_acc = torch.empty((s, h, w), dtype=torch.float64, device=sens.device)
    step = exact_rows_per_block(s, w)
    for r0 in range(0, h, step):
        r1 = min(h, r0 + step)
        lam_b = lam[:, None, None]
        ainv = hpd_inverse(_exact_gram(sens[:, :, r0:r1], kmat) + lam_b[..., None] * eye)
        # A^-1 G A^-1 = A^-1 - lamda A^-2 (G = A - lamda I), and A^-1 is Hermitian
        var_acc[:, r0:r1] = torch.diagonal(ainv, dim1=-2, dim2=-1).real - lam_b * (
            ainv.abs() ** 2
        ).sum(dim=-1)
    power = (sens.abs() ** 2).sum(dim=1).to(torch.float64)
    g = torch.sqrt((var_acc * power).clamp_min(0) / r_eff)
    g = torch.where(power > 1e-12 * power.amax(), g, torch.zeros_like(g))
    return g.to(torch.float32)


@dataclass
class GFactorResult:
    """g-factor ``g`` ``(S, H, W)`` with the replica SDs it came from and ``R`` used."""

    g: torch.Tensor
    sd_accelerated: torch.Tensor
    sd_full: torch.Tensor
    acceleration: float
    n_replicas: int


def _replica_sd(
    spec,
    params: dict,
    kspace: torch.Tensor,
    mask: torch.Tensor,
    acs_mask: torch.Tensor | None,
    sens: torch.Tensor | None,
    n_replicas: int,
    noise_std: float,
    gen: torch.Generator,
    batch: int,
    device: torch.device,
) -> torch.Tensor:
    """SD over replicas of the method's image, ``(S, H, W)`` (complex SD if complex)."""
    s = kspace.shape[0]
    per_slice = mask.shape[0] == s and s > 1
    total = mean = m2 = None
    done = 0
    while done < n_replicas:
        n = min(batch, n_replicas - done)
        noise = torch.randn((n, *kspace.shape), generator=gen, dtype=torch.complex64)
        ksp = ((kspace.unsqueeze(0) + noise_std * noise) * mask).reshape(n * s, *kspace.shape[1:])

        def rep(t: torch.Tensor | None, per: bool, n: int = n) -> torch.Tensor | None:
            if t is None:
                return None
            return t.repeat(n, 1, 1, 1) if per else t

        data = ReconInput(
            kspace=ksp.to(device),
            mask=rep(mask, per_slice),
            acs_mask=rep(acs_mask, acs_mask is not None and acs_mask.shape[0] == s and s > 1),
            sensitivities=rep(sens, True),
            device=device,
        )
        img = spec.run(data, params).image.reshape(n, s, *kspace.shape[-2:]).to(torch.complex128)
        # Welford-style accumulation of mean and squared deviations across chunks.
        for x in img:
            total = 1 if total is None else total + 1
            if mean is None:
                mean = x.clone()
                m2 = torch.zeros(x.shape, dtype=torch.float64)
            else:
                delta = x - mean
                mean += delta / total
                m2 += (delta.conj() * (x - mean)).real
        done += n
    return torch.sqrt(m2 / max(total - 1, 1)).to(torch.float32)


def pseudo_replica_gfactor(
    method: str,
    kspace_full: torch.Tensor,
    mask: torch.Tensor,
    noise_std: float,
    params: dict | None = None,
    acs_mask: torch.Tensor | None = None,
    sensitivities: torch.Tensor | None = None,
    n_replicas: int = 64,
    acceleration: float | None = None,
    seed: int = 0,
    batch: int = 16,
    device: torch.device | str = "cpu",
) -> GFactorResult:
    """Pseudo-replica g-factor ``(S, H, W)`` of registered ``method``.

    kspace_full: fully sampled ``(S, C, H, W)`` k-space; the accelerated data are
        ``kspace_full * mask``. Both the accelerated and the fully sampled
        reconstruction (same method and params, mask of ones, full ACS) see
        ``n_replicas`` complex white noise realisations of SD ``noise_std`` per sample.
    acceleration: ``R`` in ``g = SD_acc / (SD_full sqrt(R))``; defaults to the effective
        acceleration (all samples / sampled samples).
    sensitivities: passed to the method for every replica (fixes the maps so only the
        reconstruction's noise propagation is measured); otherwise the method
        estimates them from each noisy replica.
    """
    check_kspace(kspace_full, "kspace_full")
    if n_replicas < 2:
        raise ParameterError(f"n_replicas must be >= 2, got {n_replicas}")
    if not noise_std > 0 or not math.isfinite(noise_std):
        raise ParameterError(f"noise_std must be a positive number, got {noise_std}")
    spec = get_method(method)
    params = spec.validate(params)
    shape = tuple(kspace_full.shape)
    m = check_mask(mask, shape)
    acs = check_mask(acs_mask, shape, "ACS mask") if acs_mask is not None else None
    if sensitivities is not None:
        check_sensitivities(sensitivities, shape)
        sensitivities = sensitivities.expand(shape[0], -1, -1, -1).to(torch.complex64)
    device = torch.device(device)
    if acceleration is None:
        sampled = float(m.expand(m.shape[0], 1, shape[2], shape[3]).sum()) / m.shape[0]
        acceleration = shape[2] * shape[3] / sampled
    gen = torch.Generator().manual_seed(seed)
    kspace_full = kspace_full.to(torch.complex64).cpu()
    sd_acc = _replica_sd(
        spec,
        params,
        kspace_full,
        m.cpu(),
        acs,
        sensitivities,
        n_replicas,
        noise_std,
        gen,
        batch,
        device,
    )
    ones = torch.ones(1, 1, 1, shape[3])
    sd_full = _replica_sd(
        spec,
        params,
        kspace_full,
        ones,
        ones,
        sensitivities,
        n_replicas,
        noise_std,
        gen,
        batch,
        device,
    )
    g = sd_acc / (sd_full.clamp_min(1e-30) * math.sqrt(acceleration))
    g = torch.where(sd_full > 0, g, torch.zeros_like(g))
    return GFactorResult(g, sd_acc, sd_full, float(acceleration), n_replicas)
