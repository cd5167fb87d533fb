"""Benchmark: ReconTrial's torch ESPIRiT / CG-SENSE / L1-wavelet / TV against BART and SigPy.

All tools get identical inputs: an 8-coil 256x256 slice simulated from the Colin27 T1
brain in data/mri (SNR 30), undersampled at R=4 with a 1D random mask (fastMRI
semantics, 8 % centre) and a 2D Poisson-disc mask (24x24 calibration). ESPIRiT rows
compare each tool's maps with the true coil sensitivities (error = 1 - mean per-pixel
|<ours, true>| / (|ours| |true|) inside the common support). The reconstruction rows all
use the SAME maps (ours), so only the solver differs; error = NRMSE of the magnitude
against the ground-truth magnitude. CS lambdas are each tool's best of a small sweep on
the single slice (each tool scales lambda differently), then reused for the batch.

"per slice (20)" is ours on a 20-slice batch (one batched call) divided by 20; BART and
SigPy have no slice batching, so their per-slice time is the mean of a loop over
``--peer-slices`` slices of the same batch (default 4, to keep the run short).

Run: ``.venv/bin/python benchmarks/bench_classical.py [--threads 2] [--peer-slices 4]``.
Prints a Markdown table. Not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recon_engine.cs import data_scale, l1_wavelet_sense, tv_sense  # noqa: E402
from recon_engine.espirit import espirit_maps  # noqa: E402
from recon_engine.operators import SenseOperator, slices_per_chunk  # noqa: E402
from recon_engine.sampling import poisson_disc_mask, random_mask  # noqa: E402
from recon_engine.sense import cg_sense  # noqa: E402
from recon_engine.simulation import load_slices, simulate_multicoil  # noqa: E402

BART = shutil.which("bart")
LAMBDAS = (0.001, 0.002, 0.005, 0.01, 0.02)
BART_LAMBDAS = (0.001, 0.002, 0.005, 0.01, 0.02)


def writecfl(name: str, arr: np.ndarray) -> None:
    """Write a BART .cfl/.hdr pair (complex64, Fortran order)."""
    arr = np.asarray(arr, dtype=np.complex64)
    Path(name + ".hdr").write_text("# Dimensions\n" + " ".join(map(str, arr.shape)) + "\n")
    arr.ravel(order="F").tofile(name + ".cfl")


def readcfl(name: str) -> np.ndarray:
    """Read a BART .cfl/.hdr pair."""
    dims = [int(d) for d in Path(name + ".hdr").read_text().splitlines()[1].split()]
    data = np.fromfile(name + ".cfl", dtype=np.complex64, count=int(np.prod(dims)))
    return data.reshape(dims, order="F")


def nrmse(x: np.ndarray, gt: np.ndarray) -> float:
    """Magnitude NRMSE ``|| |x| - |gt| || / || gt ||`` over all slices."""
    return float(np.linalg.norm(np.abs(x) - np.abs(gt)) / np.linalg.norm(np.abs(gt)))


def map_error(maps: np.ndarray, true: np.ndarray) -> float:
    """``1 - mean |<a, b>| / (|a||b|)`` over pixels where both are non-zero (coil axis -3)."""
    inner = np.abs((maps.conj() * true).sum(-3))
    norm = np.sqrt((np.abs(maps) ** 2).sum(-3) * (np.abs(true) ** 2).sum(-3))
    both = norm > 0
    return float(1 - (inner[both] / norm[both]).mean())


def chunked(fn, *tensors: torch.Tensor) -> torch.Tensor:
    """``fn`` over slice chunks of ``tensors`` as the methods run it (``slices_per_chunk``)."""
    n = slices_per_chunk("cpu")
    s = tensors[0].shape[0]
    return torch.cat([fn(*(t[b : b + n] for t in tensors)) for b in range(0, s, n)])


def timed(fn, repeat: int = 1):
    """(result, best wall time in seconds) of ``fn()``."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


class Bart:
    """Thin wrapper running ``bart`` on one slice via cfl files in a temporary folder."""

    def __init__(self, threads: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="bench_bart_")
        self.env = {**os.environ, "OMP_NUM_THREADS": str(threads)}

    def _run(self, *args: str) -> None:
        subprocess.run(["bart", *args], check=True, capture_output=True, env=self.env)

    def ecalib(self, ksp: np.ndarray, threshold: float) -> np.ndarray:
        """ksp (C, H, W) -> maps (C, H, W); BART thresholds sigma^2, so -t = threshold^2."""
        d = self.dir
        writecfl(f"{d}/k", np.transpose(ksp, (1, 2, 0))[:, :, None, :])
        self._run("ecalib", "-m1", "-k6", "-r24", "-c0.95", f"-t{threshold**2}", f"{d}/k", f"{d}/s")
        c, h, w = ksp.shape
        return np.transpose(readcfl(f"{d}/s").reshape(h, w, c), (2, 0, 1))

    def pics(self, ksp: np.ndarray, maps: np.ndarray, *reg: str) -> np.ndarray:
        d = self.dir
        writecfl(f"{d}/k", np.transpose(ksp, (1, 2, 0))[:, :, None, :])
        writecfl(f"{d}/m", np.transpose(maps, (1, 2, 0))[:, :, None, :])
        self._run("pics", "-S", "-i30", *reg, f"{d}/k", f"{d}/m", f"{d}/x")
        return readcfl(f"{d}/x").reshape(ksp.shape[1:])


