"""Test-set evaluation of the shipped reconstruction networks, written into their model cards.

Why: MNI152 2009a is the volume every shipped model was SELECTED on (validation); a figure
measured on it is not a held-out result. The test set here is data no model selection
ever saw: the non-brain MR images of ``pydicom``/``pydicom-data`` (evaluation-only: never
used to train, fine-tune or tune any default).

Test data: a coronal T1 spin-echo shoulder (``MR2_UNCR.dcm``, 1024x1024) and an axial T1
VIBE fat-sat abdomen (``MR-SIEMENS-DICOM-WithOverlays.dcm``, 484x484). Each is centre
cropped to a square and resampled (anti-aliased bilinear) to the 128x128 test matrix
(whole field of view) and to 256x256, whose four 128x128 quadrants are four more test
images: 10 images, each scaled to maximum 1, simulated as 8-coil birdcage k-space with a
smooth phase at SNR 40 (``recon_engine.simulation.simulate_multicoil``, seed 1).
Reference: RSS of the fully sampled k-space. Settings: fastMRI equispaced and random 1D
masks at R = 4 and 8 with an 8 % ACS (mask seed 3), as ``benchmarks/bench_dl.py``.
AUTOMAP, usable only at 32x32, is tested as it was trained: the same images resampled to
32x32, 4 coils, random R = 2 with a 16 % ACS.

Baselines: zero-filled (the network's own input) and CS L1-wavelet whose lambda is the
best of a sweep on the central slice of the VALIDATION volume (never on test images).
Metrics: fastMRI NMSE/PSNR/SSIM over the stack (``recon_engine.metrics.evaluate``).

Uncertainty (networks with MC dropout: U-Net, k-space net, AUTOMAP; the methods'
default passes and dropout probability): one scale factor is fitted on the validation
volume (12 MNI152 slices) so that 68.3 % of tissue voxels have ``|error| <= s sigma``
(``recon_engine.dl.calibration``); on the test images the card reports Spearman's rho
between the calibrated map and ``|error|``, mean |error| / mean predicted sigma, and the
coverage of the +-1 and +-1.96 sigma intervals (tissue: reference > 10 % of the slice
maximum). The VarNet's data-consistency residual gets the same rank figure; the deep
cascade and k-space net have none (zero by construction). ``check`` entries hold the
same figures for the first test image at one setting so that
``tests/engine/dl/test_model_card_test_sections.py`` can recompute them.

Image-domain networks, on the same test images with the simulation they were trained
with (``recon_engine.dl.family_training``, test seeds): the motion-correction U-Net (64x64)
against its uncorrected input, the g-factor-aware denoiser (64x64) against its noisy input
and against itself with a uniform noise level (MC-dropout calibration as above, fitted on
the families' MNI152 validation slices), ESPCN 2x against bicubic (no dropout, no map).
The 3D through-plane network gets no test: the evaluation images are single slices.

Run: ``nice .venv/bin/python benchmarks/eval_model_cards.py [--write] [--only recon|image]``;
prints Markdown,
and with ``--write`` updates the JSON cards and ``MODEL_CARDS.md`` in
``recon_engine/dl/models``. CPU, one thread; about 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recon_engine.dl import calibration  # noqa: E402
from recon_engine.dl.data import low_resolution  # noqa: E402
from recon_engine.dl.denoise import NoiseMapDenoiser  # noqa: E402
from recon_engine.dl.family_training import (  # noqa: E402
    DATA_DIR,
    MOTION,
    VAL_VOLUMES,
    _denoise_sample,
    _motion_sample,
    gfactor_bank,
    slice_bank,
)
from recon_engine.dl.mc_dropout import mc_dropout_std  # noqa: E402
from recon_engine.dl.model_loader import load_network  # noqa: E402
from recon_engine.dl.motion import MotionCorrectionNet  # noqa: E402
from recon_engine.dl.train import model_cards_markdown  # noqa: E402
from recon_engine.dl.weights import SHIPPED_DIR  # noqa: E402
from recon_engine.fft import ifftc, rss  # noqa: E402
from recon_engine.metrics import evaluate  # noqa: E402
from recon_engine.pipeline import reconstruct_kspace  # noqa: E402
from recon_engine.registry import ReconInput, get_method  # noqa: E402
from recon_engine.sampling import make_mask  # noqa: E402
from recon_engine.simulation import (  # noqa: E402
    coil_sensitivities,
    load_slices,
    simulate_multicoil,
)

VALIDATION_VOLUME = ROOT / "data" / "mri" / "mni152_2009a_t1_1mm.nii.gz"
TEST_FILES = (
    ("MR2_UNCR.dcm", "shoulder, coronal T1 spin echo"),
    ("MR-SIEMENS-DICOM-WithOverlays.dcm", "abdomen, axial T1 VIBE fat-sat"),
)
SIZE = 128
COILS = 8
SNR = 40.0
SETTINGS = (
    ("equispaced", 4, 0.08),
    ("random", 4, 0.08),
    ("equispaced", 8, 0.08),
    ("random", 8, 0.08),
)
AUTOMAP_SIZE = 32
AUTOMAP_COILS = 4
AUTOMAP_SETTINGS = (("random", 2, 0.16),)
NETWORKS = ("varnet", "unet", "deep_cascade", "kspace_net")
MC_NETWORKS = ("unet", "kspace_net", "automap")
CS_LAMBDAS = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03)
# ESPIRiT kernel (CS coil maps) per matrix: the ACS (10 lines at 128, 5 at 32) must hold a
# calibration block of twice the kernel width.
ESPIRIT_KERNEL = {SIZE: 5, AUTOMAP_SIZE: 3}
VALIDATION_SLICES = 12
MASK_SEED = 3
# the order of MODEL_CARDS.md
CARD_ORDER = (
    "varnet",
    "unet",
    "deep_cascade",
    "kspace_net",
    "sr_espcn",
    "automap",
    "motion_unet",
    "gfactor_denoiser",
    "sr_3d",
)


def test_images(size: int) -> tuple[torch.Tensor, list[str]]:
    """``(10, size, size)`` float32 test images (each maximum 1) and a label per image."""
    import pydicom
    from pydicom.data import get_testdata_file

    images, labels = [], []
    for name, label in TEST_FILES:
        path = get_testdata_file(name)
        if path is None:
            raise SystemExit(f"{name} not found: install requirements-dev.txt (pydicom-data)")
        pixels = pydicom.dcmread(path).pixel_array.astype(np.float32)
        h, w = pixels.shape
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        square = torch.from_numpy(pixels[top : top + side, left : left + side])[None, None]
        whole = F.interpolate(square, size=(size, size), mode="bilinear", antialias=True)
        images.append(whole[0, 0])
        labels.append(f"{label}, whole field of view")
        big = F.interpolate(square, size=(2 * size, 2 * size), mode="bilinear", antialias=True)
        for row, col, where in (
            (0, 0, "top left"),
            (0, 1, "top right"),
            (1, 0, "bottom left"),
            (1, 1, "bottom right"),
        ):
            images.append(big[0, 0, row * size : (row + 1) * size, col * size : (col + 1) * size])
            labels.append(f"{label}, {where} quadrant at 2x")
    stack = torch.stack(images).clamp_min(0)
    return stack / stack.amax(dim=(-2, -1), keepdim=True), labels


def simulate(images: torch.Tensor, coils: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """(fully sampled k-space ``(S, C, H, W)``, RSS reference ``(S, H, W)``)."""
    sim = simulate_multicoil(images, n_coils=coils, snr=SNR, seed=seed)
    return sim.kspace, rss(ifftc(sim.kspace), coil_dim=1).numpy()


def recon(method: str, kspace: torch.Tensor, mask: torch.Tensor, params: dict | None = None):
    """VolumeResult of ``method`` on the masked k-space (ESPIRiT kernel for the matrix)."""
    names = {p.name for p in get_method(method).params}
    params = dict(params or {})
    if "espirit_kernel" in names:
        params.setdefault("espirit_kernel", ESPIRIT_KERNEL[kspace.shape[-1]])
    return reconstruct_kspace(kspace * mask, mask, method, params, "cpu", progress=False)


def raw_uncertainty(result) -> np.ndarray:
    """The MC-dropout SD before any calibration scale the method applied."""
    return result.maps["uncertainty"] / float(result.info.get("uncertainty_scale", 1.0))


def tuned_cs_lambda(mask: torch.Tensor, size: int, coils: int) -> float:
    """Best CS L1-wavelet lambda of the sweep on the central VALIDATION slice."""
    image = load_slices(VALIDATION_VOLUME, 1, size=(size, size), spread=0.0)
    kspace, ref = simulate(image, coils, seed=2)
    scores = {
        lam: evaluate(ref, recon("cs_wavelet", kspace, mask, {"lambda": lam}).volume)
        for lam in CS_LAMBDAS
    }
    return max(scores, key=lambda lam: scores[lam]["psnr"])


def _flat(sigma: np.ndarray, error: np.ndarray, tissue: np.ndarray):
    return sigma[tissue].astype(np.float64), error[tissue].astype(np.float64)


def _rounded(metrics: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}


def evaluate_family(networks, settings, size, coils, report) -> dict:
    """Test metrics of ``networks`` and both baselines per setting, and the calibration
    data of the MC networks (validation and test) and of the VarNet residual."""
    test, labels = test_images(size)
    val = load_slices(VALIDATION_VOLUME, VALIDATION_SLICES, size=(size, size), spread=0.5)
    test_k, test_ref = simulate(test, coils, seed=1)
    val_k, val_ref = simulate(val, coils, seed=1)
    test_tissue = calibration.tissue_mask(test_ref)
    val_tissue = calibration.tissue_mask(val_ref)
    results = {"labels": labels, "settings": {}, "calib": {}, "check": {}}
    for pattern, acc, cf in settings:
        key = f"{pattern} R={acc}"
        mask = make_mask(pattern, (size, size), acc, seed=MASK_SEED, center_fraction=cf).mask
        lam = tuned_cs_lambda(mask, size, coils)
        rows = {
            "zero_filled": evaluate(test_ref, recon("zero_filled", test_k, mask).volume),
            "cs_wavelet": {
                **evaluate(test_ref, recon("cs_wavelet", test_k, mask, {"lambda": lam}).volume),
                "lambda": lam,
            },
        }
        for name in networks:
            t0 = time.perf_counter()
            out = recon(name, test_k, mask)
            rows[name] = evaluate(test_ref, out.volume)
            error = np.abs(out.volume - test_ref)
            calib = results["calib"].setdefault(name, {"val": ([], []), "test": ([], [])})
            for map_name in ("uncertainty", "dc_residual"):
                if map_name not in out.maps:
                    continue
                sigma = raw_uncertainty(out) if map_name == "uncertainty" else out.maps[map_name]
                calib["map"] = map_name
                for part, arrays in zip(
                    calib["test"], _flat(sigma, error, test_tissue), strict=True
                ):
                    part.append(arrays)
                if key == settings[0][0] + f" R={settings[0][1]}":
                    results["check"][name] = {
                        "setting": key,
                        "image": 0,
                        "sigma": sigma[:1],
                        "error": error[:1],
                        "tissue": test_tissue[:1],
                        "psnr": evaluate(test_ref[:1], out.volume[:1])["psnr"],
                    }
                if map_name == "uncertainty":
                    v = recon(name, val_k, mask)
                    v_err = np.abs(v.volume - val_ref)
                    for part, arrays in zip(
                        calib["val"], _flat(raw_uncertainty(v), v_err, val_tissue), strict=True
                    ):
                        part.append(arrays)
            report(f"  {key} {name}: {time.perf_counter() - t0:.1f} s")
        results["settings"][key] = {k: _rounded(v) for k, v in rows.items()}
    return results


def calibration_section(name: str, calib: dict, check: dict | None) -> dict:
    """The card's ``uncertainty_calibration`` (MC networks) or ``dc_residual_check``."""
    spec = get_method(name)
    defaults = {p.name: p.default for p in spec.params}
    test_sigma, test_error = (np.concatenate(a) for a in calib["test"])
    if calib["map"] == "dc_residual":
        test = _rounded(calibration.calibration_metrics(test_sigma, test_error))
        return {
            "map": "dc_residual",
            "test": {"spearman": test["spearman"], "voxels": test["voxels"]},
            "statement": calibration.statement("data-consistency residual", test),
        }
    val_sigma, val_error = (np.concatenate(a) for a in calib["val"])
    scale = calibration.fit_scale(val_sigma, val_error)
    test = _rounded(calibration.calibration_metrics(test_sigma, test_error, scale))
    section = {
        "map": "uncertainty",
        "method": (
            "MC dropout SD (Gal & Ghahramani 2016) times one scale fitted on the validation "
            "volume for 68.3 % coverage of |error| in tissue (recon_engine.dl.calibration)"
        ),
        "mc_samples": defaults["mc_samples"],
        "mc_dropout": defaults["mc_dropout"],
        "scale": round(scale, 4),
        "fitted_on": f"{VALIDATION_VOLUME.name}, {VALIDATION_SLICES} slices (validation)",
        "validation_uncalibrated": _rounded(calibration.calibration_metrics(val_sigma, val_error)),
        "validation": _rounded(calibration.calibration_metrics(val_sigma, val_error, scale)),
        "test_uncalibrated": _rounded(calibration.calibration_metrics(test_sigma, test_error)),
        "test": test,
        "localises_errors": test["spearman"] >= calibration.LOCALISES_RHO,
        "statement": calibration.statement("uncertainty", test),
    }
    if check is not None:
        check_metrics = calibration.calibration_metrics(
            *_flat(check["sigma"], check["error"], check["tissue"]), scale
        )
        section["check"] = {
            "setting": check["setting"],
            "image": check["image"],
            **_rounded(check_metrics),
            "psnr": round(check["psnr"], 4),
        }
    return section


