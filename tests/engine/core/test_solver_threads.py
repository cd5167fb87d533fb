"""Every classical solver finishes after ``torch.set_num_threads(2)`` (issue 17).

With oneMKL, a batched LU solve (``torch.linalg.solve``) of >= ~160 unknowns with batch
>= 2 after ``torch.set_num_threads(2)`` printed "Intel oneMKL ERROR: Parameter 6 was
incorrect on entry to ZLASWP" and spun forever. The engine now solves its (Hermitian
positive definite) normal equations by Cholesky. The methods run in a subprocess so a
hang is killed by the time limit instead of stalling the test run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from recon_engine import grappa as grappa_module
from recon_engine.grappa import grappa_kspace
from recon_engine.linalg import hpd_inverse, solve_hpd
from recon_engine.registry import ReconError
from recon_engine.sampling import make_mask

ROOT = Path(__file__).resolve().parents[3]

# The exact sizes that hung: GRAPPA's default 4x5 kernel with 8 coils (160 unknowns) on
# 2 slices, 2D GRAPPA's 5x5 window with 8 coils (200), slice-GRAPPA's 5x5 kernel with 16
# coils (400) and in-plane 4x5 with 16 coils (320); plus every other classical method.
_SCRIPT = textwrap.dedent(
    """
    import time
    import torch
    torch.set_num_threads(2)
    from recon_engine.registry import ReconInput, get_method
    from recon_engine.sampling import make_mask
    from recon_engine.simulation import simulate_multicoil

    def phantom(n_slices, size):
        y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size),
                              indexing="ij")
        img = ((x / 0.8) ** 2 + (y / 0.9) ** 2 < 1).float() * (1 + 0.5 * x)
        return img.expand(n_slices, size, size).contiguous()

    def run(name, data, mask, params=None):
        t0 = time.perf_counter()
        spec = get_method(name)
        out = spec.run(ReconInput(kspace=data.kspace * mask.mask, mask=mask.mask,
                                  acs_mask=mask.acs_mask), spec.validate(params))
        assert torch.isfinite(out.image.abs()).all(), name
        print(f"{name} {params or ''} {time.perf_counter() - t0:.1f} s", flush=True)

    sim8 = simulate_multicoil(phantom(2, 64), n_coils=8, snr=50.0, seed=0)
    uniform = make_mask("uniform", (64, 64), 2, acs_lines=24)
    for name in ("grappa", "sense", "cg_sense", "cs_tv", "cs_wavelet", "zero_filled"):
        run(name, sim8, uniform)
    caipi = make_mask("caipirinha", (64, 64), 4, ry=2, rz=2, shift=1, calib=(24, 24))
    run("grappa", sim8, caipi)
    sim16 = simulate_multicoil(phantom(4, 64), n_coils=16, snr=50.0, seed=0)
    full = make_mask("uniform", (64, 64), 1)
    for name in ("sms_slice_grappa", "sms_sense"):
        run(name, sim16, full)
    inplane = make_mask("uniform", (64, 64), 2, acs_lines=32)
    run("sms_slice_grappa", sim16, inplane)
    print("ALL DONE", flush=True)
    """
)


def test_every_classical_solver_finishes_with_two_threads():
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _SCRIPT],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=420,  # minutes of CPU on a loaded 2-core machine; a hang never finishes
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"a solver hung with 2 threads; output so far:\n{exc.stdout}{exc.stderr}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ALL DONE" in proc.stdout
    assert "oneMKL ERROR" not in proc.stdout + proc.stderr


def _hpd_batch(n: int, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn((batch, 2 * n, n), generator=g, dtype=torch.complex128)
    gram = a.conj().transpose(-1, -2) @ a + 0.01 * torch.eye(n, dtype=torch.complex128)
    rhs = torch.randn((batch, n, 3), generator=g, dtype=torch.complex128)
    return gram, rhs


def test_cholesky_solve_matches_lu_solve_and_inverse():
    gram, rhs = _hpd_batch(40, 3)  # small enough that LU does not hang
    torch.testing.assert_close(solve_hpd(gram, rhs), torch.linalg.solve(gram, rhs))
    torch.testing.assert_close(hpd_inverse(gram), torch.linalg.inv(gram))
    # batch dims broadcast as in sms.py: one matrix per group, several right-hand sides
    many = rhs[:, None].expand(3, 2, 40, 3)
    torch.testing.assert_close(
        solve_hpd(gram[:, None], many), torch.linalg.solve(gram, rhs)[:, None].expand(3, 2, 40, 3)
    )


def test_singular_system_is_a_clear_error():
    with pytest.raises(ReconError, match="singular"):
        solve_hpd(torch.zeros(2, 5, 5, dtype=torch.complex128), torch.ones(2, 5, 1))


def test_grappa_kspace_is_the_same_as_with_the_lu_solver(monkeypatch, sim8):
    """A 2x3 kernel (48 unknowns, LU does not hang) gives the same k-space either way."""
    mask = make_mask("uniform", (96, 96), 3, acs_lines=24)
    ksp = sim8.kspace[:2] * mask.mask
    ours = grappa_kspace(ksp, mask.mask, kernel_ry=2, kernel_rx=3).kspace
    monkeypatch.setattr(grappa_module, "solve_hpd", torch.linalg.solve)
    theirs = grappa_kspace(ksp, mask.mask, kernel_ry=2, kernel_rx=3).kspace
    err = torch.linalg.norm(ours - theirs) / torch.linalg.norm(theirs)
    assert err < 1e-5
