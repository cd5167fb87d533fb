"""Baselines and the file pipeline, against numpy FFT references and fastMRI conventions."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from recon_engine import registry
from recon_engine.io import read_dicom_series, read_reconstruction, write_fastmri
from recon_engine.pipeline import center_crop, evaluate_file, reconstruct_file
from recon_engine.registry import (
    MethodSpec,
    ParameterError,
    ReconError,
    ReconInput,
    ReconOutput,
    get_method,
)
from recon_engine.sampling import acs_region, infer_mask, random_mask, uniform_mask


def numpy_rss(kspace: np.ndarray) -> np.ndarray:
    """Independent reference: centred orthonormal inverse FFT with numpy, RSS over coils."""
    img = np.fft.fftshift(
        np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )
    return np.sqrt((np.abs(img) ** 2).sum(axis=1))


@pytest.fixture(scope="module")
def full_file(sim8, tmp_path_factory):
    path = tmp_path_factory.mktemp("pipe") / "full.h5"
    k = sim8.kspace.numpy()
    ref = numpy_rss(k).astype(np.float32)
    write_fastmri(
        path,
        sim8.kspace,
        reconstruction_rss=center_crop(ref, (80, 80)),
        attrs={"acquisition": "AXT1", "patient_id": "p1"},
    )
    return path, ref


def test_zero_filled_matches_numpy_reference(sim8):
    m = random_mask((96, 96), 4, 0.08, seed=1)
    k = sim8.kspace * m.mask
    spec = get_method("zero_filled")
    out = spec.run(ReconInput(kspace=k, mask=m.mask), spec.validate({}))
    np.testing.assert_allclose(out.image.numpy(), numpy_rss(k.numpy()), rtol=1e-5, atol=1e-6)
    assert set(out.timings) >= {"ifft", "coil_combine"}
    assert spec.family == "baseline"


def test_zero_filled_sensitivity_combination_is_exact(sim8_noiseless):
    d = sim8_noiseless
    spec = get_method("zero_filled")
    data = ReconInput(kspace=d.kspace, mask=torch.ones(1, 1, 1, 96), sensitivities=d.sensitivities)
    out = spec.run(data, spec.validate({"combine": "sensitivities"}))
    assert float((out.image - d.image).abs().max()) < 1e-5
    with pytest.raises(ReconError, match="sensitivities"):
        spec.run(
            ReconInput(kspace=d.kspace, mask=torch.ones(1, 1, 1, 96)),
            spec.validate({"combine": "sensitivities"}),
        )


def test_rss_refuses_undersampled_unless_allowed(sim8):
    spec = get_method("rss")
    m = uniform_mask((96, 96), 2, 16)
    data = ReconInput(kspace=sim8.kspace * m.mask, mask=m.mask)
    with pytest.raises(ReconError, match="fully sampled"):
        spec.run(data, spec.validate({}))
    out = spec.run(data, spec.validate({"allow_undersampled": "true"}))
    np.testing.assert_allclose(
        out.image.numpy(), numpy_rss(data.kspace.numpy()), rtol=1e-5, atol=1e-6
    )
    full = spec.run(ReconInput(kspace=sim8.kspace, mask=torch.ones(1, 1, 1, 96)), spec.validate({}))
    np.testing.assert_allclose(
        full.image.numpy(), numpy_rss(sim8.kspace.numpy()), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    "kw",
    [
        {"kspace": torch.zeros(2, 8, 8, dtype=torch.complex64), "mask": torch.ones(1, 1, 1, 8)},
        {"kspace": torch.zeros(1, 2, 8, 8), "mask": torch.ones(1, 1, 1, 8)},
        {"kspace": torch.full((1, 2, 8, 8), complex("nan+0j")), "mask": torch.ones(1, 1, 1, 8)},
        {"kspace": torch.zeros(1, 2, 8, 8, dtype=torch.complex64), "mask": torch.ones(1, 1, 1, 6)},
    ],
)
def test_baselines_reject_bad_input(kw):
    spec = get_method("zero_filled")
    with pytest.raises(ReconError):
        spec.run(ReconInput(**kw), spec.validate({}))


def test_infer_mask_and_acs_region():
    k = torch.ones(2, 3, 8, 16, dtype=torch.complex64)
    m = uniform_mask((8, 16), 4, acs_lines=5)
    inferred = infer_mask(k * m.mask)
    torch.testing.assert_close(inferred, m.mask)
    torch.testing.assert_close(acs_region(inferred), m.acs_mask)
    two_d = torch.zeros(1, 1, 8, 16)
    two_d[..., 2:6, 5:11] = 1
    two_d[..., 0, ::2] = 1
    torch.testing.assert_close(infer_mask(k * two_d), two_d)
    acs = acs_region(two_d)
    assert acs[0, 0, 2:6, 5:11].all() and float(acs.sum()) == 24
    assert float(acs_region(torch.zeros(1, 1, 1, 8)).sum()) == 0
    with pytest.raises(ParameterError, match="all zero"):
        infer_mask(torch.zeros(1, 1, 4, 4, dtype=torch.complex64))


def test_reconstruct_file_full_equals_reference_and_provenance(full_file, tmp_path):
    path, ref = full_file
    calls = []
    summary = reconstruct_file(
        path, tmp_path / "rss.h5", "rss", device="cpu", progress=lambda d, t: calls.append((d, t))
    )
    rec, attrs = read_reconstruction(tmp_path / "rss.h5")
    assert rec.shape == (4, 80, 80)  # cropped to reconstruction_rss, fastMRI style
    np.testing.assert_allclose(rec, center_crop(ref, (80, 80)), rtol=1e-5, atol=1e-6)
    assert attrs["method"] == "rss" and json.loads(attrs["params"]) == {"allow_undersampled": False}
    assert attrs["engine_version"] and json.loads(attrs["device"])["device"] == "cpu"
    assert set(json.loads(attrs["timings"])) >= {"ifft"}
    assert attrs["mask_source"] == "inferred from zeros"
    assert attrs["acquisition"] == "AXT1" and attrs["patient_id"] == "p1"
    assert calls and calls[-1] == (4, 4) and all(d <= t for d, t in calls)
    assert summary["shape"] == [4, 80, 80]
    scores = evaluate_file(tmp_path / "rss.h5", path)
    assert scores["nmse"] < 1e-10 and scores["ssim"] == pytest.approx(1.0)


def test_reconstruct_undersampled_with_mask_batches_and_dicom(sim8, tmp_path):
    m = random_mask((96, 96), 4, 0.08, seed=2)
    src = write_fastmri(tmp_path / "us.h5", sim8.kspace * m.mask, m.mask)
    reconstruct_file(
        src,
        tmp_path / "a.h5",
        "zero_filled",
        progress=False,
        batch_size=1,
        dicom_dir=tmp_path / "dcm",
    )
    reconstruct_file(src, tmp_path / "b.h5", "zero_filled", progress=False)
    a, attrs = read_reconstruction(tmp_path / "a.h5")
    b, _ = read_reconstruction(tmp_path / "b.h5")
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a, numpy_rss((sim8.kspace * m.mask).numpy()), rtol=1e-5, atol=1e-6)
    assert attrs["mask_source"] == "file"
    assert attrs["effective_acceleration"] == pytest.approx(m.effective_acceleration)
    assert attrs["acs_size"] == m.n_acs
    series = read_dicom_series(tmp_path / "dcm")
    assert series.volume.shape == (4, 96, 96)
    np.testing.assert_allclose(series.volume, a, atol=a.max() / 65535)


def test_mask_that_contradicts_kspace_is_rejected(sim8, tmp_path):
    m = uniform_mask((96, 96), 4, 8)
    src = write_fastmri(tmp_path / "bad.h5", sim8.kspace, m.mask)  # k-space not zeroed
    with pytest.raises(ReconError, match="mask does not match"):
        reconstruct_file(src, tmp_path / "o.h5", "zero_filled", progress=False)


def _probe(monkeypatch, name, run, needs_acs=False):
    spec = MethodSpec(
        name=name,
        title=name,
        family="baseline",
        description="test double",
        run=run,
        needs_acs=needs_acs,
    )
    registry._load_all()
    monkeypatch.setitem(registry._REGISTRY, name, spec)
    return spec


def test_pipeline_passes_acs_and_checks_outputs(sim8, tmp_path, monkeypatch):
    seen = {}

    def run(data: ReconInput, params: dict) -> ReconOutput:
        seen["acs"] = data.acs_mask.clone()
        return ReconOutput(image=torch.zeros(data.kspace.shape[0], *data.kspace.shape[-2:]))

    _probe(monkeypatch, "acs_probe", run, needs_acs=True)
    m = uniform_mask((96, 96), 4, 12)  # lines 40 and 56 are outside: ACS = exactly [42, 54)
    src = write_fastmri(tmp_path / "us.h5", sim8.kspace * m.mask, m.mask)
    reconstruct_file(src, tmp_path / "o.h5", "acs_probe", progress=False)
    torch.testing.assert_close(seen["acs"], m.acs_mask)

    no_acs = uniform_mask((96, 96), 3, 0, offset=1)
    src2 = write_fastmri(tmp_path / "noacs.h5", sim8.kspace * no_acs.mask, no_acs.mask)
    with pytest.raises(ReconError, match="ACS"):
        reconstruct_file(src2, tmp_path / "o2.h5", "acs_probe", progress=False)

    def nan_run(data: ReconInput, params: dict) -> ReconOutput:
        return ReconOutput(image=torch.full((data.kspace.shape[0], 96, 96), float("nan")))

    _probe(monkeypatch, "nan_probe", nan_run)
    with pytest.raises(ReconError, match="NaN"):
        reconstruct_file(src, tmp_path / "o3.h5", "nan_probe", progress=False)
    with pytest.raises(ReconError, match="unknown method"):
        reconstruct_file(src, tmp_path / "o4.h5", "no_such_method", progress=False)
    with pytest.raises(ParameterError):
        reconstruct_file(src, tmp_path / "o5.h5", "zero_filled", {"combine": "max"})


def test_evaluate_file_follows_fastmri_evaluate(tmp_path):
    rng = np.random.default_rng(3)
    target = rng.random((2, 40, 30)).astype(np.float32)
    recon = np.abs(target + 0.1 * rng.standard_normal(target.shape)).astype(np.float32)
    from recon_engine.io import write_reconstruction

    write_reconstruction(tmp_path / "t.h5", target)
    write_reconstruction(tmp_path / "r.h5", recon)
    scores = evaluate_file(tmp_path / "r.h5", tmp_path / "t.h5")
    # fastMRI: crop both to (target W, target W) = 30 x 30, maxval = target max
    t, r = target[:, 5:35].astype(np.float64), recon[:, 5:35].astype(np.float64)
    ref_ssim = np.mean([structural_similarity(a, b, data_range=t.max()) for a, b in zip(t, r)])
    assert scores["ssim"] == pytest.approx(ref_ssim, abs=1e-6)
    assert scores["nmse"] == pytest.approx(np.sum((t - r) ** 2) / np.sum(t**2), rel=1e-6)
    with h5py.File(tmp_path / "short.h5", "w") as hf:
        hf["reconstruction"] = target[:1]
    with pytest.raises(ReconError, match="slice count"):
        evaluate_file(tmp_path / "short.h5", tmp_path / "t.h5")


def test_sms_methods_get_the_whole_volume_whatever_the_batch_size():
    """SMS excites slices g, g + S/MB, ... together: a batch of 4 out of 6 slices with
    MB = 3 cannot be grouped, so the pipeline must not split SMS volumes."""
    import torch

    from recon_engine.pipeline import reconstruct_kspace
    from recon_engine.simulation import simulate_multicoil

    image = torch.zeros(6, 48, 48)
    image[:, 12:36, 12:36] = torch.linspace(0.5, 1.0, 6)[:, None, None]
    sim = simulate_multicoil(image, n_coils=8, snr=None, seed=0)
    mask = torch.ones(1, 1, 1, 48)
    result = reconstruct_kspace(
        sim.kspace,
        mask,
        "sms_sense",
        {"multiband": 3, "acs_lines": 16},
        progress=False,
        batch_size=4,
    )
    assert result.volume.shape == (6, 48, 48)