def test_section(name: str, results: dict, size: int, coils: int, settings) -> dict:
    """The card's ``test`` section: data, per setting network vs both baselines, verdict."""
    per_setting = {}
    for key, rows in results["settings"].items():
        per_setting[key] = {
            "network": rows[name],
            "zero_filled": rows["zero_filled"],
            "cs_wavelet_tuned": rows["cs_wavelet"],
            "gain_over_zero_filled_db": round(rows[name]["psnr"] - rows["zero_filled"]["psnr"], 2),
            "gain_over_cs_db": round(rows[name]["psnr"] - rows["cs_wavelet"]["psnr"], 2),
        }
    zf_gains = [s["gain_over_zero_filled_db"] for s in per_setting.values()]
    cs_gains = [s["gain_over_cs_db"] for s in per_setting.values()]
    return {
        "data": {
            "images": results["labels"],
            "source": "pydicom-data "
            + ", ".join(f for f, _ in TEST_FILES)
            + " (evaluation only: never used for training, selection or tuning)",
            "matrix": [size, size],
            "coils": coils,
            "snr": SNR,
            "masks": [f"{p} R={a}, ACS {c}" for p, a, c in settings],
            "cs_lambda": "best of the sweep on the central slice of the validation volume",
            "script": "benchmarks/eval_model_cards.py",
        },
        "settings": per_setting,
        "rule": "beats a baseline when its PSNR gain averaged over the settings is > 0 dB",
        "mean_gain_over_zero_filled_db": round(float(np.mean(zf_gains)), 2),
        "mean_gain_over_cs_db": round(float(np.mean(cs_gains)), 2),
        "beats_zero_filled": bool(np.mean(zf_gains) > 0),
        "beats_cs": bool(np.mean(cs_gains) > 0),
        "loses_to_zero_filled_in": [
            k for k, s in per_setting.items() if s["gain_over_zero_filled_db"] <= 0
        ],
        "loses_to_cs_in": [k for k, s in per_setting.items() if s["gain_over_cs_db"] <= 0],
    }


