"""Instability tests after Antun et al. (PNAS 2020, "On instabilities of deep learning in
image reconstruction"; code: github vegarant/Invfool).

- :func:`worst_case_perturbation`: for a method with a differentiable forward
  (``MethodSpec.differentiable``), a k-space perturbation ``e`` on the *sampled* positions
  with ``||e|| = epsilon * ||y||`` found by projected gradient ascent on
  ``||f(y + e) - f(y)||^2``, against random perturbations of the same norm.
- :func:`more_data_check`: the reconstruction error against the reference for nested
  masks (every lower-R mask contains the higher-R one); flags any step where more data gave
  a worse image.
- :func:`tiny_structure_check`: does a small inserted finding appear in the
  reconstruction (its contrast recovered, its change localised at the finding)?

Norms are Euclidean over all samples/pixels; "relative change" is ``||f(y+e) - f(y)|| /
||f(y)||``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from recon_engine.fidelity.lesions import Lesion, lesion_twins
from recon_engine.pipeline import reconstruct_kspace
from recon_engine.registry import ParameterError, get_method
from recon_engine.sampling import center_block

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def differentiable_forward(method: str, params: dict | None = None, device="cpu") -> Forward:
    """The method's autograd forward, or ParameterError saying it has none (skip the attack)."""
    spec = get_method(method)
    if spec.differentiable is None:
        raise ParameterError(
            f"method {method!r} has no differentiable forward: the gradient attack is skipped "
            "for it (the random-perturbation, more-data and tiny-structure tests still apply)"
        )
    return spec.differentiable(params or {}, torch.device(device))


def _project(e: torch.Tensor, mask: torch.Tensor, radius: float) -> torch.Tensor:
    e = e * mask
    norm = float(torch.linalg.vector_norm(e))
    return e * (radius / norm) if norm > 0 else e


def _random_direction(like: torch.Tensor, mask: torch.Tensor, generator) -> torch.Tensor:
    draws = torch.randn((*like.shape, 2), generator=generator, dtype=torch.float32)
    if like.is_complex():
        return torch.view_as_complex(draws).to(like.dtype) * mask
    return draws[..., 0].to(like.dtype) * mask


def worst_case_perturbation(
    forward: Forward,
    kspace: torch.Tensor,
    mask: torch.Tensor,
    epsilon: float,
    steps: int = 20,
    n_random: int = 8,
    seed: int = 0,
) -> dict:
    """Worst-case vs random change of ``forward`` for perturbations of relative norm epsilon.

    kspace: ``(S, C, H, W)`` (zeros where not sampled) or a real vector for a generic
    forward; mask: 0/1 broadcastable to it. Gradient ascent with normalised steps of
    ``radius / 4`` projected back onto the sphere ``||M e|| = radius`` (radius =
    ``epsilon * ||M y||``), best iterate kept. Returns relative output changes
    ``worst_change`` and ``random_change`` (mean over ``n_random`` draws), their
    ``ratio``, the radius and the perturbation itself (``perturbation``, a tensor).
    """
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ParameterError(f"epsilon must be a positive relative norm, got {epsilon}")
    if steps < 1 or n_random < 1:
        raise ParameterError("need at least one ascent step and one random draw")
    mask = torch.as_tensor(mask).to(torch.float32)
    y = kspace * mask
    radius = epsilon * float(torch.linalg.vector_norm(y))
    if radius == 0:
        raise ParameterError("the measured k-space is zero: nothing to perturb")
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        baseline = forward(y, mask)
    scale = float(torch.linalg.vector_norm(baseline)) or 1.0

    def change(e: torch.Tensor) -> float:
        with torch.no_grad():
            return float(torch.linalg.vector_norm(forward(y + e, mask) - baseline)) / scale

    random_changes = [
        change(_project(_random_direction(y, mask, generator), mask, radius))
        for _ in range(n_random)
    ]
    e = _project(_random_direction(y, mask, generator), mask, radius)
    best, best_e = change(e), e.detach()
    for _ in range(steps):
        e = e.detach().requires_grad_(True)
        loss = (forward(y + e, mask) - baseline).pow(2).sum()
        (grad,) = torch.autograd.grad(loss, e)
        grad = grad * mask
        norm = float(torch.linalg.vector_norm(grad))
        if norm == 0:
            break
        e = _project(e.detach() + grad * (radius / 4 / norm), mask, radius)
        value = change(e)
        if value > best:
            best, best_e = value, e.detach()
    random_change = float(np.mean(random_changes))
    return {
        "epsilon": float(epsilon),
        "radius": radius,
        "worst_change": best,
        "random_change": random_change,
        "random_change_max": float(np.max(random_changes)),
        "ratio": best / random_change if random_change > 0 else math.inf,
        "steps": steps,
        "perturbation": best_e,
    }


