"""Registered SENSE / CS methods: specs, end-to-end runs on simulated brains, bad input."""

from __future__ import annotations

import pytest
import torch

from recon_engine.registry import ParameterError, ReconError, ReconInput, get_method
from recon_engine.sampling import poisson_disc_mask, random_mask, uniform_mask

NAMES = ("sense", "cg_sense", "cs_wavelet", "cs_tv")


def _nrmse(img, gt):
    return float((img.abs() - gt.abs()).norm() / gt.abs().norm())


def test_specs_are_registered_with_vendor_names():
    families = {"sense": "parallel_imaging", "cg_sense": "parallel_imaging"}
    for name in NAMES:
        spec = get_method(name)
        assert spec.family == families.get(name, "compressed_sensing")
        assert spec.needs_acs
        assert set(spec.vendor_names) == {"Siemens", "GE", "Philips", "Canon"}
        assert spec.validate({})["sensitivities"] == "espirit"
        assert spec.to_dict()["params"]
    assert get_method("sense").vendor_names["GE"] == "ASSET"
    assert get_method("cs_wavelet").vendor_names["Philips"] == "Compressed SENSE"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sens_kind", ["espirit", "acs"])
def test_methods_reconstruct_uniform_r2(sim8, name, sens_kind):
    m = uniform_mask((96, 96), 2, acs_lines=24)
    spec = get_method(name)
    calls = []
    data = ReconInput(
        sim8.kspace[:2] * m.mask, m.mask, m.acs_mask, progress=lambda d, t: calls.append((d, t))
    )
    out = spec.run(data, spec.validate({"sensitivities": sens_kind}))
    assert out.image.shape == (2, 96, 96)
    assert calls[-1] == (2, 2)
    assert out.maps["sensitivities"].shape == (2, 8, 96, 96)
    assert set(out.timings) >= {"sensitivities"}
    obj = sim8.image[:2].abs() > 0.1
    # zero-filled RSS at R=2 has NRMSE ~0.5 here; the reconstructions must do far better
    assert _nrmse(out.image * obj, sim8.image[:2] * obj) < 0.15
    if name == "sense":
        g = out.maps["g_factor"]
        support = out.maps["sensitivities"].abs().sum(1) > 0
        assert bool((g[support] >= 1 - 1e-3).all())


@pytest.mark.parametrize("name", ["cg_sense", "cs_wavelet", "cs_tv"])
def test_methods_with_random_and_poisson_masks(sim8, name):
    spec = get_method(name)
    for m in (
        random_mask((96, 96), 3, center_fraction=0.25, seed=0),
        poisson_disc_mask((96, 96), 3, calib=(24, 24), seed=1),
    ):
        out = spec.run(ReconInput(sim8.kspace[:1] * m.mask, m.mask, m.acs_mask), spec.validate({}))
        obj = sim8.image[:1].abs() > 0.1
        assert _nrmse(out.image * obj, sim8.image[:1] * obj) < 0.2


def test_provided_sensitivities_are_used(sim8_noiseless):
    sim = sim8_noiseless
    m = uniform_mask((96, 96), 3, acs_lines=0)
    spec = get_method("sense")
    out = spec.run(
        ReconInput(sim.kspace * m.mask, m.mask, sensitivities=sim.sensitivities), spec.validate({})
    )
    assert out.info["sensitivities"] == "provided"
    assert float((out.image - sim.image).norm() / sim.image.norm()) < 1e-3


def test_bad_inputs(sim8):
    m = uniform_mask((96, 96), 4, acs_lines=24)
    ksp = sim8.kspace * m.mask
    sense = get_method("sense")
    params = sense.validate({})
    nan = ksp.clone()
    nan[0, 0, 0, 0] = float("nan")
    for name in NAMES:
        spec = get_method(name)
        with pytest.raises(ReconError, match="NaN"):
            spec.run(ReconInput(nan, m.mask, m.acs_mask), spec.validate({}))
        with pytest.raises(ReconError, match="does not match"):
            spec.run(ReconInput(ksp, m.mask[..., :64], m.acs_mask), spec.validate({}))
        with pytest.raises(ReconError, match="samples nothing"):
            spec.run(ReconInput(ksp, m.mask, torch.zeros_like(m.acs_mask)), spec.validate({}))
    with pytest.raises(ReconError, match="exceeds the number of coils"):
        sense.run(ReconInput(ksp[:1, :2], m.mask, m.acs_mask), params)
    rm = random_mask((96, 96), 4, seed=0)
    with pytest.raises(ReconError, match="not uniform"):
        sense.run(ReconInput(sim8.kspace[:1] * rm.mask, rm.mask, rm.acs_mask), params)
    with pytest.raises(ParameterError):
        get_method("cs_wavelet").validate({"lambda": -1})
    with pytest.raises(ParameterError):
        get_method("cg_sense").validate({"sensitivities": "magic"})
