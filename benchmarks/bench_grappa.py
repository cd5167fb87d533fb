"""Benchmark: ReconTrial GRAPPA (torch, batched) against pygrappa's cgrappa and mdgrappa.

Identical inputs: 8-coil 256x256 k-space simulated from the MNI152 T1 brain shipped in
data/mri (``recon_engine.simulation``), undersampled at R=4 with a uniform mask (24 ACS
lines) and a fastMRI random mask (24 ACS lines), one slice and a 20-slice batch. Two
volume NRMSEs ``||a - b|| / ||b||`` of the RSS image: against the RSS of the fully
sampled (noisy) k-space, and against the noiseless truth ``|image|`` (the coil maps are
sum-of-squares normalised, so that is the RSS of noiseless data). Times are wall-clock
seconds of the k-space completion (calibration + interpolation), best of ``--repeats``
runs after one warm-up (pygrappa's 20-slice runs: one run after the warm-up). "filled"
is the share of the missing samples a method estimated: with NumPy 2.x pygrappa's
``cgrappa`` leaves many holes at zero (it also wins NRMSE-against-noisy-data that way, as
zero beats an estimate where the reference is pure noise), ``mdgrappa`` fills them.

Run: ``.venv/bin/python benchmarks/bench_grappa.py`` (prints a Markdown table).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from pygrappa import cgrappa, mdgrappa

from recon_engine.device import default_device, describe_device
from recon_engine.fft import ifftc, rss
from recon_engine.grappa import find_acs, grappa_kspace
from recon_engine.sampling import random_mask, uniform_mask
from recon_engine.simulation import load_slices, simulate_multicoil

ROOT = Path(__file__).resolve().parents[1]
VOLUME = ROOT / "data" / "mri" / "mni152_2009a_t1_1mm.nii.gz"


def _nrmse(pred: torch.Tensor, ref: torch.Tensor) -> float:
    return float(torch.linalg.norm(pred - ref) / torch.linalg.norm(ref))


def _best_time(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _ours(kspace: torch.Tensor, mask: torch.Tensor, device: torch.device, **kw):
    def fn():
        out = grappa_kspace(kspace, mask, device=device, **kw).kspace
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out

    return fn


def _pygrappa(kspace: torch.Tensor, mask: torch.Tensor, which):
    """pygrappa on each slice in turn (it has no batch axis), coils last, ACS given."""
    h = kspace.shape[-2]
    rows, cols = find_acs(mask.reshape(1, -1).expand(h, -1))
    slices = [k.permute(1, 2, 0).numpy().astype(np.complex128) for k in kspace]

    def fn():
        out = []
        for ku in slices:
            calib = np.ascontiguousarray(ku[rows, cols])
            out.append(which(ku, calib, kernel_size=(5, 5), coil_axis=-1, lamda=0.01))
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(torch.complex64)

    return fn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--snr", type=float, default=30.0, help="0 = noiseless")
    args = parser.parse_args()
    device = default_device()
    torch.manual_seed(0)
    images = load_slices(VOLUME, args.slices, size=(256, 256))
    data = simulate_multicoil(images, n_coils=8, snr=args.snr or None, seed=0)
    full = data.kspace
    shape = tuple(full.shape[-2:])
    masks = {
        "uniform R=4, 24 ACS": uniform_mask(shape, 4, acs_lines=24).mask,
        "random R=4, 24 ACS": random_mask(shape, 4, center_fraction=24 / shape[1], seed=0).mask,
    }
    print(f"device: {describe_device(device)}; SNR {args.snr}; 8 coils, 256x256\n")
    print(
        "| mask | slices | method | time total (s) | time / slice (s) "
        "| NRMSE vs full | NRMSE vs truth | filled |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for mask_name, mask in masks.items():
        for n in (1, args.slices):
            k = full[:n] * mask
            runs = {
                "ours (4x5 kernel)": _ours(k, mask, device, kernel_ry=4, kernel_rx=5),
                "ours (2x5 kernel)": _ours(k, mask, device, kernel_ry=2, kernel_rx=5),
                "pygrappa cgrappa (5x5)": _pygrappa(k, mask, cgrappa),
                "pygrappa mdgrappa (5x5)": _pygrappa(k, mask, mdgrappa),
            }
            for name, fn in runs.items():
                reps = args.repeats if n == 1 or name.startswith("ours") else 1
                seconds, out = _best_time(fn, reps)
                image = rss(ifftc(out.cpu()), coil_dim=1)
                err_full = _nrmse(image, rss(ifftc(full[:n]), coil_dim=1))
                err_truth = _nrmse(image, data.image[:n].abs())
                holes = (mask == 0).expand_as(out)
                filled = float((out.cpu()[holes] != 0).float().mean())
                print(
                    f"| {mask_name} | {n} | {name} | {seconds:.3f} | {seconds / n:.4f} "
                    f"| {err_full:.4f} | {err_truth:.4f} | {filled:.1%} |"
                )


if __name__ == "__main__":
    main()
