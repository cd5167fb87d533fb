"""The DL families beyond VarNet/U-Net: k-space net, AUTOMAP, motion correction, g-factor-aware
denoiser, 3D through-plane SR and MC-dropout uncertainty, through the registry and the CLI.

Structural tests use tiny randomly initialised networks saved as site models
(``RECON_MODEL_PATH``); the measured comparisons use the shipped weights on a volume
their card holds out of training (MNI152 2009a since the shipped families train on
Colin27 + INIA19; each test names its volume).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recon_engine.cli import main
from recon_engine.dl.automap import Automap, virtual_coil
from recon_engine.dl.denoise import NoiseMapDenoiser, estimate_kspace_noise
from recon_engine.dl.kspace_net import KSpaceNet
from recon_engine.dl.mc_dropout import mc_dropout_std
from recon_engine.dl.motion import MotionCorrectionNet
from recon_engine.dl.weights import save_model
from recon_engine.fft import fftc, ifftc, rss
from recon_engine.io import read_reconstruction
from recon_engine.metrics import nmse, psnr
from recon_engine.pipeline import reconstruct_kspace
from recon_engine.registry import ReconError, ReconInput, all_methods, get_method
from recon_engine.sampling import make_mask
from recon_engine.simulation import (
    coil_sensitivities,
    load_slices,
    load_volume,
    simulate_motion,
    simulate_multicoil,
)
from recon_engine.sr.baselines import bicubic_upsample
from recon_engine.sr.espcn3d import ESPCN3D, thick_slices

ROOT = Path(__file__).resolve().parents[3]
MACAQUE = ROOT / "data" / "mri" / "inia19_macaque_t1_brain.nii.gz"
# held out by the shipped families (trained on Colin27 + INIA19, like the VarNet)
MNI152 = ROOT / "data" / "mri" / "mni152_2009a_t1_1mm.nii.gz"
NEW_METHODS = {
    "kspace_net": "deep_learning",
    "automap": "deep_learning",
    "motion_unet": "deep_learning",
    "sense_dl_denoise": "deep_learning",
    "sr_3d": "super_resolution",
}


def _save(net: torch.nn.Module, arch: dict, directory: Path, name: str) -> None:
    save_model(net.state_dict(), {"architecture": arch}, directory, name)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tiny random-weight models of every family in a site model directory."""
    monkeypatch.setenv("RECON_MODEL_PATH", str(tmp_path))
    torch.manual_seed(0)
    arch = {"n_coils": 4, "chans": 4, "num_pool_layers": 1, "drop_prob": 0.1}
    _save(KSpaceNet(**arch), {"type": "KSpaceNet", **arch}, tmp_path, "tiny_kspace")
    arch = {"matrix": [16, 16], "conv_chans": 4, "drop_prob": 0.1}
    _save(Automap(**arch), {"type": "Automap", **arch}, tmp_path, "tiny_automap")
    arch = {"chans": 4, "num_pool_layers": 2, "drop_prob": 0.1}
    _save(MotionCorrectionNet(**arch), {"type": "MotionCorrectionNet", **arch}, tmp_path, "tiny_mo")
    arch = {"factor": 2, "features": 4, "mid": 4, "drop_prob": 0.1}
    _save(ESPCN3D(**arch), {"type": "ESPCN3D", **arch}, tmp_path, "tiny_sr3d")
    return tmp_path


def _case(n_coils: int = 4, size: int = 32, slices: int = 2, acceleration: int = 4):
    """Undersampled multi-coil k-space of Colin27 slices (structure tests only)."""
    images = load_slices(ROOT / "data" / "mri" / "colin27_t1_1mm.nii.gz", slices, (size, size))
    sim = simulate_multicoil(images, n_coils=n_coils, snr=40.0, seed=1)
    mask = make_mask("equispaced", (size, size), acceleration, center_fraction=0.16).mask
    return sim, mask


def _run(name: str, data: ReconInput, **params):
    spec = get_method(name)
    return spec.run(data, spec.validate(params))


