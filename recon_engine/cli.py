"""Command line: ``python -m recon_engine COMMAND`` (simulate, undersample, reconstruct,
super-resolve, evaluate, methods, train, fidelity).

Every failure caused by bad input (files, parameters, shapes) prints one line
``error: ...`` to stderr and exits with status 2; no tracebacks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from recon_engine.registry import ParameterError, ReconError

__all__ = ["main", "build_parser"]


class CLIError(Exception):
    """A user-facing error (printed as one line, exit status 2)."""


def _cmd_simulate(args: argparse.Namespace) -> int:
    from recon_engine.simulation import simulate_fastmri_file

    src = Path(args.input)
    if not src.exists():
        raise CLIError(f"{src}: no such file or directory")
    if not (src.is_dir() or src.name.endswith((".nii", ".nii.gz"))):
        raise CLIError(f"{src}: expected a NIfTI file (.nii, .nii.gz) or a DICOM directory")
    data = simulate_fastmri_file(
        src,
        args.output,
        n_slices=args.slices,
        matrix=tuple(args.matrix),
        n_coils=args.coils,
        coil_kind=args.coil_kind,
        snr=None if args.snr <= 0 else args.snr,
        spread=args.spread,
        fov_mm=tuple(args.fov),
        slice_thickness_mm=args.slice_thickness,
        rss_crop=tuple(args.rss_crop) if args.rss_crop is not None else None,
        acquisition=args.acquisition,
        phase=not args.no_phase,
        seed=args.seed,
    )
    s, c, h, w = data.kspace.shape
    print(f"wrote {args.output}: {s} slices x {c} coils x {h} x {w}, noise SD {data.noise_std:.4g}")
    return 0


def _cmd_undersample(args: argparse.Namespace) -> int:
    from recon_engine.io import (
        make_ismrmrd_header,
        parse_ismrmrd_header,
        read_fastmri,
        write_fastmri,
    )
    from recon_engine.sampling import make_mask

    raw = read_fastmri(args.input)
    if raw.mask is not None and float(raw.mask.min()) < 1:
        raise CLIError(f"{args.input}: already undersampled (it has a mask); start from full data")
    s, c, h, w = raw.kspace.shape
    kw = {"center_fraction": args.center_fraction}
    for name in ("ry", "rz", "shift"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    acc = int(args.acceleration) if float(args.acceleration).is_integer() else args.acceleration
    res = make_mask(args.pattern, (h, w), acc, seed=args.seed, **kw)
    kspace = raw.kspace * res.mask
    attrs = dict(raw.attrs)
    attrs.update(
        acceleration=acc,
        effective_acceleration=res.effective_acceleration,
        num_low_frequency=res.n_acs if not res.is_2d else int(res.acs_mask.sum()),
        pattern=res.pattern,
        mask_seed=-1 if res.seed is None else res.seed,
    )
    header = raw.header
    if header:
        try:
            info = parse_ismrmrd_header(header)
            r1, r2 = (int(round(acc)), 1) if not res.is_2d else (kw.get("ry", 1), kw.get("rz", 1))
            header = make_ismrmrd_header(
                info.encoded_matrix[:2],
                info.n_coils or c,
                s,
                fov_mm=info.encoded_fov_mm[:2],
                slice_thickness_mm=info.encoded_fov_mm[2],
                recon_matrix=info.recon_matrix[:2],
                acceleration=(int(r1), int(r2)),
            )
        except ReconError:
            pass
    write_fastmri(
        args.output,
        kspace,
        mask=res.mask,
        header=header,
        reconstruction_rss=raw.reconstruction_rss,
        attrs=attrs,
    )
    print(
        f"wrote {args.output}: {res.pattern} R={acc} (effective "
        f"{res.effective_acceleration:.2f}), ACS {attrs['num_low_frequency']}"
    )
    return 0


def _parse_params(items: Sequence[str]) -> dict[str, str]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"--param expects key=value, got {item!r}")
        params[key.strip()] = value.strip()
    return params


def _cmd_reconstruct(args: argparse.Namespace) -> int:
    from recon_engine.pipeline import reconstruct_file

    start = time.perf_counter()
    summary = reconstruct_file(
        args.input,
        args.output,
        args.method,
        _parse_params(args.param),
        device=args.device,
        dicom_dir=args.dicom,
        progress=not args.quiet,
        batch_size=args.batch_size,
    )
    elapsed = time.perf_counter() - start
    if args.json:
        print(json.dumps(dict(summary, wall_s=elapsed), default=str))
    else:
        steps = ", ".join(f"{k} {v:.2f}s" for k, v in summary["timings"].items())
        shape = "x".join(str(n) for n in summary["shape"])
        print(f"wrote {args.output}: {args.method} {shape} in {elapsed:.2f}s ({steps})")
        if "dicom_files" in summary:
            print(f"wrote {summary['dicom_files']} DICOM images to {args.dicom}")
    return 0


def _cmd_super_resolve(args: argparse.Namespace) -> int:
    from recon_engine.sr.files import super_resolve_file

    start = time.perf_counter()
    summary = super_resolve_file(
        args.input, args.output, args.method, _parse_params(args.param), device=args.device
    )
    elapsed = time.perf_counter() - start
    if args.json:
        print(json.dumps(dict(summary, wall_s=elapsed), default=str))
    else:
        before = "x".join(str(n) for n in summary["input_shape"])
        after = "x".join(str(n) for n in summary["shape"])
        print(f"wrote {args.output}: {args.method} {before} -> {after} in {elapsed:.2f}s")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from recon_engine.pipeline import evaluate_file

    scores = evaluate_file(args.recon, args.reference)
    if args.json:
        print(json.dumps(scores))
    else:
        print(f"NMSE {scores['nmse']:.6g}  PSNR {scores['psnr']:.4f} dB  SSIM {scores['ssim']:.6f}")
    return 0


def _cmd_methods(args: argparse.Namespace) -> int:
    from recon_engine.registry import all_methods

    specs = all_methods()
    if args.json:
        print(json.dumps([s.to_dict() for s in specs], indent=2, default=str))
        return 0
    for spec in specs:
        print(f"{spec.name}  [{spec.family}]  {spec.label}")
        if spec.caveat:
            print(f"    caveat: {spec.caveat}")
        if spec.vendor_names:
            vendors = ", ".join(f"{k}: {v}" for k, v in spec.vendor_names.items())
            print(f"    vendor names: {vendors}")
        for p in spec.params:
            rng = ""
            if p.choices:
                rng = f" one of {'|'.join(p.choices)}"
            elif p.min is not None or p.max is not None:
                rng = f" in [{p.min if p.min is not None else '-inf'}, "
                rng += f"{p.max if p.max is not None else 'inf'}]"
            unit = f" {p.unit}" if p.unit else ""
            print(f"    {p.name} ({p.type}, default {p.default!r}{unit}{rng}): {p.help}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser (exposed for documentation and tests)."""
    from recon_engine.sampling import PATTERNS
    from recon_engine.simulation import COIL_KINDS

    parser = argparse.ArgumentParser(
        prog="python -m recon_engine", description="ReconTrial reconstruction engine"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="simulate fully sampled multi-coil k-space from a volume")
    p.add_argument("input", help="NIfTI file (.nii/.nii.gz) or directory of DICOM images")
    p.add_argument("output", help="fastMRI HDF5 file to write")
    p.add_argument("--coils", type=int, default=8)
    p.add_argument("--coil-kind", choices=COIL_KINDS, default="birdcage")
    p.add_argument(
        "--snr", type=float, default=30.0, help="mean object signal / noise SD (<= 0: noiseless)"
    )
    p.add_argument("--slices", type=int, default=20)
    p.add_argument("--matrix", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    p.add_argument(
        "--spread",
        type=float,
        default=0.0,
        help="spread the slices over this central fraction of the volume (0: contiguous)",
    )
    p.add_argument("--fov", type=float, nargs=2, default=(220.0, 220.0), metavar=("H_MM", "W_MM"))
    p.add_argument("--slice-thickness", type=float, default=5.0, help="mm")
    p.add_argument(
        "--rss-crop",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="centre-crop reconstruction_rss to H x W (fastMRI stores 320 x 320); "
        "reconstructions are then cropped to match",
    )
    p.add_argument("--acquisition", default="SIMULATED", help="fastMRI 'acquisition' attribute")
    p.add_argument("--no-phase", action="store_true", help="real-valued object (no phase)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("undersample", help="retrospectively undersample a fully sampled file")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--pattern", choices=PATTERNS, default="random")
    p.add_argument("--acceleration", type=float, default=4)
    p.add_argument("--center-fraction", type=float, default=0.08)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ry", type=int, help="caipirinha: acceleration along W (ky)")
    p.add_argument("--rz", type=int, help="caipirinha: acceleration along H (kz)")
    p.add_argument("--shift", type=int, help="caipirinha: kz shift per acquired ky line")
    p.set_defaults(func=_cmd_undersample)

    p = sub.add_parser("reconstruct", help="reconstruct a fastMRI file with a registered method")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--method", required=True)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--dicom", metavar="DIR", help="also write a DICOM series here")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when present)")
    p.add_argument("--batch-size", type=int, help="slices per batch (default: by memory)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    p.set_defaults(func=_cmd_reconstruct)

    p = sub.add_parser(
        "super-resolve", help="enlarge a reconstruction file with a super-resolution method"
    )
    p.add_argument("input", help="reconstruction file (or raw file with reconstruction_rss)")
    p.add_argument("output", help="reconstruction file to write")
    p.add_argument("--method", required=True, help="a super_resolution method (see `methods`)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when present)")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    p.set_defaults(func=_cmd_super_resolve)

    p = sub.add_parser("evaluate", help="NMSE / PSNR / SSIM against a reference (fastMRI)")
    p.add_argument("recon")
    p.add_argument("reference", help="reconstruction file or raw file with reconstruction_rss")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("methods", help="list the registered methods and their parameters")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_methods)

    from recon_engine.dl.site_models import add_site_model_parsers
    from recon_engine.dl.train import add_train_parser
    from recon_engine.fidelity.cli import add_fidelity_parser

    add_train_parser(sub)
    add_fidelity_parser(sub)
    add_site_model_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (CLIError, ReconError, ParameterError, FileNotFoundError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
