"""Benchmark: deep-learning vs classical reconstruction on the validation volume.

Data: axial slices of the MNI152 2009a T1 template (``data/mri``), a volume none of the
benchmarked models trained on (VarNet, U-Net, deep cascade of ``configs/train`` and the
8-coil k-space net of ``recon_engine.dl.family_training`` share one split: train colin27
+ INIA19 macaque, validate MNI152). Every model was SELECTED on this volume, so these are
validation figures, not a held-out test: the test-set figures (images no selection ever
saw) come from ``benchmarks/eval_model_cards.py`` and are in the model cards. Resampled
to 128x128 and simulated as 8-coil birdcage k-space at SNR 40
(``recon_engine.simulation.simulate_multicoil``, fixed seed).
Reference: the RSS of the fully sampled k-space (fastMRI's target). Every method gets
the SAME undersampled k-space and mask for each setting: R=4 and R=8 with fastMRI's
equispaced and random 1D masks, both with a 10-line (8 %) ACS, the least that ESPIRiT /
GRAPPA calibration works with at this matrix (fastMRI's 4 % at R=8 would leave 5 lines).
SENSE is CG-SENSE (the masks are not uniform) with ESPIRiT maps. Metrics: fastMRI NMSE /
PSNR / SSIM over the slice stack (``recon_engine.metrics.evaluate``, data range =
reference maximum), on magnitudes with no rescaling. Time: wall seconds of
``reconstruct_kspace`` on the whole stack / slices (CPU, ``--threads``). CS L1-wavelet:
its lambda is the best of a small sweep on a DIFFERENT slice of the volume (not in the
benchmark stack), per setting; all other methods use their defaults, except that
MC-dropout uncertainty passes are off (``mc_samples=0``: the image is the deterministic
pass either way, the passes only add time). The deep cascade estimates its coil maps
from the ACS as it was trained (low-resolution coil images / RSS, no background
threshold); a second row gives it ESPIRiT maps instead. DL models load their shipped
(sha256-verified) weights; a model whose card says it trained on the benchmark volume is
flagged, a missing model is reported, not skipped.

Super-resolution: 128x128 magnitude slices of the same volume; the input is the central
64x64 of their k-space (a lower-resolution acquisition); sinc (zero-fill), bicubic,
B-spline and the ESPCN network enlarge it 2x.

Inference time: the shipped VarNet architecture vs ``fastmri.models.VarNet`` with the same
hyper-parameters on one 8-coil 256x256 slice (random weights; best of 3, no grad).

Non-brain generalisation (``--non-brain``, issue 16): evaluation-only MR images that no
model trained on and no default or grid was tuned on (pydicom-data's shoulder and abdomen,
loaded and simulated as in ``benchmarks/eval_model_cards.py``: 128x128, 8 coils, SNR 40),
the same four settings. Rows: the classical methods with their automatic (held-out
k-space) lambda; the same methods at the ORACLE lambda of their grid (best NRMSE against
the reference, which no real scan has); Debian BART ``ecalib`` + ``pics`` L1-wavelet and
L2 at their oracle lambda of a grid; the shipped supervised networks; the zero-shot
self-supervised ``varnet_zs`` / ``deep_cascade_zs`` with their defaults (per slice).
``--images N`` takes the first N whole-field-of-view images, ``--zs-epochs`` caps the
fine-tuning epochs (the default is the methods' own).

Run: ``.venv/bin/python benchmarks/bench_dl.py [--quick] [--threads 1]``, or
``... --non-brain [--images 2] [--settings 4]``. Prints Markdown. Not a test.
"""

from __future__ import annotations

import argparse
import importlib
import json
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

from recon_engine.dl.data import low_resolution  # noqa: E402
from recon_engine.dl.varnet import VarNet  # noqa: E402
from recon_engine.dl.weights import find_model  # noqa: E402
from recon_engine.fft import ifftc, rss  # noqa: E402
from recon_engine.metrics import evaluate  # noqa: E402
from recon_engine.pipeline import reconstruct_kspace  # noqa: E402
from recon_engine.registry import ReconError, ReconInput, get_method  # noqa: E402
from recon_engine.sampling import make_mask  # noqa: E402
from recon_engine.simulation import load_slices, simulate_multicoil  # noqa: E402

