"""Reconstruction-job throughput per method: jobs per minute for one 20-slice, 8-coil,
256 x 256 case on this machine (not a test).

Each "job" is what a worker does for one protocol: read the raw file, apply the
protocol's sampling, reconstruct, compute metrics, write the float volume and the DICOM
series. Celery and database overhead (milliseconds) are left out.

    .venv/bin/python benchmarks/bench_jobs.py [--slices 20] [--matrix 256] [--methods a,b]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mriplatform.settings")

import django  # noqa: E402

django.setup()

import torch  # noqa: E402

from mriplatform.jobs import engine  # noqa: E402
from mriplatform.protocols.demo import DEMO_PROTOCOLS, REFERENCE  # noqa: E402
from recon_engine.device import default_device  # noqa: E402
from recon_engine.registry import get_method  # noqa: E402
from recon_engine.simulation import simulate_fastmri_file  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--matrix", type=int, default=256)
    parser.add_argument("--methods", default="", help="comma-separated subset")
    args = parser.parse_args()
    wanted = set(filter(None, args.methods.split(",")))
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "case.h5"
        simulate_fastmri_file(
            ROOT / "data/mri/colin27_t1_1mm.nii.gz",
            raw,
            n_slices=args.slices,
            matrix=(args.matrix, args.matrix),
            n_coils=8,
            snr=40.0,
            spread=0.3,
            seed=1,
        )
        case = SimpleNamespace(subject_code="BENCH-0001")
        print(
            f"case: {args.slices} slices x 8 coils x {args.matrix}^2, torch "
            f"{torch.__version__}, {torch.get_num_threads()} threads, device "
            f"{default_device()}"
        )
        print("| protocol | method | seconds per job | jobs per minute | PSNR (dB) | SSIM |")
        print("|---|---|---|---|---|---|")
        for name, method, pattern, acceleration, params, sms in [REFERENCE, *DEMO_PROTOCOLS]:
            if wanted and method not in wanted:
                continue
            protocol = SimpleNamespace(
                name=name,
                method=method,
                mask_pattern=pattern,
                acceleration=acceleration,
                params=get_method(method).validate(params),
                sms_factor=sms,
                mask_seed=0,
                center_fraction=0.08,
            )
            start = time.perf_counter()
            result = engine.reconstruct_series(raw, protocol)
            engine.write_volume(Path(tmp) / f"{method}.h5", result)
            engine.dicom_slices(result, case, description=name)
            seconds = time.perf_counter() - start
            psnr = result.metrics.get("psnr")
            print(
                f"| {name} | {method} | {seconds:.2f} | {60 / seconds:.1f} | "
                f"{'inf' if psnr is None else f'{psnr:.2f}'} | "
                f"{result.metrics.get('ssim', float('nan')):.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
