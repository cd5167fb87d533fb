"""Linear operators and solvers for model-based reconstruction, batched over slices.

The SENSE model (Pruessmann et al. 1999/2001) maps a coil-combined image ``x``
``(S, H, W)`` to undersampled multi-coil k-space ``y = M F (s * x)`` ``(S, C, H, W)``,
with ``s`` the coil sensitivities, ``F`` the centred orthonormal 2D FFT
(:func:`recon_engine.fft.fftc`) and ``M`` a 0/1 sampling mask.

Why hand-written: SigPy's ``linop.Sense`` is NumPy/CuPy and works one slice at a
time, BART is a separate C program; the platform needs torch operators that batch
slices on CPU or CUDA and feed the iterative solvers in :mod:`recon_engine.sense`
and :mod:`recon_engine.cs`. Two exact shortcuts make the normal operator cheap:

* the FFT shifts are permutations of the pixel grid, so pointwise products commute
  with them; the sensitivities and the mask are stored pre-shifted and only the
  (coil-combined, C times smaller) image is rolled per call;
* for a 1D mask (same on every readout row) ``F^H M F`` factorises as
  ``I_H (x) F_W^H M_W F_W``: the readout FFT cancels and only 1D FFTs along the
  phase-encode axis are needed (half the FFT work).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from recon_engine.fft import fftc, ifftc
from recon_engine.registry import ReconError

__all__ = [
    "SenseOperator",
    "slices_per_chunk",
    "check_kspace",
    "check_mask",
    "check_sensitivities",
    "conjugate_gradient",
    "power_iteration",
    "slice_dot",
    "slice_norm",
]


def slices_per_chunk(device: torch.device | str) -> int:
    """How many slices a solver should process at once on ``device``.

    Measured on 2 CPU cores (8 coils, 256 x 256, 30 CG iterations): 0.12 s per slice
    one slice at a time, 0.17 s in chunks of 4 and 0.51 s in one 20-slice batch, because
    a slice's coil arrays (4 MB) stay in cache while a batch's do not. GPUs need large
    batches to be busy, so they get 16.
    """
    return 16 if torch.device(device).type == "cuda" else 1


def check_kspace(kspace: torch.Tensor, name: str = "kspace") -> None:
    """Raise :class:`ReconError` unless ``kspace`` is a finite complex ``(S, C, H, W)`` tensor."""
    if not isinstance(kspace, torch.Tensor):
        raise ReconError(f"{name} must be a torch.Tensor, got {type(kspace).__name__}")
    if kspace.ndim != 4:
        raise ReconError(
            f"{name} must have 4 dimensions (slices, coils, readout, phase encode), "
            f"got shape {tuple(kspace.shape)}"
        )
    if not kspace.is_complex():
        raise ReconError(f"{name} must be complex (complex64), got {kspace.dtype}")
    if min(kspace.shape) == 0:
        raise ReconError(f"{name} is empty: shape {tuple(kspace.shape)}")
    if not bool(torch.isfinite(torch.view_as_real(kspace)).all()):
        raise ReconError(f"{name} contains NaN or infinite values")


def check_mask(mask: torch.Tensor, shape: tuple[int, ...], name: str = "mask") -> torch.Tensor:
    """Return ``mask`` as float32 ``(1|S, 1, 1|H, W)``; raise if it cannot broadcast to ``shape``.

    ``shape`` is the k-space shape ``(S, C, H, W)``. A 1D ``(W,)`` or 2D ``(H, W)`` mask
    is promoted to 4D. Values must be finite and 0/1.
    """
    if not isinstance(mask, torch.Tensor):
        raise ReconError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    m = mask
    if m.ndim == 1:
        m = m.reshape(1, 1, 1, -1)
    elif m.ndim == 2:
        m = m.reshape(1, 1, *m.shape)
    if m.ndim != 4:
        raise ReconError(f"{name} must be (1|S, 1, 1|H, W), got shape {tuple(mask.shape)}")
    s, _, h, w = shape
    ok = m.shape[0] in (1, s) and m.shape[1] == 1 and m.shape[2] in (1, h) and m.shape[3] == w
    if not ok:
        raise ReconError(
            f"{name} shape {tuple(mask.shape)} does not match k-space shape {tuple(shape)}; "
            "expected (1|S, 1, 1|H, W)"
        )
    if m.is_complex():
        m = m.real
    m = m.to(torch.float32)
    if not bool(torch.isfinite(m).all()):
        raise ReconError(f"{name} contains NaN or infinite values")
    if not bool(((m == 0) | (m == 1)).all()):
        raise ReconError(f"{name} must contain only 0 and 1")
    if not bool(m.any()):
        raise ReconError(f"{name} samples nothing (all zeros)")
    return m


def check_sensitivities(sens: torch.Tensor, shape: tuple[int, ...]) -> None:
    """Raise unless ``sens`` is a finite complex ``(S|1, C, H, W)`` tensor matching ``shape``."""
    if not isinstance(sens, torch.Tensor) or sens.ndim != 4:
        got = tuple(sens.shape) if isinstance(sens, torch.Tensor) else type(sens).__name__
        raise ReconError(f"sensitivities must be (S, C, H, W), got {got}")
    s, c, h, w = shape
    if sens.shape[0] not in (1, s) or tuple(sens.shape[1:]) != (c, h, w):
        raise ReconError(
            f"sensitivities shape {tuple(sens.shape)} does not match k-space {tuple(shape)}"
        )
    if not bool(torch.isfinite(torch.view_as_real(sens.to(torch.complex64))).all()):
        raise ReconError("sensitivities contain NaN or infinite values")


def slice_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-slice inner product ``<a, b> = sum conj(a) b`` over all but the first axis, ``(S,)``."""
    return (a.conj() * b).reshape(a.shape[0], -1).sum(dim=1)