VOLUME = ROOT / "data" / "mri" / "mni152_2009a_t1_1mm.nii.gz"
SETTINGS = [
    ("equispaced", 4, 0.08),
    ("random", 4, 0.08),
    ("equispaced", 8, 0.08),
    ("random", 8, 0.08),
]
CLASSICAL = ["zero_filled", "cg_sense", "grappa", "cs_wavelet"]
# ESPIRiT (SENSE, CS, deep cascade maps) with a 5x5 kernel: the 10-line ACS of a 128-wide
# matrix cannot hold the default 6x6 kernel's 12x12 calibration block.
ESPIRIT = {"espirit_kernel": 5}
LEARNED = ["varnet", "unet", "deep_cascade", "kspace_net"]
# (row label, method, parameters) of the learned rows
LEARNED_ROWS = [
    ("varnet", "varnet", {}),
    ("unet", "unet", {}),
    ("deep_cascade", "deep_cascade", {}),
    ("deep_cascade (ESPIRiT maps)", "deep_cascade", {"sensitivities": "espirit"}),
    ("kspace_net", "kspace_net", {}),
]
NO_MC = {"mc_samples": 0}
CS_LAMBDAS = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03)
SIZE = (128, 128)
COILS = 8
SNR = 40.0


def stack(n: int, spread: float) -> torch.Tensor:
    """``n`` axial slices of the benchmark volume at the benchmark size."""
    return load_slices(VOLUME, n, size=SIZE, spread=spread)


