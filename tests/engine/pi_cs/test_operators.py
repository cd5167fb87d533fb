"""Adjoint identities and solver checks for the linear operators (analytic references)."""

from __future__ import annotations

import pytest
import torch

from recon_engine.cs import Wavelet2D, _grad, _grad_adjoint
from recon_engine.fft import fftc, ifftc
from recon_engine.operators import SenseOperator, conjugate_gradient, power_iteration, slice_dot
from recon_engine.registry import ReconError


def _rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.complex64)


def _masks(s, h, w):
    g = torch.Generator().manual_seed(1)
    return {
        "1d": (torch.rand(1, 1, 1, w, generator=g) > 0.6).float(),
        "2d": (torch.rand(1, 1, h, w, generator=g) > 0.6).float(),
        "per-slice 1d": (torch.rand(s, 1, 1, w, generator=g) > 0.5).float(),
    }


@pytest.mark.parametrize("kind", ["1d", "2d", "per-slice 1d"])
@pytest.mark.parametrize("shape", [(3, 4, 16, 12), (2, 3, 15, 9)])
def test_sense_operator_adjoint_and_normal(kind, shape):
    s, c, h, w = shape
    op = SenseOperator(_rand(s, c, h, w, seed=2), _masks(s, h, w)[kind])
    x, y = _rand(s, h, w, seed=3), _rand(s, c, h, w, seed=4)
    lhs = slice_dot(op.forward(x), y)
    rhs = slice_dot(x, op.adjoint(y))
    torch.testing.assert_close(lhs, rhs, rtol=1e-4, atol=1e-4)
    # the shift-free / 1D-shortcut normal operator equals adjoint(forward(x))
    torch.testing.assert_close(op.normal(x), op.adjoint(op.forward(x)), rtol=1e-4, atol=1e-4)


def test_sense_forward_matches_explicit_model():
    s, c, h, w = 2, 3, 8, 10
    sens, x = _rand(s, c, h, w, seed=5), _rand(s, h, w, seed=6)
    mask = _masks(s, h, w)["2d"]
    op = SenseOperator(sens, mask)
    expected = mask * fftc(sens * x[:, None])
    torch.testing.assert_close(op.forward(x), expected)
    torch.testing.assert_close(op.adjoint(expected), (sens.conj() * ifftc(expected)).sum(1))


def test_lipschitz_bound_dominates_power_iteration():
    s, c, h, w = 2, 4, 16, 16
    sens = _rand(s, c, h, w, seed=7)
    op = SenseOperator(sens, _masks(s, h, w)["1d"])
    lam = power_iteration(op.normal, (s, h, w), n_iter=100)
    assert torch.all(lam <= op.lipschitz_bound() * 1.0001)
    # fully sampled: A^H A is pointwise multiplication by sum |s|^2, so the largest
    # eigenvalue equals the bound exactly
    full = SenseOperator(sens, torch.ones(1, 1, 1, w))
    lam_full = power_iteration(full.normal, (s, h, w), n_iter=300)
    torch.testing.assert_close(lam_full, full.lipschitz_bound(), rtol=2e-2, atol=0)


def test_conjugate_gradient_matches_dense_solve_per_slice():
    g = torch.Generator().manual_seed(0)
    n, s = 12, 3
    a = torch.randn(s, n, n, generator=g, dtype=torch.complex128)
    spd = a.conj().transpose(1, 2) @ a + 0.5 * torch.eye(n)
    b = torch.randn(s, n, generator=g, dtype=torch.complex128)

    def normal(v):
        return (spd @ v.unsqueeze(-1)).squeeze(-1)

    x, it = conjugate_gradient(normal, b, max_iter=200, tol=1e-12)
    torch.testing.assert_close(x, torch.linalg.solve(spd, b), rtol=1e-8, atol=1e-8)
    assert it <= 200
    # damping adds lambda I
    xd, _ = conjugate_gradient(normal, b, max_iter=300, tol=1e-12, damping=2.0)
    ref = torch.linalg.solve(spd + 2.0 * torch.eye(n), b)
    torch.testing.assert_close(xd, ref, rtol=1e-8, atol=1e-8)
    # batched result equals slice-by-slice
    x1, _ = conjugate_gradient(
        lambda v: (spd[1:2] @ v.unsqueeze(-1)).squeeze(-1), b[1:2], max_iter=7
    )
    x3, _ = conjugate_gradient(normal, b, max_iter=7)
    torch.testing.assert_close(x3[1:2], x1)


def test_power_iteration_matches_eigvalsh():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(2, 10, 10, generator=g, dtype=torch.complex128)
    herm = a.conj().transpose(1, 2) @ a
    lam = power_iteration(
        lambda v: (herm @ v.unsqueeze(-1)).squeeze(-1), (2, 10), 500, dtype=torch.complex128
    )
    torch.testing.assert_close(lam, torch.linalg.eigvalsh(herm)[:, -1], rtol=1e-6, atol=0)


@pytest.mark.parametrize("wavelet", ["db4", "haar"])
def test_wavelet_is_orthonormal_and_adjoint(wavelet):
    wav = Wavelet2D((32, 48), wavelet, levels=3)
    x, c = _rand(2, 32, 48, seed=8), _rand(2, 32, 48, seed=9)
    torch.testing.assert_close(
        slice_dot(wav.forward(x), c), slice_dot(x, wav.inverse(c)), rtol=1e-4, atol=1e-4
    )
    torch.testing.assert_close(wav.inverse(wav.forward(x)), x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(wav.forward(x).norm(), x.norm(), rtol=1e-5, atol=0)


def test_gradient_adjoint():
    x, p = _rand(2, 9, 7, seed=10), _rand(2, 2, 9, 7, seed=11)
    torch.testing.assert_close(
        slice_dot(_grad(x), p), slice_dot(x, _grad_adjoint(p)), rtol=1e-4, atol=1e-4
    )


def test_operator_rejects_bad_masks():
    sens = _rand(2, 3, 8, 8)
    with pytest.raises(ReconError, match="does not match"):
        SenseOperator(sens, torch.ones(1, 1, 1, 7))
    with pytest.raises(ReconError, match="only 0 and 1"):
        SenseOperator(sens, torch.full((1, 1, 1, 8), 0.5))
    with pytest.raises(ReconError, match="NaN"):
        SenseOperator(sens, torch.full((1, 1, 1, 8), float("nan")))
    with pytest.raises(ReconError, match="samples nothing"):
        SenseOperator(sens, torch.zeros(1, 1, 1, 8))