def slice_norm(a: torch.Tensor) -> torch.Tensor:
    """Per-slice Euclidean norm over all but the first axis, real ``(S,)``."""
    return torch.linalg.vector_norm(a.reshape(a.shape[0], -1), dim=1)


def _per_slice(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.reshape(v.shape[0], *([1] * (ndim - 1)))


class SenseOperator:
    """``A x = M F (s x)`` for images ``(S, H, W)`` and k-space ``(S, C, H, W)``.

    sens: ``(S|1, C, H, W)`` complex coil sensitivities.
    mask: float32 0/1, broadcastable to k-space (``(1|S, 1, 1|H, W)``).

    ``forward``/``adjoint`` are exact adjoints (orthonormal FFT). ``normal`` is
    ``A^H A`` computed with the shortcuts described in the module docstring.
    """

    def __init__(self, sens: torch.Tensor, mask: torch.Tensor) -> None:
        if sens.ndim != 4 or not sens.is_complex():
            raise ReconError(f"sensitivities must be complex (S, C, H, W), got {sens.shape}")
        _, c, h, w = sens.shape
        s = max(sens.shape[0], mask.shape[0] if mask.ndim == 4 else 1)
        self.sens = sens
        self.mask = check_mask(mask.to(sens.device), (s, c, h, w))
        if sens.shape[0] not in (1, s):
            raise ReconError(f"mask has {mask.shape[0]} slices, sensitivities {sens.shape[0]}")
        self.shape = (s, c, h, w)
        self.one_d = self.mask.shape[2] == 1
        dims = (-1,) if self.one_d else (-2, -1)
        self._dims = dims
        # Pre-shifted sensitivities and mask for the shift-free normal operator.
        self._sens_s = torch.fft.ifftshift(sens, dim=(-2, -1))
        self._sens_s_conj = self._sens_s.conj()
        self._mask_u = torch.fft.ifftshift(self.mask, dim=dims).to(sens.dtype)

    @property
    def n_slices(self) -> int:
        return self.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``(S, H, W)`` -> sampled multi-coil k-space ``(S, C, H, W)``."""
        return self.mask * fftc(self.sens * x.unsqueeze(1))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Multi-coil k-space ``(S, C, H, W)`` -> image ``(S, H, W)`` (``A^H y``)."""
        return (self.sens.conj() * ifftc(self.mask * y)).sum(dim=1)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x`` for ``x`` ``(S, H, W)``, without FFT shifts (see module docstring)."""
        xs = torch.fft.ifftshift(x, dim=(-2, -1))
        z = self._sens_s * xs.unsqueeze(1)
        z = torch.fft.fftn(z, dim=self._dims)
        z.mul_(self._mask_u)
        z = torch.fft.ifftn(z, dim=self._dims)
        out = z.mul_(self._sens_s_conj).sum(dim=1)
        return torch.fft.fftshift(out, dim=(-2, -1))

    def lipschitz_bound(self) -> torch.Tensor:
        """Upper bound on ``||A^H A||`` per slice: ``max_r sum_c |s_c(r)|^2`` (``(S,)``).

        Valid because ``||M F|| <= 1``; it equals 1 for ESPIRiT maps, so solvers can
        skip a power iteration.
        """
        power = (self.sens.abs() ** 2).sum(dim=1)
        return power.reshape(power.shape[0], -1).amax(dim=1).clamp_min(1e-12)


def conjugate_gradient(
    normal: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    x0: torch.Tensor | None = None,
    max_iter: int = 30,
    tol: float = 0.0,
    damping: float = 0.0,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, int]:
    """Solve ``(N + damping I) x = rhs`` by conjugate gradients, independently per slice.

    ``normal`` must be Hermitian positive semi-definite and act on ``(S, ...)``
    tensors slice by slice; step sizes are per slice, so a batch gives the same
    result as slice-by-slice solves. Stops after ``max_iter`` iterations or when every
    slice's residual norm is below ``tol * ||rhs||``. Returns ``(x, iterations)``.
    """
    if max_iter < 0:
        raise ReconError(f"max_iter must be >= 0, got {max_iter}")

    def apply(v: torch.Tensor) -> torch.Tensor:
        out = normal(v)
        return out + damping * v if damping else out

    x = torch.zeros_like(rhs) if x0 is None else x0.clone()
    r = rhs - apply(x) if x0 is not None else rhs.clone()
    p = r.clone()
    rs = slice_dot(r, r).real
    rhs_norm = slice_norm(rhs)
    it = 0
    for it in range(1, max_iter + 1):
        ap = apply(p)
        denom = slice_dot(p, ap).real
        alpha = torch.where(denom > 0, rs / denom.clamp_min(1e-30), torch.zeros_like(rs))
        alpha_b = _per_slice(alpha, rhs.ndim).to(rhs.dtype)
        x.add_(alpha_b * p)
        r.sub_(alpha_b * ap)
        rs_new = slice_dot(r, r).real
        if callback is not None:
            callback(it, x)
        if tol > 0 and bool((rs_new.sqrt() <= tol * rhs_norm).all()):
            break
        beta = torch.where(rs > 0, rs_new / rs.clamp_min(1e-30), torch.zeros_like(rs))
        p = r + _per_slice(beta, rhs.ndim).to(rhs.dtype) * p
        rs = rs_new
    return x, it


def power_iteration(
    op: Callable[[torch.Tensor], torch.Tensor],
    shape: tuple[int, ...],
    n_iter: int = 30,
    dtype: torch.dtype = torch.complex64,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> torch.Tensor:
    """Largest eigenvalue per slice ``(S,)`` of a Hermitian PSD operator acting on ``shape``.

    Used for FISTA / primal-dual step sizes when no analytic bound is available.
    Starts from a seeded random vector (deterministic).
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=dtype).to(device)
    x = x / _per_slice(slice_norm(x), x.ndim).clamp_min(1e-30)
    lam = torch.zeros(shape[0], device=device)
    for _ in range(n_iter):
        y = op(x)
        lam = slice_dot(x, y).real
        x = y / _per_slice(slice_norm(y), y.ndim).clamp_min(1e-30)
    return lam