def simulate(images: torch.Tensor, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """(fully sampled 8-coil k-space, RSS reference)."""
    sim = simulate_multicoil(images, n_coils=COILS, snr=SNR, seed=seed)
    return sim.kspace, rss(ifftc(sim.kspace), coil_dim=1).numpy()


def trained_on_benchmark(method: str) -> str:
    """'' when the method's card says it never trained on the benchmark volume, else a
    note ('trained on it', 'split unknown', 'no weights')."""
    spec = get_method(method)
    model = next((p.default for p in spec.params if p.name == "model"), None)
    if model is None:
        return ""
    try:
        card, _ = find_model(model)
    except ReconError:
        return "no weights"
    split = card.get("split") or {}
    train = split.get("train") or card.get("data", {}).get("train_volumes")
    if train is None:
        return "split unknown"
    return "TRAINED ON IT" if VOLUME.name in json.dumps(train) else ""


def run(method: str, kspace, mask, params: dict | None = None):
    """(magnitude stack, seconds per slice) or (None, error message); coil maps a method
    estimates (ESPIRiT, ACS) count in its time."""
    names = {p.name for p in get_method(method).params}
    fixed = {**ESPIRIT, **NO_MC}
    params = {**{k: v for k, v in fixed.items() if k in names}, **(params or {})}
    t0 = time.perf_counter()
    try:
        res = reconstruct_kspace(kspace * mask, mask, method, params, "cpu", progress=False)
    except (ReconError, KeyError) as exc:
        return None, str(exc).splitlines()[0]
    return res.volume, (time.perf_counter() - t0) / kspace.shape[0]


def best_cs_lambda(kspace, ref, mask) -> float:
    """The sweep lambda with the best PSNR on the tuning slice."""
    scores = {}
    for lam in CS_LAMBDAS:
        vol, _ = run("cs_wavelet", kspace, mask, {"lambda": lam})
        scores[lam] = evaluate(ref, vol)["psnr"] if vol is not None else -np.inf
    return max(scores, key=scores.get)


def recon_tables(n_slices: int) -> dict:
    """Print one table per setting; return {setting: {method: metrics}}."""
    # tuning slice: the central slice, which lies between two slices of the (even-sized)
    # benchmark stack: representative anatomy, but not benchmarked
    tune_image = load_slices(VOLUME, 1, size=SIZE, spread=0.0)
    images = stack(n_slices, 0.5)
    assert n_slices % 2 == 0, "an even stack keeps the central slice out of it"
    kspace, ref = simulate(images, seed=1)
    tune_k, tune_ref = simulate(tune_image, seed=2)
    results = {}
    notes = {m: trained_on_benchmark(m) for m in LEARNED}
    for pattern, acc, cf in SETTINGS:
        mres = make_mask(pattern, SIZE, acc, seed=3, center_fraction=cf)
        mask = mres.mask
        lam = best_cs_lambda(tune_k, tune_ref, mask)
        rows = {}
        print(f"\n### {pattern} R={acc} ({mres.n_acs} ACS lines, {n_slices} slices)\n")
        print("| method | NMSE | PSNR (dB) | SSIM | s / slice | note |")
        print("|---|---|---|---|---|---|")
        classical = [(m, m, {"lambda": lam} if m == "cs_wavelet" else {}) for m in CLASSICAL]
        for label, method, params in classical + LEARNED_ROWS:
            vol, t = run(method, kspace, mask, params)
            note = f"lambda {lam} (tuned on another slice)" if method == "cs_wavelet" else ""
            note = notes.get(method, note)
            if vol is None:
                print(f"| {label} | - | - | - | - | not run: {t} |")
                continue
            m = evaluate(ref, vol)
            rows[label] = m
            print(
                f"| {label} | {m['nmse']:.4f} | {m['psnr']:.2f} | {m['ssim']:.4f} | "
                f"{t:.3f} | {note} |"
            )
        results[(pattern, acc)] = rows
    return results


def sr_table(n_slices: int) -> dict:
    """2x in-plane SR on held-out slices; returns {method: metrics}."""
    hr = stack(n_slices, 0.5)
    hr = hr / hr.amax(dim=(-2, -1), keepdim=True)
    low = low_resolution(hr, 2)
    out = {}
    print(f"\n### Super-resolution 2x ({n_slices} slices, 64x64 -> 128x128)\n")
    print("| method | NMSE | PSNR (dB) | SSIM | s / slice |")
    print("|---|---|---|---|---|")
    for method in ("sr_zero_fill", "sr_bicubic", "sr_bspline", "sr_espcn"):
        spec = get_method(method)
        params = spec.validate({"factor": 2} if "factor" in [p.name for p in spec.params] else {})
        data = ReconInput(
            kspace=torch.zeros(n_slices, 1, 64, 64, dtype=torch.complex64),
            mask=torch.ones(1, 1, 1, 64),
            metadata={"image": low},
        )
        t0 = time.perf_counter()
        try:
            image = spec.run(data, params).image.abs()
        except ReconError as exc:
            print(f"| {method} | - | - | - | not run: {exc} |")
            continue
        t = (time.perf_counter() - t0) / n_slices
        m = evaluate(hr.numpy(), image.numpy())
        out[method] = m
        print(f"| {method} | {m['nmse']:.4f} | {m['psnr']:.2f} | {m['ssim']:.4f} | {t:.4f} |")
    return out


def timing_vs_fastmri() -> None:
    """Per-slice CPU inference of the shipped VarNet architecture vs fastMRI's VarNet."""
    try:
        card, _ = find_model("varnet")
    except ReconError as exc:
        print(f"\nVarNet timing skipped: {exc}")
        return
    arch = {k: v for k, v in card["architecture"].items() if k != "type"}
    kspace, _ = simulate(load_slices(VOLUME, 1, size=(256, 256)), seed=4)
    mask = make_mask("equispaced", (256, 256), 4, seed=0, center_fraction=0.08).mask
    masked = torch.view_as_real(kspace * mask)
    bool_mask = mask.bool()[..., None]
    models = {"ReconTrial VarNet": VarNet(**arch)}
    try:
        from fastmri.models import VarNet as FastMRIVarNet

        models["fastmri.models.VarNet"] = FastMRIVarNet(**arch)
    except ImportError:
        print("\n(fastmri not installed: no reference timing)")
    print(f"\n### CPU inference, one 8-coil 256x256 slice, architecture {arch}\n")
    print("| implementation | seconds (best of 3) |")
    print("|---|---|")
    for name, model in models.items():
        model.eval()
        best = float("inf")
        with torch.no_grad():
            for _ in range(3):
                t0 = time.perf_counter()
                model(masked, bool_mask)
                best = min(best, time.perf_counter() - t0)
        print(f"| {name} | {best:.3f} |")


AUTO_LAMBDA = ("cg_sense", "cs_wavelet", "cs_tv")
BART_LAMBDAS = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
ZERO_SHOT = ("varnet_zs", "deep_cascade_zs")


def _writecfl(name: str, arr: np.ndarray) -> None:
    """BART .cfl/.hdr pair (complex64, Fortran order)."""
    arr = np.asarray(arr, dtype=np.complex64)
    Path(name + ".hdr").write_text("# Dimensions\n" + " ".join(map(str, arr.shape)) + "\n")
    arr.ravel(order="F").tofile(name + ".cfl")


def _readcfl(name: str) -> np.ndarray:
    dims = [int(d) for d in Path(name + ".hdr").read_text().splitlines()[1].split()]
    data = np.fromfile(name + ".cfl", dtype=np.complex64, count=int(np.prod(dims)))
    return data.reshape(dims, order="F")


def bart_oracle(kspace: torch.Tensor, mask: torch.Tensor, ref: np.ndarray, acs: int) -> dict:
    """BART ``ecalib`` (one map, ACS lines, 5x5 kernel) + ``pics`` per slice, L1-wavelet and
    L2, each at the lambda of ``BART_LAMBDAS`` with the best NMSE: {row: (metrics, lambda,
    seconds per slice at that lambda)}."""
    folder = tempfile.mkdtemp(prefix="bench_dl_bart_")
    masked = (kspace * mask).numpy()
    s, c, h, w = masked.shape
    maps = []
    for i in range(s):
        _writecfl(f"{folder}/k{i}", np.transpose(masked[i], (1, 2, 0))[:, :, None, :])
        subprocess.run(
            ["bart", "ecalib", "-m1", "-k5", f"-r{acs}", f"{folder}/k{i}", f"{folder}/s{i}"],
            check=True,
            capture_output=True,
        )
        maps.append(f"{folder}/s{i}")
    out = {}
    for label, reg in (
        ("BART pics L1-wavelet (oracle lambda)", "-l1"),
        ("BART pics L2 (oracle lambda)", "-l2"),
    ):
        best = None
        for lam in BART_LAMBDAS:
            t0 = time.perf_counter()
            images = []
            for i in range(s):
                subprocess.run(
                    [
                        "bart",
                        "pics",
                        "-S",
                        "-i30",
                        reg,
                        f"-r{lam}",
                        f"{folder}/k{i}",
                        maps[i],
                        f"{folder}/x{i}",
                    ],
                    check=True,
                    capture_output=True,
                )
                images.append(np.abs(_readcfl(f"{folder}/x{i}").reshape(h, w)))
            seconds = (time.perf_counter() - t0) / s
            m = evaluate(ref, np.stack(images))
            if best is None or m["nmse"] < best[0]["nmse"]:
                best = (m, lam, seconds)
        out[label] = best
    shutil.rmtree(folder, ignore_errors=True)
    return out


def non_brain_tables(n_images: int, n_settings: int, zs_epochs: int | None) -> dict:
    """Print one table per setting on the evaluation-only images; return {setting: rows}."""
    from eval_model_cards import test_images

    images, labels = test_images(SIZE[0])
    whole = [i for i, label in enumerate(labels) if label.endswith("whole field of view")]
    chosen = whole[:n_images]
    kspace, ref = simulate(images[chosen], seed=1)
    print(
        f"\n## Non-brain evaluation images (never trained or tuned on): "
        f"{'; '.join(labels[i] for i in chosen)}"
    )
    results = {}
    for pattern, acc, cf in SETTINGS[:n_settings]:
        mres = make_mask(pattern, SIZE, acc, seed=3, center_fraction=cf)
        mask = mres.mask
        rows: dict[str, tuple[dict, float, str]] = {}
        for method in AUTO_LAMBDA:
            vol, t = run(method, kspace, mask, {"lambda_choice": "auto"})
            if vol is not None:
                rows[f"{method} (auto lambda)"] = (evaluate(ref, vol), t, "")
            lams = importlib.import_module(f"recon_engine.methods.{method}").LAMBDA_GRID
            best = None
            for lam in lams:
                vol, t = run(method, kspace, mask, {"lambda_choice": "fixed", "lambda": lam})
                if vol is not None:
                    m = evaluate(ref, vol)
                    if best is None or m["nmse"] < best[0]["nmse"]:
                        best = (m, t, f"lambda {lam}")
            if best:
                rows[f"{method} (oracle lambda of its grid)"] = best
        if shutil.which("bart"):
            for label, (m, lam, t) in bart_oracle(kspace, mask, ref, mres.n_acs).items():
                rows[label] = (m, t, f"lambda {lam}")
        for method in ("varnet", "deep_cascade"):
            vol, t = run(method, kspace, mask)
            if vol is not None:
                rows[f"{method} (shipped, supervised)"] = (evaluate(ref, vol), t, "")
        for method in ZERO_SHOT:
            params = {} if zs_epochs is None else {"max_epochs": zs_epochs}
            vol, t = run(method, kspace, mask, params)
            if vol is not None:
                note = "" if zs_epochs is None else f"at most {zs_epochs} epochs"
                rows[f"{method} (zero-shot self-supervised)"] = (evaluate(ref, vol), t, note)
        print(f"\n### {pattern} R={acc} ({mres.n_acs} ACS lines, {len(chosen)} images)\n")
        print("| method | NMSE | PSNR (dB) | SSIM | s / slice (CPU) | note |")
        print("|---|---|---|---|---|---|")
        for label, (m, t, note) in rows.items():
            print(
                f"| {label} | {m['nmse']:.4f} | {m['psnr']:.2f} | {m['ssim']:.4f} | {t:.2f} | "
                f"{note} |"
            )
        results[(pattern, acc)] = rows
    print("\n### Targets (issue 16)\n")
    for (pattern, acc), rows in results.items():
        bart = rows.get("BART pics L1-wavelet (oracle lambda)")
        zs = [rows[k][0] for k in rows if "zero-shot" in k]
        if bart and zs:
            top = max(zs, key=lambda m: m["psnr"])
            gain = top["psnr"] - bart[0]["psnr"]
            ok = gain >= 1.0 and top["ssim"] > bart[0]["ssim"]
            print(
                f"- {pattern} R={acc}: best ZS - BART L1 oracle = {gain:+.2f} dB, SSIM "
                f"{top['ssim']:.4f} vs {bart[0]['ssim']:.4f} ({'met' if ok else 'NOT met'})"
            )
        for method in AUTO_LAMBDA:
            auto = rows.get(f"{method} (auto lambda)")
            oracle = rows.get(f"{method} (oracle lambda of its grid)")
            if auto and oracle:
                ratio = (auto[0]["nmse"] / oracle[0]["nmse"]) ** 0.5
                verdict = "met" if ratio <= 1.05 else "NOT met"
                print(
                    f"- {pattern} R={acc} {method}: auto-lambda NRMSE / oracle = {ratio:.3f} "
                    f"(target 1.05: {verdict})"
                )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 slices instead of 12")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--non-brain", action="store_true", help="only the non-brain tables")
    parser.add_argument("--images", type=int, default=2, help="non-brain images (max 2)")
    parser.add_argument("--settings", type=int, default=4, help="first N settings (max 4)")
    parser.add_argument("--zs-epochs", type=int, default=None, help="cap ZS-SSL epochs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.non_brain:
        non_brain_tables(args.images, args.settings, args.zs_epochs)
        return
    n = 4 if args.quick else 12
    print(
        f"# DL benchmark on the validation volume {VOLUME.name} ({COILS} coils, SNR {SNR}, "
        f"{SIZE}); test-set figures: benchmarks/eval_model_cards.py"
    )
    results = recon_tables(n)
    print("\n### Targets (VarNet vs the best CS L1-wavelet)\n")
    for (pattern, acc), rows in results.items():
        cs = [rows[m]["psnr"] for m in ("cs_wavelet",) if m in rows]
        if "varnet" in rows and cs:
            gain = rows["varnet"]["psnr"] - max(cs)
            need = 1.5 if acc == 4 else 2.0
            verdict = "met" if gain >= need else "NOT met"
            print(
                f"- {pattern} R={acc}: VarNet - CS = {gain:+.2f} dB (target {need} dB: {verdict})"
            )
    sr = sr_table(n)
    if "sr_espcn" in sr and "sr_bicubic" in sr:
        gain = sr["sr_espcn"]["psnr"] - sr["sr_bicubic"]["psnr"]
        verdict = "met" if gain >= 1.0 else "NOT met"
        print(f"\n- SR 2x: ESPCN - bicubic = {gain:+.2f} dB (target 1 dB: {verdict})")
    timing_vs_fastmri()


if __name__ == "__main__":
    main()