def run_mask(mname, mres, sim, args, bart, mr, thr) -> list:
    """All rows (ESPIRiT, CG-SENSE, L1-wavelet, TV) for one mask."""
    n = args.size
    gt = sim.image.numpy()
    true_maps = sim.sensitivities.numpy()
    rows = []
    mask = mres.mask
    ksp_all = sim.kspace * mask
    k1 = ksp_all[:1]
    peer_idx = range(args.peer_slices)
    mask_np = np.broadcast_to(mask[0, 0].numpy(), (n, n)).astype(np.float32)

    def esp(k):
        return espirit_maps(k, mask, mres.acs_mask, threshold=thr).maps

    espirit_maps(k1, mask, mres.acs_mask)  # warm-up
    maps1, t1 = timed(lambda k1=k1: esp(k1), 3)
    maps_all, tb = timed(lambda ksp_all=ksp_all: esp(ksp_all))
    row = {"ours": (t1, map_error(maps1.numpy(), true_maps[:1]), tb / args.slices)}
    sp_map, t_sp = timed(
        lambda: mr.app.EspiritCalib(k1[0].numpy(), thresh=thr, show_pbar=False).run()
    )
    row["SigPy"] = (t_sp, map_error(sp_map[None], true_maps[:1]), None)
    if bart:
        bm, t_b = timed(lambda: bart.ecalib(k1[0].numpy(), thr), 2)
        row["BART"] = (t_b, map_error(bm[None], true_maps[:1]), None)
    rows.append((mname, "ESPIRiT (map error)", row, {}))

    maps1_np = maps1[0].numpy()
    scale1 = float(data_scale(SenseOperator(maps1, mask).adjoint(k1))[0])
    scale_all = data_scale(SenseOperator(maps_all, mask).adjoint(ksp_all))

    # --- CG-SENSE, 30 iterations, lambda 0
    def ours_cg(k, m):
        return cg_sense(k, m, mask, 0.0, 30)[0]

    ours_cg(k1, maps1)
    x, t1 = timed(lambda: ours_cg(k1, maps1), 3)
    xb, tb = timed(lambda: chunked(ours_cg, ksp_all, maps_all))
    row = {"ours": (t1, nrmse(x.numpy(), gt[:1]), tb / args.slices)}
    sp = lambda k, m: mr.app.SenseRecon(  # noqa: E731
        k, m, weights=mask_np, lamda=0, max_iter=30, show_pbar=False
    ).run()
    xs, t_s = timed(lambda: sp(k1[0].numpy(), maps1_np), 2)
    row["SigPy"] = (t_s, nrmse(xs[None], gt[:1]), None)
    if bart:
        xbt, t_b = timed(lambda: bart.pics(k1[0].numpy(), maps1_np, "-l2", "-r0"), 2)
        row["BART"] = (t_b, nrmse(xbt[None], gt[:1]), None)
    rows.append((mname, "CG-SENSE 30 it", row, {"peer": sp, "bart": ("-l2", "-r0")}))

    # --- L1-wavelet and TV, 30 iterations, best lambda per tool
    for label, ours_fn, sp_app, bart_reg in (
        ("L1-wavelet 30 it", l1_wavelet_sense, mr.app.L1WaveletRecon, "W:3:0"),
        ("TV 30 it", tv_sense, mr.app.TotalVariationRecon, "T:3:0"),
    ):
        best = min(
            LAMBDAS,
            key=lambda lam, f=ours_fn: nrmse(f(k1, maps1, mask, lam * scale1, 30).numpy(), gt[:1]),
        )
        run1 = lambda k, m, s, f=ours_fn, lam=best: f(k, m, mask, lam * s, 30)  # noqa: E731
        x, t1 = timed(lambda run1=run1: run1(k1, maps1, scale1), 2)
        xb, tb = timed(lambda run1=run1: chunked(run1, ksp_all, maps_all, scale_all))
        row = {"ours": (t1, nrmse(x.numpy(), gt[:1]), tb / args.slices)}
        nrm_all = nrmse(xb.numpy(), gt)
        sp_best = min(
            LAMBDAS,
            key=lambda lam, a=sp_app: nrmse(
                a(
                    k1[0].numpy(),
                    maps1_np,
                    lam * scale1,
                    weights=mask_np,
                    max_iter=30,
                    show_pbar=False,
                ).run()[None],
                gt[:1],
            ),
        )
        sp = lambda k, m, a=sp_app, lam=sp_best * scale1: a(  # noqa: E731
            k, m, lam, weights=mask_np, max_iter=30, show_pbar=False
        ).run()
        xs, t_s = timed(lambda sp=sp: sp(k1[0].numpy(), maps1_np))
        row["SigPy"] = (t_s, nrmse(xs[None], gt[:1]), None)
        extra = {"peer": sp, "lambda": (best, sp_best), "ours_batch_nrmse": nrm_all}
        if bart:
            b_best = min(
                BART_LAMBDAS,
                key=lambda lam, r=bart_reg: nrmse(
                    bart.pics(k1[0].numpy(), maps1_np, "-R", f"{r}:{lam}")[None], gt[:1]
                ),
            )
            reg = ("-R", f"{bart_reg}:{b_best}")
            xbt, t_b = timed(lambda reg=reg: bart.pics(k1[0].numpy(), maps1_np, *reg), 2)
            row["BART"] = (t_b, nrmse(xbt[None], gt[:1]), None)
            extra["bart"] = reg
            extra["lambda"] = (best, sp_best, b_best)
        rows.append((mname, label, row, extra))

    # Peer per-slice times over a few slices of the batch (no slice batching there).
    for _, label, row, extra in rows[-4:]:
        if label.startswith("ESPIRiT"):
            _, t = timed(
                lambda: [
                    mr.app.EspiritCalib(ksp_all[i].numpy(), thresh=thr, show_pbar=False).run()
                    for i in peer_idx
                ]
            )
            row["SigPy"] = (*row["SigPy"][:2], t / len(peer_idx))
            if bart:
                _, t = timed(lambda: [bart.ecalib(ksp_all[i].numpy(), thr) for i in peer_idx])
                row["BART"] = (*row["BART"][:2], t / len(peer_idx))
            continue
        _, t = timed(
            lambda extra=extra: [
                extra["peer"](ksp_all[i].numpy(), maps_all[i].numpy()) for i in peer_idx
            ]
        )
        row["SigPy"] = (*row["SigPy"][:2], t / len(peer_idx))
        if bart:
            reg = extra["bart"]
            _, t = timed(
                lambda reg=reg: [
                    bart.pics(ksp_all[i].numpy(), maps_all[i].numpy(), *reg) for i in peer_idx
                ]
            )
            row["BART"] = (*row["BART"][:2], t / len(peer_idx))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--peer-slices", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import sigpy.mri as mr  # after OMP_NUM_THREADS

    n = args.size
    img = load_slices(ROOT / "data/mri/colin27_t1_1mm.nii.gz", args.slices, size=(n, n))
    sim = simulate_multicoil(img, n_coils=8, snr=30.0, seed=0)
    masks = {
        "1D random": random_mask((n, n), 4, center_fraction=0.08, seed=0),
        "2D Poisson": poisson_disc_mask((n, n), 4, calib=(24, 24), seed=0),
    }
    bart = Bart(args.threads) if BART else None
    thr = 0.02
    rows = []
    for mname, mres in masks.items():
        rows += run_mask(mname, mres, sim, args, bart, mr, thr)
    print(
        f"\nthreads: torch {torch.get_num_threads()}, OMP_NUM_THREADS={args.threads} "
        f"(BART, NumPy/SigPy); {n}x{n}, 8 coils, R=4, SNR 30; bart={'yes' if bart else 'absent'}\n"
    )
    print(
        "| mask | step | tool | time 1 slice (s) | error | per slice in batch (s) | "
        "speed-up vs fastest peer (1 slice / batch) |"
    )
    print("|---|---|---|---|---|---|---|")
    for mname, label, row, extra in rows:
        peers = {k: v for k, v in row.items() if k != "ours"}
        fast1 = min(v[0] for v in peers.values())
        fastb = min(v[2] for v in peers.values() if v[2] is not None)
        for tool, (t, err, tb) in row.items():
            sp = f"{fast1 / t:.1f}x / {fastb / tb:.1f}x" if tool == "ours" else ""
            tb_s = f"{tb:.3f}" if tb is not None else "-"
            print(f"| {mname} | {label} | {tool} | {t:.3f} | {err:.4f} | {tb_s} | {sp} |")
        if "lambda" in extra:
            print(f"| | | lambda (ours, SigPy, BART) | {extra['lambda']} | | | |")
    if bart:
        shutil.rmtree(bart.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