def test_new_methods_are_registered_with_families_and_mc_params() -> None:
    found = {s.name: s for s in all_methods()}
    for name, family in NEW_METHODS.items():
        assert found[name].family == family
        params = {p.name for p in found[name].params}
        assert {"model", "mc_samples", "mc_dropout"} <= params


def test_kspace_net_keeps_every_sampled_sample(site: Path) -> None:
    sim, mask = _case()
    data = ReconInput(kspace=sim.kspace * mask, mask=mask)
    out = _run("kspace_net", data, model="tiny_kspace", batch_size=1)
    assert out.image.shape == (2, 32, 32)
    # independent check of data consistency: the network's k-space on the sampled lines
    net = KSpaceNet(n_coils=4, chans=4, num_pool_layers=1, drop_prob=0.1)
    from recon_engine.dl.weights import load_state_dict

    net.load_state_dict(load_state_dict("tiny_kspace")[0])
    net.eval()
    with torch.no_grad():
        k = net(data.kspace, mask)
    sampled = mask[0, 0, 0].bool()
    torch.testing.assert_close(k[..., sampled], data.kspace[..., sampled], rtol=0, atol=0)
    assert float(k[..., ~sampled].abs().mean()) > 0  # it did fill the missing lines
    torch.testing.assert_close(out.image, rss(ifftc(k), coil_dim=1), rtol=1e-5, atol=1e-6)
    # the residual would be identically zero: no map, and the output says why
    assert "dc_residual" not in out.maps
    assert "zero by construction" in out.info["dc_residual"]


def test_kspace_net_refuses_wrong_coils_and_missing_acs(site: Path) -> None:
    sim, mask = _case(n_coils=6)
    with pytest.raises(ReconError, match="trained for 4 coils; this k-space has 6"):
        _run("kspace_net", ReconInput(kspace=sim.kspace * mask, mask=mask), model="tiny_kspace")
    sim, _ = _case()
    no_acs = torch.zeros(1, 1, 1, 32)
    no_acs[..., 1::4] = 1
    with pytest.raises(ReconError, match="needs a fully sampled centre"):
        reconstruct_kspace(
            sim.kspace * no_acs, no_acs, "kspace_net", {"model": "tiny_kspace"}, progress=False
        )


def test_automap_runs_at_its_matrix_and_refuses_others(site: Path) -> None:
    sim, mask = _case(size=16, acceleration=2)  # R=4 leaves too few lines on 16
    out = _run("automap", ReconInput(kspace=sim.kspace * mask, mask=mask), model="tiny_automap")
    assert out.image.shape == (2, 16, 16) and bool(torch.isfinite(out.image).all())
    sim, mask = _case(size=32)
    with pytest.raises(ReconError, match=r"trained at a 16x16 matrix .* this k-space is 32x32"):
        _run("automap", ReconInput(kspace=sim.kspace * mask, mask=mask), model="tiny_automap")


def test_virtual_coil_is_phase_fixed_and_coil_count_free() -> None:
    sim, _ = _case(n_coils=8, size=24)
    vc = virtual_coil(sim.kspace)
    centre = vc[:, 12, 12]
    assert bool((centre.real > 0).all()) and float(centre.imag.abs().max()) < 1e-3 * float(
        centre.abs().max()
    )
    # one coil: the virtual coil is that coil, up to a global phase
    single = sim.kspace[:, :1]
    one = virtual_coil(single)
    ratio = one / single[:, 0]
    torch.testing.assert_close(ratio.abs(), torch.ones_like(ratio.abs()), rtol=1e-4, atol=1e-4)