IMAGE_SIZE = 64  # the matrix the motion and denoising networks were trained at
VALIDATION_SEED = 10_000_000  # family_training's validation samples
TEST_SEED = 20_000_000


def _motion_stack(images: torch.Tensor, seed0: int) -> tuple[torch.Tensor, ...]:
    """(corrupted RSS, target RSS) with family_training's motion simulation."""
    maps = coil_sensitivities((IMAGE_SIZE, IMAGE_SIZE), MOTION["n_coils"], "birdcage")
    pairs = [_motion_sample(image, maps, seed0 + i, False) for i, image in enumerate(images)]
    return tuple(torch.stack(v) for v in zip(*pairs, strict=True))


def _denoise_stack(images: torch.Tensor, seed0: int) -> tuple[torch.Tensor, ...]:
    """(noisy complex image, noise SD map, clean complex image), family_training's noise."""
    bank = gfactor_bank(IMAGE_SIZE)
    samples = [_denoise_sample(image, bank, seed0 + i, False) for i, image in enumerate(images)]
    return tuple(torch.stack(v) for v in zip(*samples, strict=True))


def _uniform_level(model, x):
    return model(x[0], x[1].mean(dim=(-2, -1), keepdim=True).expand_as(x[1])).abs()


# card name: (method, builder, architecture type, data, network forward, baselines)
IMAGE_NETWORKS = {
    "motion_unet": (
        "motion_unet",
        MotionCorrectionNet,
        "MotionCorrectionNet",
        _motion_stack,
        lambda model, x: model(x[0]).clamp_min(0),
        {"uncorrected (network input)": lambda model, x: x[0]},
    ),
    "gfactor_denoiser": (
        "sense_dl_denoise",
        NoiseMapDenoiser,
        "NoiseMapDenoiser",
        _denoise_stack,
        lambda model, x: model(x[0], x[1]).abs(),
        {
            "noisy (network input)": lambda model, x: x[0].abs(),
            "same network, uniform noise level": _uniform_level,
        },
    ),
}