def instability_curve(
    forward: Forward,
    kspace: torch.Tensor,
    mask: torch.Tensor,
    epsilons: Sequence[float] = (0.005, 0.01, 0.02, 0.05),
    steps: int = 20,
    n_random: int = 8,
    seed: int = 0,
) -> list[dict]:
    """:func:`worst_case_perturbation` per epsilon, without the perturbation tensors."""
    rows = []
    for eps in epsilons:
        row = worst_case_perturbation(forward, kspace, mask, eps, steps, n_random, seed)
        row.pop("perturbation")
        rows.append(row)
    return rows


def nested_column_masks(
    width: int, accelerations: Sequence[float], center_fraction: float = 0.08, seed: int = 0
) -> dict[float, torch.Tensor]:
    """``{R: (1, 1, 1, W) mask}`` with a common centre and nested random columns.

    The centre block (``round(W * center_fraction)`` columns) is always sampled; the other
    columns are taken in one seeded random order, the first ``round(W / R) - centre`` of it
    for each R, so a lower R's mask contains every higher R's mask (more data, same data).
    """
    if not accelerations or any(not (math.isfinite(r) and r >= 1) for r in accelerations):
        raise ParameterError(f"accelerations must be numbers >= 1, got {list(accelerations)}")
    n_center = max(2, round(width * center_fraction))
    center = np.zeros(width, dtype=bool)
    center[center_block(width, n_center)] = True
    order = np.random.default_rng(seed).permutation(np.flatnonzero(~center))
    masks = {}
    for r in accelerations:
        n_extra = max(0, min(len(order), round(width / r) - n_center))
        line = center.copy()
        line[order[:n_extra]] = True
        masks[float(r)] = torch.as_tensor(line, dtype=torch.float32).reshape(1, 1, 1, width)
    return masks


def _nrmse(image: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(image - reference) / np.linalg.norm(reference))


def more_data_check(
    method: str,
    kspace: torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    accelerations: Sequence[float] = (8, 6, 4, 3, 2),
    params: dict | None = None,
    center_fraction: float = 0.08,
    seed: int = 0,
    tolerance: float = 0.0,
    device=None,
) -> dict:
    """NRMSE against ``reference`` per R over nested masks (:func:`nested_column_masks`).

    kspace: ``(S, C, H, W)`` fully sampled; reference: ``(S, H, W)`` or ``(H, W)``
    magnitude. ``worse_with_more_data`` lists the ``(R_high, R_low)`` pairs where the
    lower R (a superset of samples) gave an NRMSE more than ``tolerance`` above the higher R.
    """
    reference = np.abs(np.asarray(reference, dtype=np.float64))
    masks = nested_column_masks(kspace.shape[-1], accelerations, center_fraction, seed)
    rows = []
    for r in sorted(masks, reverse=True):
        result = reconstruct_kspace(
            kspace * masks[r], masks[r], method, params, device=device, progress=False
        )
        rows.append({"acceleration": r, "nrmse": _nrmse(np.abs(result.volume), reference)})
    worse = [
        (high["acceleration"], low["acceleration"])
        for high, low in zip(rows, rows[1:], strict=False)
        if low["nrmse"] > high["nrmse"] + tolerance
    ]
    return {"method": method, "rows": rows, "worse_with_more_data": worse}


def tiny_structure_check(
    method: str,
    magnitude: np.ndarray | torch.Tensor,
    pixel_mm: float,
    lesion: Lesion,
    acceleration: float,
    params: dict | None = None,
    snr: float = 1e4,
    center_fraction: float = 0.08,
    seed: int = 0,
    min_recovery: float = 0.5,
    device=None,
) -> dict:
    """Does a small finding survive the reconstruction? (nearly noiseless twins, same mask)

    ``recovery``: mean reconstructed change over the truth / mean true change;
    ``localised``: the largest reconstructed change lies within two pixels of the truth.
    ``appears`` = recovery >= ``min_recovery`` and localised.
    """
    twins = lesion_twins(magnitude, lesion, pixel_mm, n_realisations=1, snr=snr, seed=seed)
    mask = nested_column_masks(twins.kspace_absent.shape[-1], [acceleration], center_fraction, seed)
    mask = mask[float(acceleration)]
    images = []
    for kspace in (twins.kspace_absent, twins.kspace_present):
        result = reconstruct_kspace(
            kspace * mask, mask, method, params, device=device, progress=False
        )
        images.append(np.abs(result.volume[0]).astype(np.float64))
    truth = twins.truth.numpy()
    change = images[1] - images[0]
    true_change = (twins.image_present.abs() - twins.image_absent.abs()).numpy()
    recovery = float(change[truth].mean() / true_change[truth].mean())
    peak = np.unravel_index(np.argmax(np.abs(change)), change.shape)
    rows, cols = np.nonzero(truth)
    distance = float(np.min(np.hypot(rows - peak[0], cols - peak[1])))
    localised = distance <= 2.0
    return {
        "method": method,
        "acceleration": float(acceleration),
        "kind": lesion.kind,
        "size_mm": lesion.size_mm,
        "contrast": lesion.contrast,
        "recovery": recovery,
        "peak_distance_px": distance,
        "appears": bool(recovery >= min_recovery and localised),
    }