def test_mc_dropout_map_is_zero_when_off_and_positive_when_on(site: Path) -> None:
    sim, mask = _case()
    data = ReconInput(kspace=sim.kspace * mask, mask=mask)
    plain = _run("kspace_net", data, model="tiny_kspace", mc_samples=0)
    off = _run("kspace_net", data, model="tiny_kspace", mc_samples=4, mc_dropout=0.0)
    on = _run("kspace_net", data, model="tiny_kspace", mc_samples=4, mc_dropout=0.3)
    assert "uncertainty" not in plain.maps
    assert "uncertainty" in _run("kspace_net", data, model="tiny_kspace").maps  # on by default
    assert float(off.maps["uncertainty"].abs().max()) == 0.0
    assert float(on.maps["uncertainty"].mean()) > 0
    assert on.maps["uncertainty"].shape == (2, 32, 32)
    # the reconstruction itself is the deterministic pass, untouched by the MC passes
    torch.testing.assert_close(on.image, plain.image)
    again = _run("kspace_net", data, model="tiny_kspace", mc_samples=4, mc_dropout=0.3)
    torch.testing.assert_close(again.maps["uncertainty"], on.maps["uncertainty"])
    for name, model, size in (("automap", "tiny_automap", 16), ("motion_unet", "tiny_mo", 32)):
        sim, mask = _case(size=size, acceleration=2 if size == 16 else 4)
        d = ReconInput(kspace=sim.kspace * mask, mask=mask)
        assert float(_run(name, d, model=model, mc_samples=3).maps["uncertainty"].mean()) > 0


def test_mc_dropout_needs_dropout_layers() -> None:
    net = torch.nn.Conv2d(1, 1, 3)
    with pytest.raises(ReconError, match="no dropout layers"):
        mc_dropout_std(net, lambda: net(torch.ones(1, 1, 5, 5)), 3, 0.1)


def test_corrupt_weights_and_wrong_family_are_refused(site: Path) -> None:
    sim, mask = _case()
    data = ReconInput(kspace=sim.kspace * mask, mask=mask)
    with pytest.raises(ReconError, match="is a KSpaceNet model, this method needs Automap"):
        _run("automap", data, model="tiny_kspace")
    path = site / "tiny_mo.pt"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ReconError, match="corrupt or was replaced"):
        _run("motion_unet", data, model="tiny_mo")