def _test_source() -> str:
    files = ", ".join(f for f, _ in TEST_FILES)
    return f"pydicom-data {files} (evaluation only: never used for training, selection or tuning)"


def evaluate_image_network(name: str, report) -> tuple[dict, dict]:
    """(card ``test`` section, ``uncertainty_calibration``) of an image-domain network
    (motion correction, denoising) on the test images at its 64x64 matrix, with the
    simulation it was trained with; calibration fitted on its validation slices."""
    method, build, kind, make, forward, baselines = IMAGE_NETWORKS[name]
    defaults = {p.name: p.default for p in get_method(method).params}
    model, _ = load_network(name, build, torch.device("cpu"), kind)
    test, labels = test_images(IMAGE_SIZE)
    val = slice_bank(DATA_DIR, VAL_VOLUMES, IMAGE_SIZE, 8, axes=(2,))
    calib = {"map": "uncertainty", "val": ([], []), "test": ([], [])}
    metrics = {}
    for part, images, seed0 in (("val", val, VALIDATION_SEED), ("test", test, TEST_SEED)):
        data = make(images, seed0)
        ref = data[-1].abs().numpy()
        with torch.no_grad():
            pred = forward(model, data).numpy()
            sigma = mc_dropout_std(
                model,
                lambda data=data: forward(model, data),
                defaults["mc_samples"],
                defaults["mc_dropout"],
            ).numpy()
            if part == "test":
                metrics["network"] = _rounded(evaluate(ref, pred))
                for label, baseline in baselines.items():
                    metrics[label] = _rounded(evaluate(ref, baseline(model, data).numpy()))
        error = np.abs(pred - ref)
        tissue = calibration.tissue_mask(ref)
        for store, arrays in zip(calib[part], _flat(sigma, error, tissue), strict=True):
            store.append(arrays)
    report(f"  {name}: done")
    gains = {k: round(metrics["network"]["psnr"] - metrics[k]["psnr"], 2) for k in baselines}
    first = next(iter(baselines))
    section = {
        "data": {
            "images": labels,
            "source": _test_source(),
            "matrix": [IMAGE_SIZE, IMAGE_SIZE],
            "simulation": "as in training (recon_engine.dl.family_training), seeds "
            f"{TEST_SEED} + image index",
            "script": "benchmarks/eval_model_cards.py",
        },
        "metrics": metrics,
        "gain_db": gains,
        "baseline": first,
        "beats_baseline": gains[first] > 0,
    }
    cal = calibration_section(method, calib, None)
    cal["fitted_on"] = f"{VAL_VOLUMES[0]}, {len(val)} slices (family_training's validation)"
    return section, cal


