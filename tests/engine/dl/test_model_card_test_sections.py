"""Truthful model cards: test-set results against zero-filled and tuned CS, calibration of
the uncertainty maps (recomputable), demonstration-only networks marked wherever methods
are listed and kept out of the demo protocols."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from recon_engine.cli import main as cli_main
from recon_engine.dl import calibration
from recon_engine.dl.mc_dropout import calibrated_uncertainty
from recon_engine.dl.weights import SHIPPED_DIR
from recon_engine.pipeline import reconstruct_kspace
from recon_engine.registry import all_methods, get_method
from recon_engine.sampling import make_mask

RECON_NETWORKS = ("varnet", "unet", "deep_cascade", "kspace_net", "automap")
MC_NETWORKS = ("unet", "kspace_net", "automap")
# card name -> registry method of the image-domain networks (their own baselines)
IMAGE_NETWORKS = {
    "motion_unet": "motion_unet",
    "gfactor_denoiser": "sense_dl_denoise",
    "sr_espcn": "sr_espcn",
}
CALIBRATED = {
    **{n: n for n in MC_NETWORKS},
    "motion_unet": "motion_unet",
    "gfactor_denoiser": "sense_dl_denoise",
}
SCRIPT = SHIPPED_DIR.parents[2] / "benchmarks" / "eval_model_cards.py"


def _card(name: str) -> dict:
    return json.loads((SHIPPED_DIR / f"{name}.json").read_text())


def _eval_script():
    spec = importlib.util.spec_from_file_location("eval_model_cards", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", RECON_NETWORKS)
def test_card_reports_test_set_against_zero_filled_and_tuned_cs(name: str) -> None:
    card = _card(name)
    test = card["test"]
    assert "pydicom-data" in test["data"]["source"] and len(test["data"]["images"]) == 10
    validation = json.dumps(card.get("split", card.get("data")))
    assert "mni152" in validation  # selected on MNI152, so MNI152 is not the test data
    for row in test["settings"].values():
        for key in ("network", "zero_filled", "cs_wavelet_tuned"):
            assert {"psnr", "ssim", "nmse"} <= set(row[key])
        gain = row["network"]["psnr"] - row["zero_filled"]["psnr"]
        assert row["gain_over_zero_filled_db"] == pytest.approx(gain, abs=0.011)
    gains = [r["gain_over_zero_filled_db"] for r in test["settings"].values()]
    assert test["beats_zero_filled"] == (float(np.mean(gains)) > 0)
    losing = [k for k, r in test["settings"].items() if r["gain_over_zero_filled_db"] <= 0]
    assert sorted(test["loses_to_zero_filled_in"]) == sorted(losing)
    # the registry flag follows the card: a network losing to zero-filled is a demonstration
    assert get_method(name).demonstration_only == (not test["beats_zero_filled"])
    assert f"## {name}\n" in (SHIPPED_DIR / "MODEL_CARDS.md").read_text()


@pytest.mark.parametrize(("card_name", "method"), sorted(IMAGE_NETWORKS.items()))
def test_image_network_card_reports_test_set_against_its_baseline(
    card_name: str, method: str
) -> None:
    test = _card(card_name)["test"]
    assert "pydicom-data" in test["data"]["source"] and len(test["data"]["images"]) == 10
    net = test["metrics"]["network"]
    for label, gain in test["gain_db"].items():
        assert gain == pytest.approx(net["psnr"] - test["metrics"][label]["psnr"], abs=0.011)
    assert test["beats_baseline"] == (test["gain_db"][test["baseline"]] > 0)
    assert get_method(method).demonstration_only == (not test["beats_baseline"])


def test_sr_3d_card_says_it_has_no_test_volume() -> None:
    reason = _card("sr_3d")["test"]["unavailable"]
    assert "no test volume" in reason
    assert reason in (SHIPPED_DIR / "MODEL_CARDS.md").read_text()
    assert "uncalibrated" in get_method("sr_3d").description


@pytest.mark.parametrize(("name", "method"), sorted(CALIBRATED.items()))
def test_card_states_uncertainty_calibration_plainly(name: str, method: str) -> None:
    cal = _card(name)["uncertainty_calibration"]
    spec = get_method(method)
    defaults = {p.name: p.default for p in spec.params}
    assert (cal["mc_samples"], cal["mc_dropout"]) == (
        defaults["mc_samples"],
        defaults["mc_dropout"],
    )
    # fitted on validation for nominal 1-SD coverage; reported on test
    assert cal["validation"]["coverage_68"] == pytest.approx(calibration.COVERAGE_1SD, abs=0.01)
    assert "mni152" in cal["fitted_on"]
    t = cal["test"]
    assert cal["localises_errors"] == (t["spearman"] >= calibration.LOCALISES_RHO)
    if not cal["localises_errors"]:
        assert "does not localise errors" in cal["statement"]
        assert f"{t['spearman']:.2f}" in cal["statement"]
    text = (SHIPPED_DIR / "MODEL_CARDS.md").read_text()
    section = text.split(f"## {name}\n")[1].split("\n## ")[0]
    assert cal["statement"] in section and "coverage" in section
    assert cal["statement"] in spec.description


@pytest.mark.slow
@pytest.mark.parametrize("name", MC_NETWORKS)
def test_card_calibration_check_is_recomputable(name: str) -> None:
    """Recompute the card's ``check`` figures (first test image, one setting) from the test
    images with the calibrated map the method now returns."""
    torch.set_num_threads(1)
    script = _eval_script()
    cal = _card(name)["uncertainty_calibration"]
    check = cal["check"]
    family = "automap" if name == "automap" else "main"
    size = script.AUTOMAP_SIZE if family == "automap" else script.SIZE
    coils = script.AUTOMAP_COILS if family == "automap" else script.COILS
    settings = script.AUTOMAP_SETTINGS if family == "automap" else script.SETTINGS
    pattern, acc, cf = next(s for s in settings if f"{s[0]} R={s[1]}" == check["setting"])
    images, _ = script.test_images(size)
    kspace, ref = script.simulate(images, coils, seed=1)
    mask = make_mask(pattern, (size, size), acc, seed=script.MASK_SEED, center_fraction=cf).mask
    out = reconstruct_kspace(kspace * mask, mask, name, device="cpu", progress=False)
    assert out.info["uncertainty_scale"] == pytest.approx(cal["scale"])
    assert cal["statement"] in out.info["uncertainty"]
    i = check["image"]
    tissue = calibration.tissue_mask(ref[i : i + 1])
    sigma = out.maps["uncertainty"][i : i + 1][tissue].astype(np.float64)
    error = np.abs(out.volume[i : i + 1] - ref[i : i + 1])[tissue].astype(np.float64)
    # independent of recon_engine.dl.calibration: scipy's rank correlation, plain counts
    assert spearmanr(sigma, error).statistic == pytest.approx(check["spearman"], abs=0.01)
    assert np.mean(error <= sigma) == pytest.approx(check["coverage_68"], abs=0.01)
    assert np.mean(error <= 1.96 * sigma) == pytest.approx(check["coverage_95"], abs=0.01)
    assert error.mean() / sigma.mean() == pytest.approx(check["error_to_sigma"], rel=0.02)


def test_calibration_scale_is_applied_only_where_it_was_fitted() -> None:
    raw = [torch.full((1, 4, 4), 2.0)]
    card = {
        "uncertainty_calibration": {
            "mc_samples": 8,
            "mc_dropout": 0.1,
            "scale": 3.0,
            "statement": "This uncertainty map does not localise errors: Spearman rho = 0.05",
            "test": {"spearman": 0.05},
        }
    }
    maps, info = calibrated_uncertainty(raw, card, {"mc_samples": 8, "mc_dropout": 0.1})
    torch.testing.assert_close(maps["uncertainty"][0], torch.full((1, 4, 4), 6.0))
    assert info["uncertainty_scale"] == 3.0 and "does not localise" in info["uncertainty"]
    maps, info = calibrated_uncertainty(raw, card, {"mc_samples": 8, "mc_dropout": 0.3})
    assert maps["uncertainty"][0] is raw[0] and info["uncertainty_scale"] == 1.0
    assert info["uncertainty"].startswith("uncalibrated")
    maps, info = calibrated_uncertainty(raw, {}, {"mc_samples": 8, "mc_dropout": 0.1})
    assert "no calibration" in info["uncertainty"]
    assert calibrated_uncertainty([], card, {"mc_samples": 0, "mc_dropout": 0.1}) == ({}, {})


def test_calibration_figures_against_hand_computed_values() -> None:
    sigma = np.array([1.0, 1.0, 2.0, 2.0, 4.0])
    error = np.array([0.5, 1.5, 1.0, 3.0, 2.0])
    # ratios |e|/sigma = 0.5, 1.5, 0.5, 1.5, 0.5; numpy's linear quantile at 0.6827 of the
    # sorted ratios (0.5, 0.5, 0.5, 1.5, 1.5): position 0.6827 * 4 = 2.7308 -> 0.5 + 0.7308
    assert calibration.fit_scale(sigma, error) == pytest.approx(1.2308, abs=1e-4)
    m = calibration.calibration_metrics(sigma, error, scale=1.0)
    assert m["coverage_68"] == pytest.approx(3 / 5)  # 0.5<=1, 1.0<=2, 2.0<=4
    assert m["coverage_95"] == pytest.approx(1.0)  # 1.5 <= 1.96 and 3.0 <= 3.92
    assert m["error_to_sigma"] == pytest.approx(8.0 / 10.0)
    assert m["spearman"] == pytest.approx(spearmanr(sigma, error).statistic)


def test_methods_lists_demonstrations_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    demos = [s for s in all_methods() if s.demonstration_only]
    assert {s.name for s in demos} >= {"automap", "unet"}
    assert cli_main(["methods"]) == 0
    text = capsys.readouterr().out
    for spec in demos:
        line = next(x for x in text.splitlines() if x.startswith(f"{spec.name}  "))
        assert "demonstration only" in line
        assert f"caveat: {spec.caveat}" in text
    assert cli_main(["methods", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert all(listed[s.name]["demonstration_only"] for s in demos)
    assert not listed["varnet"]["demonstration_only"]


def test_demo_protocols_use_no_demonstration_method() -> None:
    from mriplatform.protocols.demo import DEMO_PROTOCOLS, REFERENCE
    from mriplatform.protocols.forms import method_choices

    for protocol in (REFERENCE, *DEMO_PROTOCOLS):
        assert not get_method(protocol[1]).demonstration_only, protocol[0]
    labels = {name: label for _, group in method_choices() for name, label in group}
    assert "demonstration only" in labels["automap"]
    assert "demonstration only" not in labels["varnet"]


def test_varnet_residual_map_is_described_by_its_card() -> None:
    check = _card("varnet")["dc_residual_check"]
    rho = check["test"]["spearman"]
    assert ("does not localise errors" in check["statement"]) == (rho < calibration.LOCALISES_RHO)
    assert check["statement"] in get_method("varnet").description
    assert "zero by construction" in get_method("deep_cascade").description
    assert "zero by construction" in get_method("kspace_net").description