def test_motion_between_shots_zero_motion_and_moved_lines() -> None:
    image = load_slices(MACAQUE, 1, (32, 32))
    maps = coil_sensitivities((32, 32), 4, "birdcage")
    still = simulate_motion(image, 4, 0.0, 0.0, seed=3, sensitivities=maps)
    reference = fftc(maps[None] * image[:, None].to(torch.complex64))
    torch.testing.assert_close(still.kspace, reference, rtol=0, atol=1e-5)
    moved = simulate_motion(image, 4, 2.5, 0.0, seed=3, sensitivities=maps)
    assert moved.shot_index.tolist() == [i * 4 // 32 for i in range(32)]
    ky = torch.arange(32, dtype=torch.float64) - 16
    for shot in range(4):
        dy, dx, angle = moved.transforms[shot].tolist()
        assert angle == 0.0 and (shot == 0) == (dy == dx == 0.0)
        # Fourier shift theorem gives the translated object independently of the simulator;
        # the coils stay still, so the shot's lines are the k-space of maps x moved object
        ramp = torch.exp(-2j * math.pi * (ky[:, None] * dy + ky[None, :] * dx) / 32)
        shifted = ifftc(fftc(image.to(torch.complex64)) * ramp.to(torch.complex64))
        lines = moved.shot_index == shot
        expected = fftc(maps[None] * shifted[:, None])[..., lines]
        torch.testing.assert_close(moved.kspace[..., lines], expected, rtol=0, atol=1e-4)
        if shot:
            assert float((moved.kspace[..., lines] - reference[..., lines]).abs().max()) > 0.01


def test_motion_unet_runs_through_registry(site: Path) -> None:
    sim, _ = _case()
    full = torch.ones(1, 1, 1, 32)
    out = _run("motion_unet", ReconInput(kspace=sim.kspace, mask=full), model="tiny_mo")
    assert out.image.shape == (2, 32, 32) and float(out.image.min()) >= 0


def test_sr_3d_enlarges_the_slice_axis_and_refuses_one_slice(site: Path) -> None:
    volume = load_slices(MACAQUE, 6, (24, 24))
    data = ReconInput(kspace=torch.zeros(0), mask=torch.ones(1), metadata={"image": volume})
    out = _run("sr_3d", data, model="tiny_sr3d", mc_samples=2)
    assert out.image.shape == (12, 24, 24) and out.info["factor"] == 2
    assert out.maps["uncertainty"].shape == (12, 24, 24)
    one = ReconInput(kspace=torch.zeros(0), mask=torch.ones(1), metadata={"image": volume[:1]})
    with pytest.raises(ReconError, match="at least 2 slices"):
        _run("sr_3d", one, model="tiny_sr3d")


def test_noise_estimate_from_kspace_edge() -> None:
    image = load_slices(MACAQUE, 2, (64, 64))
    sim = simulate_multicoil(image, n_coils=8, snr=20.0, seed=4)
    mask = make_mask("uniform", (64, 64), 4, acs_lines=8).mask
    estimate = estimate_kspace_noise(sim.kspace * mask, mask)
    assert estimate == pytest.approx(sim.noise_std, rel=0.15)


# ------------------------------------------------------------------ shipped weights
@pytest.fixture(scope="module")
def sense_case():
    """MNI152 slices (never seen in training), 8 birdcage coils, SNR 40, SENSE R = 4."""
    image = load_slices(MNI152, 4, (64, 64), spread=0.4)
    sim = simulate_multicoil(image, n_coils=8, snr=40.0, seed=11)
    mask = make_mask("uniform", (64, 64), 4, acs_lines=0).mask
    return sim, mask


def test_gfactor_aware_denoiser_beats_uniform_level_where_g_is_high(
    sense_case, monkeypatch
) -> None:
    monkeypatch.delenv("RECON_MODEL_PATH", raising=False)
    sim, mask = sense_case
    data = ReconInput(kspace=sim.kspace * mask, mask=mask, sensitivities=sim.sensitivities)
    common = {"noise_std": sim.noise_std}
    aware = _run("sense_dl_denoise", data, noise_map="g_factor", **common)
    uniform = _run("sense_dl_denoise", data, noise_map="uniform", **common)
    sense = _run("sense", data)
    truth = sim.image.abs()
    g = aware.maps["g_factor"]
    obj = truth > 0.1 * truth.max()
    high = obj & (g > torch.quantile(g[obj], 0.75))

    def rmse(img, region):
        return float(((img - truth)[region] ** 2).mean().sqrt())

    noisy, err_aware, err_uniform = (
        rmse(x, high) for x in (sense.image.abs(), aware.image, uniform.image)
    )
    # measured on this deterministic case (see the report): both denoise, the g-aware more
    assert err_aware < 0.9 * err_uniform < 0.9 * noisy
    assert rmse(aware.image, obj) < rmse(uniform.image, obj)
    expected_sd = g * sim.noise_std * 2.0  # sigma g sqrt(R), R = 4
    torch.testing.assert_close(aware.maps["noise_sd"], expected_sd)
    level = uniform.maps["noise_sd"][g > 0]
    assert float(level.std()) < 1e-6 * float(level.mean())


def test_denoiser_shipped_card_states_training_and_validation() -> None:
    from recon_engine.dl.weights import load_state_dict

    state, card = load_state_dict("gfactor_denoiser")
    net = NoiseMapDenoiser(**{k: v for k, v in card["architecture"].items() if k != "type"})
    net.load_state_dict(state)
    assert card["data"]["val_volumes"] == [MNI152.name]
    assert MNI152.name not in card["data"]["train_volumes"]
    assert card["validation"]["psnr"] > card["validation_noisy"]["psnr"]


def test_sr_3d_shipped_model_beats_cubic_on_unseen_volume(monkeypatch) -> None:
    monkeypatch.delenv("RECON_MODEL_PATH", raising=False)
    vol, _ = load_volume(MNI152)  # 1 mm voxels, as in training
    vol = torch.from_numpy(np.moveaxis(vol, 2, 0).astype(np.float32))
    s = vol.shape[0] // 2
    hr = vol[s - 12 : s + 12] / float(torch.quantile(vol.flatten()[::7], 0.995))
    lr = thick_slices(hr, 2)
    data = ReconInput(kspace=torch.zeros(0), mask=torch.ones(1), metadata={"image": lr})
    out = _run("sr_3d", data, mc_samples=0)
    gain = psnr(hr, out.image) - psnr(hr, bicubic_upsample(lr, 2, dims=(0,)))
    assert gain > 0.3  # measured: +0.57 dB over cubic convolution on these 24 slices


def _cli(command: str) -> subprocess.CompletedProcess:
    """``python -m recon_engine`` + the space-separated ``command`` (shipped models only)."""
    env = {k: v for k, v in os.environ.items() if k != "RECON_MODEL_PATH"}
    env.update(PYTHONPATH=str(ROOT), RECON_DEVICE="cpu")
    res = subprocess.run(
        [sys.executable, "-m", "recon_engine", *command.split()],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    return res


@pytest.mark.slow
def test_cli_runs_shipped_models_on_an_unseen_case(tmp_path: Path, capsys) -> None:
    d = tmp_path
    for size, pattern, r in ((64, "equispaced", 4), (32, "equispaced", 2), (64, "uniform", 2)):
        full = d / f"full{size}.h5"
        if not full.exists():
            _cli(
                f"simulate {MNI152} {full} --coils 8 --slices 4 --matrix {size} {size} "
                "--snr 40 --spread 0.4"
            )
        _cli(
            f"undersample {full} {d}/{pattern}{r}_{size}.h5 --pattern {pattern} "
            f"--acceleration {r} --center-fraction 0.16"
        )
    r4 = d / "equispaced4_64.h5"
    _cli(f"reconstruct {r4} {d}/kn.h5 --method kspace_net --quiet --param mc_samples=3")
    _cli(f"reconstruct {r4} {d}/zf.h5 --method zero_filled --quiet")
    kn, zf = (_cli(f"evaluate {d}/{n}.h5 {d}/full64.h5").stdout for n in ("kn", "zf"))
    assert float(kn.split()[1]) < float(zf.split()[1])  # NMSE below zero-filled
    _cli(f"reconstruct {d}/full64.h5 {d}/mo.h5 --method motion_unet --quiet")
    _cli(f"reconstruct {d}/equispaced2_32.h5 {d}/am.h5 --method automap --quiet")
    assert read_reconstruction(d / "am.h5")[0].shape == (4, 32, 32)
    _cli(
        f"reconstruct {d}/uniform2_64.h5 {d}/dn.h5 --method sense_dl_denoise --quiet "
        "--param sensitivities=acs"
    )
    assert read_reconstruction(d / "dn.h5")[0].shape == (4, 64, 64)
    _cli(f"super-resolve {d}/kn.h5 {d}/kn_sr.h5 --method sr_3d")
    volume, attrs = read_reconstruction(d / "kn_sr.h5")
    assert volume.shape == (8, 64, 64) and attrs["method"] == "sr_3d"
    assert main(f"reconstruct {r4} {d}/x.h5 --method automap --quiet".split()) == 2
    assert "trained at a 32x32 matrix" in capsys.readouterr().err
    assert main(f"super-resolve {d}/kn.h5 {d}/y.h5 --method kspace_net".split()) == 2
    assert "not super-resolution" in capsys.readouterr().err


def test_zoo_trains_the_new_families_generically() -> None:
    from recon_engine.dl import zoo

    k = torch.randn(2, 4, 16, 16, 2)
    mask = torch.zeros(2, 1, 1, 16, 1, dtype=torch.bool)
    mask[..., ::2, :] = True
    batch = {"kspace": k * mask, "mask": mask, "zero_filled": torch.rand(2, 16, 16)}
    kwargs = {
        "KSpaceNet": {"n_coils": 4, "chans": 4, "num_pool_layers": 1},
        "Automap": {"matrix": [16, 16], "conv_chans": 4},
        "MotionCorrectionNet": {"chans": 4, "num_pool_layers": 2},
    }
    for name, arch in kwargs.items():
        entry = zoo.get(name)
        out = entry.forward(entry.build(**arch), batch)
        assert out.shape == (2, 16, 16)
        out.sum().backward()  # differentiable end to end


def test_super_resolve_verb_with_a_baseline(tmp_path: Path, capsys) -> None:
    from recon_engine.io import write_reconstruction

    volume = load_slices(MACAQUE, 3, (20, 20)).numpy()
    write_reconstruction(tmp_path / "in.h5", volume, {"patient_id": "P1"})
    args = ["super-resolve", str(tmp_path / "in.h5"), str(tmp_path / "out.h5")]
    assert main([*args, "--method", "sr_bicubic", "--param", "factor=3"]) == 0
    out, attrs = read_reconstruction(tmp_path / "out.h5")
    assert out.shape == (3, 60, 60) and attrs["patient_id"] == "P1"
    np.testing.assert_allclose(
        out, bicubic_upsample(torch.from_numpy(volume), 3).numpy(), rtol=1e-5, atol=1e-6
    )
    assert main([*args, "--method", "sr_bicubic", "--param", "factor=9"]) == 2
    assert "above the maximum" in capsys.readouterr().err
    missing = ["super-resolve", str(tmp_path / "nope.h5"), str(tmp_path / "o.h5")]
    assert main([*missing, "--method", "sr_bicubic"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_automap_dft_initialisation_computes_the_inverse_fft() -> None:
    from recon_engine.dl.automap import dft_initialise

    net = Automap(matrix=[8, 12], conv_chans=2)
    dft_initialise(net)
    k = torch.randn(3, 8, 12, dtype=torch.complex64)
    flat = torch.cat([k.real.reshape(3, -1), k.imag.reshape(3, -1)], dim=1)
    with torch.no_grad():
        first = net.fc[0](flat).reshape(3, 8, 12)
    torch.testing.assert_close(first, ifftc(k).real, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(net.fc[3].weight, torch.eye(96))


def test_bad_input_is_refused_clearly(site: Path) -> None:
    sim, mask = _case()
    with pytest.raises(ReconError, match=r"k-space must be \(S, C, H, W\)"):
        _run("motion_unet", ReconInput(kspace=sim.kspace[0], mask=mask), model="tiny_mo")
    random = make_mask("random", (32, 32), 2, seed=0, center_fraction=0.16).mask
    data = ReconInput(sim.kspace * random, random, sensitivities=sim.sensitivities)
    with pytest.raises(ReconError, match="mask is not uniform"):
        _run("sense_dl_denoise", data, noise_std=0.01)
    with pytest.raises(ReconError, match="no trained weights for model 'nosuch'"):
        _run("kspace_net", ReconInput(sim.kspace * mask, mask), model="nosuch")


def test_motion_unet_reduces_motion_error_on_unseen_case(monkeypatch) -> None:
    monkeypatch.delenv("RECON_MODEL_PATH", raising=False)
    image = load_slices(MNI152, 4, (64, 64), spread=0.4)
    sim = simulate_multicoil(image, n_coils=4, snr=None, seed=21)
    moved = simulate_motion(sim.image, 8, 3.0, 3.0, seed=21, sensitivities=sim.sensitivities[0])
    out = _run("motion_unet", ReconInput(moved.kspace, torch.ones(1, 1, 1, 64)), mc_samples=4)
    truth = rss(ifftc(sim.kspace), coil_dim=1)
    corrupted = rss(ifftc(moved.kspace), coil_dim=1)
    # measured: NMSE 0.038 corrected vs 0.089 uncorrected (8 shots, 3 px / 3 degrees)
    assert nmse(truth, out.image) < 0.6 * nmse(truth, corrupted)
    assert float(out.maps["uncertainty"].mean()) > 0