def evaluate_sr(report) -> dict:
    """ESPCN 2x in-plane vs bicubic on the test images (no dropout: no uncertainty map)."""
    hr, labels = test_images(SIZE)
    low = low_resolution(hr, 2)
    metrics = {}
    for method in ("sr_zero_fill", "sr_bicubic", "sr_espcn"):
        spec = get_method(method)
        params = spec.validate({"factor": 2} if "factor" in [p.name for p in spec.params] else {})
        data = ReconInput(
            kspace=torch.zeros(len(hr), 1, SIZE // 2, SIZE // 2, dtype=torch.complex64),
            mask=torch.ones(1, 1, 1, SIZE // 2),
            metadata={"image": low},
        )
        image = spec.run(data, params).image.abs().numpy()
        metrics[method] = _rounded(evaluate(hr.numpy(), image))
    report("  sr_espcn: done")
    gain = round(metrics["sr_espcn"]["psnr"] - metrics["sr_bicubic"]["psnr"], 2)
    return {
        "data": {
            "images": labels,
            "source": _test_source(),
            "matrix": [SIZE, SIZE],
            "degradation": "central 1/2 of k-space (64x64 input), as in training",
            "script": "benchmarks/eval_model_cards.py",
        },
        "metrics": {
            "network": metrics["sr_espcn"],
            "bicubic": metrics["sr_bicubic"],
            "k-space zero fill": metrics["sr_zero_fill"],
        },
        "gain_db": {"bicubic": gain},
        "baseline": "bicubic",
        "beats_baseline": gain > 0,
        "uncertainty": "none: the network has no dropout layers, so no MC-dropout map",
    }


SR3D_NO_TEST = {
    "unavailable": (
        "no test volume: the non-brain evaluation images (pydicom-data) are single 2D "
        "slices, and through-plane super-resolution needs contiguous slices; the only "
        "figures are on the validation volume, which was used for selection"
    ),
}


def markdown(name: str, section: dict, calib: dict | None) -> str:
    lines = [
        f"\n### {name}\n",
        "| setting | network PSNR / SSIM | zero-filled | tuned CS | vs zero-filled | vs CS |",
        "|---|---|---|---|---|---|",
    ]
    for key, s in section["settings"].items():
        n, z, c = s["network"], s["zero_filled"], s["cs_wavelet_tuned"]
        lines.append(
            f"| {key} | {n['psnr']:.2f} / {n['ssim']:.3f} | {z['psnr']:.2f} / {z['ssim']:.3f} "
            f"| {c['psnr']:.2f} / {c['ssim']:.3f} (lambda {c['lambda']}) | "
            f"{s['gain_over_zero_filled_db']:+.2f} dB | {s['gain_over_cs_db']:+.2f} dB |"
        )
    if calib:
        lines.append(f"\n{calib['statement']} Figures: {json.dumps(calib['test'])}")
        if "scale" in calib:
            lines.append(
                f"(scale {calib['scale']}; uncalibrated {json.dumps(calib['test_uncalibrated'])})"
            )
    return "\n".join(lines)


def write_card(name: str, section: dict, calib: dict | None) -> None:
    """Replace the ``test`` section and the map check of the shipped card ``name``."""
    path = SHIPPED_DIR / f"{name}.json"
    card = json.loads(path.read_text())
    card["test"] = section
    card.pop("uncertainty_calibration", None)
    card.pop("dc_residual_check", None)
    if calib is not None:
        key = "uncertainty_calibration" if calib["map"] == "uncertainty" else "dc_residual_check"
        card[key] = calib
    path.write_text(json.dumps(card, indent=2, sort_keys=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update the shipped model cards")
    parser.add_argument(
        "--only",
        choices=("all", "recon", "image"),
        default="all",
        help="reconstruction networks (k-space input), image networks (motion, denoising, "
        "super-resolution), or all",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    def report(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    families = (
        (NETWORKS, SETTINGS, SIZE, COILS),
        (("automap",), AUTOMAP_SETTINGS, AUTOMAP_SIZE, AUTOMAP_COILS),
    )
    print("# Shipped networks on the test images (never used for selection)")
    cards: dict[str, tuple[dict, dict | None]] = {}
    if args.only in ("all", "recon"):
        for networks, settings, size, coils in families:
            results = evaluate_family(networks, settings, size, coils, report)
            for name in networks:
                section = test_section(name, results, size, coils, settings)
                calib = None
                if name in results["calib"] and "map" in results["calib"][name]:
                    calib = calibration_section(
                        name, results["calib"][name], results["check"][name]
                    )
                print(markdown(name, section, calib))
                cards[name] = (section, calib)
    if args.only in ("all", "image"):
        for name in IMAGE_NETWORKS:
            section, calib = evaluate_image_network(name, report)
            print(f"\n### {name}\n\n{json.dumps(section['metrics'])}\n{calib['statement']}")
            cards[name] = (section, calib)
        cards["sr_espcn"] = (evaluate_sr(report), None)
        print(f"\n### sr_espcn\n\n{json.dumps(cards['sr_espcn'][0]['metrics'])}")
        cards["sr_3d"] = (SR3D_NO_TEST, None)
    if args.write:
        for name, (section, calib) in cards.items():
            write_card(name, section, calib)
        (SHIPPED_DIR / "MODEL_CARDS.md").write_text(
            model_cards_markdown(SHIPPED_DIR, list(CARD_ORDER))
        )


if __name__ == "__main__":
    main()
