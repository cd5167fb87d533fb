"""``python -m recon_engine fidelity ...``: the fidelity lab for physicists.

Sub-commands (each writes a table: ``--out x.csv`` or ``--out x.json``; without ``--out``
the table is printed):

- ``detect``: detectability (NPW/CHO d' and AUC, contrast recovery) per method x R x size,
  plus the smallest size detected at AUC >= 0.9 per method and R;
- ``attack``: worst-case vs random k-space perturbation (methods with a differentiable
  forward; others are listed as skipped with the reason);
- ``more-data``: reconstruction error over nested masks (does more data ever hurt?);
- ``tiny``: does a small inserted finding appear?

The background image is the central slice of a NIfTI volume or DICOM folder, resized as
:func:`recon_engine.simulation.load_slices` does; the pixel size in mm follows from the
volume's voxel size and that resize.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from recon_engine.registry import ParameterError

DEFAULT_VOLUME = Path(__file__).resolve().parents[2] / "data" / "mri" / "colin27_t1_1mm.nii.gz"


def background_slice(
    path: str | Path, size: int, axis: int | None = None, pixel_mm: float | None = None
) -> tuple:
    """``(magnitude (size, size) float64 in [0, 1], pixel_mm)`` of a volume's central slice.

    pixel_mm: the slice's in-plane extent after :func:`load_slices`'s aspect padding,
    divided by ``size`` (square pixels), unless ``pixel_mm`` declares another (e.g. to treat
    the slice as a knee-sized field of view).
    """
    from recon_engine.simulation import load_slices, load_volume

    path = Path(path)
    image = load_slices(path, 1, size=(size, size), axis=axis)[0].numpy().astype(np.float64)
    if pixel_mm is not None:
        if not pixel_mm > 0:
            raise ParameterError(f"--pixel-mm must be positive, got {pixel_mm}")
        return image, float(pixel_mm)
    volume, spacing = load_volume(path)
    axis = (0 if path.is_dir() else 2) if axis is None else axis
    extents = [
        n * sp
        for i, (n, sp) in enumerate(zip(volume.shape, spacing[:3], strict=False))
        if i != axis
    ]
    return image, max(extents) / size


def _floats(text: str, name: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ParameterError(f"--{name} takes comma-separated numbers, got {text!r}") from None
    if not values:
        raise ParameterError(f"--{name} needs at least one number")
    return values


def _names(text: str) -> list[str]:
    from recon_engine.registry import get_method

    names = [x.strip() for x in text.split(",") if x.strip()]
    for name in names:
        try:
            get_method(name)
        except KeyError as exc:
            raise ParameterError(str(exc).strip("'\"")) from None
    return names


def table_path(text: str) -> str:
    """argparse type for ``--out``/``--summary``: a .csv or .json path (checked up front)."""
    if Path(text).suffix not in (".csv", ".json"):
        raise argparse.ArgumentTypeError(f"must end in .csv or .json, got {Path(text).name!r}")
    return text


def write_table(rows: list[dict], out: str | None) -> None:
    """Rows to ``out`` (.csv or .json), or printed as aligned columns when ``out`` is None."""
    if out is None:
        if not rows:
            print("(no rows)")
            return
        keys = list(dict.fromkeys(k for row in rows for k in row))
        print("\t".join(keys))
        for row in rows:
            print(
                "\t".join(
                    f"{row[k]:.4g}" if isinstance(row.get(k), float) else str(row.get(k, ""))
                    for k in keys
                )
            )
        return
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=1))
    elif path.suffix == ".csv":
        keys = list(dict.fromkeys(k for row in rows for k in row))
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
    else:
        raise ParameterError(f"--out must end in .csv or .json, got {path.name!r}")
    print(f"wrote {len(rows)} rows to {path}", file=sys.stderr)


def _cmd_detect(args: argparse.Namespace) -> int:
    from recon_engine.fidelity.detectability import (
        FidelitySetting,
        detectability,
        smallest_detected,
    )

    torch.set_num_threads(args.threads)
    image, pixel_mm = background_slice(args.volume, args.size, pixel_mm=args.pixel_mm)
    setting = FidelitySetting(
        kind=args.kind,
        contrast=args.contrast,
        n_realisations=args.realisations,
        n_coils=args.coils,
        snr=args.snr,
        pattern=args.pattern,
        center_fraction=args.center_fraction,
        seed=args.seed,
        background_shift_px=args.background_shift,
    )
    sizes = _floats(args.sizes, "sizes")
    rows, summary = [], []
    for method in _names(args.methods):
        for r in _floats(args.accelerations, "accelerations"):
            start = time.perf_counter()
            found = detectability(image, pixel_mm, method, r, sizes, setting)
            seconds = time.perf_counter() - start
            for row in found:
                row["seconds"] = seconds / len(found)
            rows.extend(found)
            summary.append(
                {
                    "method": method,
                    "acceleration": r,
                    "smallest_detected_cho_mm": smallest_detected(found, "cho"),
                    "smallest_detected_npw_mm": smallest_detected(found, "npw"),
                    "seconds": round(seconds, 1),
                }
            )
            print(f"{method} R={r:g}: {summary[-1]}", file=sys.stderr)
    write_table(rows, args.out)
    if args.summary:
        write_table(summary, args.summary)
    return 0


def _cmd_attack(args: argparse.Namespace) -> int:
    from recon_engine.fidelity.instability import differentiable_forward, instability_curve
    from recon_engine.sampling import make_mask
    from recon_engine.simulation import simulate_multicoil

    image, _ = background_slice(args.volume, args.size, pixel_mm=args.pixel_mm)
    data = simulate_multicoil(image.astype(np.float32), n_coils=args.coils, snr=args.snr)
    mask = make_mask(
        "random",
        image.shape,
        args.acceleration,
        seed=args.seed,
        center_fraction=args.center_fraction,
    ).mask
    rows = []
    for method in _names(args.methods):
        try:
            forward = differentiable_forward(method)
        except ParameterError as exc:
            print(f"{method}: skipped: {exc}", file=sys.stderr)
            rows.append({"method": method, "skipped": str(exc)})
            continue
        curve = instability_curve(
            forward,
            data.kspace,
            mask,
            _floats(args.epsilons, "epsilons"),
            steps=args.steps,
            seed=args.seed,
        )
        rows.extend({"method": method, "acceleration": args.acceleration, **row} for row in curve)
    write_table(rows, args.out)
    return 0


def _cmd_more_data(args: argparse.Namespace) -> int:
    from recon_engine.fidelity.instability import more_data_check
    from recon_engine.simulation import simulate_multicoil

    image, _ = background_slice(args.volume, args.size, pixel_mm=args.pixel_mm)
    data = simulate_multicoil(image.astype(np.float32), n_coils=args.coils, snr=args.snr)
    rows = []
    for method in _names(args.methods):
        report = more_data_check(
            method,
            data.kspace,
            data.image.abs(),
            _floats(args.accelerations, "accelerations"),
            seed=args.seed,
        )
        worse = ";".join(f"R{a:g}->R{b:g}" for a, b in report["worse_with_more_data"])
        rows.extend(
            {"method": method, **row, "worse_with_more_data": worse} for row in report["rows"]
        )
    write_table(rows, args.out)
    return 0


def _cmd_tiny(args: argparse.Namespace) -> int:
    from recon_engine.fidelity.detectability import brightest_tissue_center
    from recon_engine.fidelity.instability import tiny_structure_check
    from recon_engine.fidelity.lesions import Lesion

    image, pixel_mm = background_slice(args.volume, args.size, pixel_mm=args.pixel_mm)
    lesion = Lesion(args.kind, args.size_mm, args.contrast, brightest_tissue_center(image))
    rows = [
        tiny_structure_check(method, image, pixel_mm, lesion, r, seed=args.seed)
        for method in _names(args.methods)
        for r in _floats(args.accelerations, "accelerations")
    ]
    write_table(rows, args.out)
    return 0


def add_fidelity_parser(sub) -> None:
    """Add ``fidelity`` and its sub-commands to the engine CLI's sub-parsers."""
    parser = sub.add_parser("fidelity", help="fidelity lab: detectability, instability, ...")
    verbs = parser.add_subparsers(dest="fidelity_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--volume",
            default=str(DEFAULT_VOLUME),
            help="NIfTI file or DICOM folder (central slice used)",
        )
        p.add_argument("--size", type=int, default=128, help="matrix (pixels per side)")
        p.add_argument(
            "--pixel-mm",
            type=float,
            default=None,
            help="declared pixel size (default: from the volume's voxel size)",
        )
        p.add_argument(
            "--methods", default="zero_filled,cg_sense", help="comma-separated method names"
        )
        p.add_argument("--coils", type=int, default=8)
        p.add_argument("--snr", type=float, default=20.0)
        p.add_argument("--center-fraction", type=float, default=0.08)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument(
            "--out", type=table_path, help="table file (.csv or .json); printed when omitted"
        )

    p = verbs.add_parser("detect", help="model-observer detectability vs lesion size")
    common(p)
    p.add_argument("--accelerations", default="2,4,8")
    p.add_argument("--sizes", default="1,2,3,5,8", help="lesion sizes in mm")
    p.add_argument("--kind", default="focus", help="oedema, focus, cartilage_defect or tear")
    p.add_argument("--contrast", type=float, default=-0.3)
    p.add_argument("--realisations", type=int, default=50)
    p.add_argument("--pattern", default="random")
    p.add_argument(
        "--background-shift",
        type=int,
        default=0,
        help="pixels the anatomy moves between realisations (0: background known)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--summary", type=table_path, help="smallest-detected table (.csv or .json)")
    p.set_defaults(func=_cmd_detect)

    p = verbs.add_parser("attack", help="worst-case vs random k-space perturbation")
    common(p)
    p.add_argument("--acceleration", type=float, default=4.0)
    p.add_argument(
        "--epsilons",
        default="0.005,0.01,0.02,0.05",
        help="perturbation norms relative to the measured k-space",
    )
    p.add_argument("--steps", type=int, default=20)
    p.set_defaults(func=_cmd_attack)

    p = verbs.add_parser("more-data", help="error over nested masks: does more data hurt?")
    common(p)
    p.add_argument("--accelerations", default="8,6,4,3,2")
    p.set_defaults(func=_cmd_more_data)

    p = verbs.add_parser("tiny", help="does a small inserted finding appear?")
    common(p)
    p.add_argument("--accelerations", default="2,4,8")
    p.add_argument("--kind", default="focus")
    p.add_argument("--size-mm", type=float, default=2.0)
    p.add_argument("--contrast", type=float, default=0.5)
    p.set_defaults(func=_cmd_tiny)
