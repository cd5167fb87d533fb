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

Run: ``nice .venv/bin/python benchmarks/eval_model_cards.py [--write]``; prints Markdown,
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
from recon_engine.dl.train import model_cards_markdown  # noqa: E402
from recon_engine.dl.weights import SHIPPED_DIR  # noqa: E402
from recon_engine.fft import ifftc, rss  # noqa: E402
from recon_engine.metrics import evaluate  # noqa: E402
from recon_engine.pipeline import reconstruct_kspace  # noqa: E402
from recon_engine.registry import get_method  # noqa: E402
from recon_engine.sampling import make_mask  # noqa: E402
from recon_engine.simulation import load_slices, simulate_multicoil  # noqa: E402

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


def calibration_section(name: str, calib: dict, check: dict) -> dict:
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
    check_metrics = calibration.calibration_metrics(
        *_flat(check["sigma"], check["error"], check["tissue"]), scale
    )
    return {
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
        "check": {
            "setting": check["setting"],
            "image": check["image"],
            **_rounded(check_metrics),
            "psnr": round(check["psnr"], 4),
        },
    }


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update the shipped model cards")
    args = parser.parse_args()
    torch.set_num_threads(1)

    def report(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    families = (
        (NETWORKS, SETTINGS, SIZE, COILS),
        (("automap",), AUTOMAP_SETTINGS, AUTOMAP_SIZE, AUTOMAP_COILS),
    )
    print("# Shipped networks on the test images (never used for selection)")
    for networks, settings, size, coils in families:
        results = evaluate_family(networks, settings, size, coils, report)
        for name in networks:
            section = test_section(name, results, size, coils, settings)
            calib = None
            if name in results["calib"] and "map" in results["calib"][name]:
                calib = calibration_section(name, results["calib"][name], results["check"][name])
            print(markdown(name, section, calib))
            if args.write:
                path = SHIPPED_DIR / f"{name}.json"
                card = json.loads(path.read_text())
                card["test"] = section
                card.pop("uncertainty_calibration", None)
                card.pop("dc_residual_check", None)
                if calib is not None:
                    card[
                        "uncertainty_calibration"
                        if calib["map"] == "uncertainty"
                        else "dc_residual_check"
                    ] = calib
                path.write_text(json.dumps(card, indent=2, sort_keys=True))
    if args.write:
        (SHIPPED_DIR / "MODEL_CARDS.md").write_text(
            model_cards_markdown(SHIPPED_DIR, list(CARD_ORDER))
        )


if __name__ == "__main__":
    main()
