"""Time a fidelity run and write its detectability-vs-size table (a benchmark, not a test).

Default: the issue's run, 6 methods x 2 accelerations x 5 lesion sizes x 50 noise
realisations on one 8-coil 256² slice (the central axial slice of the shipped Colin27 T1),
with the realisations batched: per method and R, one batched reconstruction of the 50
lesion-absent acquisitions and one per lesion size of the lesion-present ones
(:func:`recon_engine.fidelity.detectability.detectability`). Prints the time per method and
R and the total, and the smallest size detected (CHO and NPW, AUC >= 0.9) per method and R.

    nice .venv/bin/python benchmarks/bench_fidelity.py [--size 256] [--realisations 50]
        [--methods zero_filled,grappa,cg_sense,cs_tv,unet,varnet] [--accelerations 4,8]
        [--sizes 1,2,3,5,8] [--pixel-mm MM] [--threads 2] [--out rows.csv]
        [--summary summary.json]

Rows are appended to ``--out`` as each method and R finishes, so an interrupted run keeps
what it measured. Methods marked demonstration-only in the registry are flagged in the
summary.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recon_engine.fidelity.cli import DEFAULT_VOLUME, background_slice  # noqa: E402
from recon_engine.fidelity.detectability import (  # noqa: E402
    FidelitySetting,
    detectability,
    smallest_detected,
)
from recon_engine.registry import get_method  # noqa: E402

DEFAULT_METHODS = "zero_filled,grappa,cg_sense,cs_tv,unet,varnet"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", default=str(DEFAULT_VOLUME))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--pixel-mm", type=float, default=None)
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--accelerations", default="4,8")
    parser.add_argument("--sizes", default="1,2,3,5,8")
    parser.add_argument("--realisations", type=int, default=50)
    parser.add_argument("--contrast", type=float, default=-0.3)
    parser.add_argument("--snr", type=float, default=20.0)
    parser.add_argument("--pattern", default="random")
    parser.add_argument("--center-fraction", type=float, default=0.08)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="var/bench_fidelity_rows.csv")
    parser.add_argument("--summary", default="var/bench_fidelity_summary.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image, pixel_mm = background_slice(args.volume, args.size, pixel_mm=args.pixel_mm)
    setting = FidelitySetting(
        contrast=args.contrast,
        n_realisations=args.realisations,
        snr=args.snr,
        pattern=args.pattern,
        center_fraction=args.center_fraction,
    )
    sizes = [float(x) for x in args.sizes.split(",")]
    out, summary_path = Path(args.out), Path(args.summary)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"{args.size}² slice, pixel {pixel_mm:.3f} mm, {args.realisations} realisations")
    summary, header_written, started = [], False, time.perf_counter()
    for method in args.methods.split(","):
        spec = get_method(method)
        for r in (float(x) for x in args.accelerations.split(",")):
            t0 = time.perf_counter()
            try:
                rows = detectability(image, pixel_mm, method, r, sizes, setting)
            except (ValueError, RuntimeError) as exc:
                print(f"{method} R={r:g}: failed: {exc}", flush=True)
                summary.append({"method": method, "acceleration": r, "error": str(exc)})
                continue
            seconds = time.perf_counter() - t0
            with out.open("a" if header_written else "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                if not header_written:
                    writer.writeheader()
                    header_written = True
                writer.writerows(rows)
            entry = {
                "method": method,
                "demonstration_only": spec.demonstration_only,
                "acceleration": r,
                "seconds": round(seconds, 1),
                "smallest_detected_cho_mm": smallest_detected(rows, "cho"),
                "smallest_detected_npw_mm": smallest_detected(rows, "npw"),
                "cho_auc": {row["size_mm"]: round(row["cho_auc"], 3) for row in rows},
                "npw_auc": {row["size_mm"]: round(row["npw_auc"], 3) for row in rows},
                "contrast_recovery": {
                    row["size_mm"]: round(row["contrast_recovery"], 2) for row in rows
                },
            }
            summary.append(entry)
            summary_path.write_text(json.dumps(summary, indent=1))
            print(json.dumps(entry), flush=True)
    total = time.perf_counter() - started
    summary_path.write_text(json.dumps({"total_seconds": round(total, 1), "rows": summary}))
    print(f"total {total:.0f} s for {len(summary)} method x R combinations")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
