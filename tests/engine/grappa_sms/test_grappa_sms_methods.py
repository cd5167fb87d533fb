"""The registered ``grappa`` and ``sms_slice_grappa`` methods, end to end."""

from __future__ import annotations

import pytest
import torch

from recon_engine.grappa import coil_combine
from recon_engine.methods.grappa import SPEC as GRAPPA
from recon_engine.methods.sms_sense import SPEC as SMS_SENSE
from recon_engine.methods.sms_slice_grappa import SPEC as SMS
from recon_engine.registry import ParameterError, ReconError, ReconInput

from .conftest import line_mask, make_data, nrmse, random_line_mask


@pytest.fixture(scope="module")
def four():
    return make_data(4, 64, 8, noise=0.01)


def test_specs_describe_real_products():
    assert GRAPPA.family == "parallel_imaging"
    assert GRAPPA.vendor_names == {"Siemens": "GRAPPA", "GE": "ARC"}
    assert SMS.family == "simultaneous_multislice"
    assert SMS.vendor_names == {
        "Siemens": "Simultaneous Multi-Slice",
        "GE": "HyperBand",
        "Philips": "MultiBand SENSE",
        "Canon": "MultiBand SPEEDER",
    }
    assert GRAPPA.needs_acs and SMS.needs_acs
    assert {"kernel_ry", "kernel_rx", "lambda"} <= {p.name for p in GRAPPA.params}


def test_grappa_method_reconstructs_and_reports_progress(four):
    k, gt = four["kspace"], four["rss"]
    mask = line_mask(64, 2, 16)
    calls = []
    out = GRAPPA.run(
        ReconInput(kspace=k * mask, mask=mask, progress=lambda d, t: calls.append((d, t))),
        GRAPPA.validate({"kernel_ry": 2}),
    )
    assert out.image.shape == (4, 64, 64)
    assert nrmse(out.image, gt) < 0.3 * nrmse(coil_combine(k * mask), gt)
    assert calls[-1] == (4, 4)
    assert out.info["n_kernels"] >= 1 and out.timings["grappa"] > 0


def test_grappa_method_with_sensitivities_and_per_slice_masks(four):
    k = four["kspace"]
    mask = torch.cat([line_mask(64, 2, 16, offset=i % 2) for i in range(4)])
    params = GRAPPA.validate({"combine": "sensitivities", "lambda": "0.01"})
    out = GRAPPA.run(ReconInput(kspace=k * mask, mask=mask, sensitivities=four["maps"]), params)
    assert out.image.is_complex()
    zero_filled = coil_combine(k * mask, four["maps"])
    assert nrmse(out.image, four["image"]) < 0.5 * nrmse(zero_filled, four["image"])
    assert out.info["mask_groups"] == 2
    auto = GRAPPA.run(
        ReconInput(kspace=k * mask, mask=mask, sensitivities=four["maps"]), GRAPPA.validate({})
    )
    assert auto.info["combine"] == "sensitivities" and torch.equal(auto.image, out.image)
    with pytest.raises(ReconError, match="sensitivities"):
        GRAPPA.run(ReconInput(kspace=k * mask, mask=mask), params)


def test_grappa_method_rejects_bad_parameters():
    with pytest.raises(ParameterError, match="kernel_ry"):
        GRAPPA.validate({"kernel_ry": 0})
    with pytest.raises(ParameterError, match="unknown"):
        GRAPPA.validate({"kernel": 3})
    with pytest.raises(ParameterError, match="lambda"):
        GRAPPA.validate({"lambda": -0.1})


@pytest.mark.parametrize("mb", [2, 4])
def test_sms_method_on_fully_sampled_slices(four, mb):
    k, gt = four["kspace"], four["rss"]
    calls = []
    out = SMS.run(
        ReconInput(kspace=k, mask=torch.ones(1, 1, 1, 64), progress=lambda d, t: calls.append(d)),
        SMS.validate({"multiband": mb, "report_leakage": True, "acs_lines": 24}),
    )
    assert out.image.shape == (4, 64, 64)
    assert nrmse(out.image, gt) < (0.03 if mb == 2 else 0.15)
    assert out.info["fov_shift"] == mb and out.info["inplane_R"] == 1
    assert out.info["leakage_mean"] < 0.01
    assert calls[-1] == 4


def test_sms_method_with_inplane_acceleration(four):
    k, gt = four["kspace"], four["rss"]
    mask = line_mask(64, 2, 24)
    out = SMS.run(ReconInput(kspace=k * mask, mask=mask), SMS.validate({"multiband": 2}))
    assert out.info["inplane_R"] == 2 and out.info["fov_shift"] == 4
    assert "inplane_grappa" in out.timings
    assert nrmse(out.image, gt) < 0.1


def test_sms_method_bad_input(four):
    k = four["kspace"]
    with pytest.raises(ReconError, match="divisible"):
        SMS.run(ReconInput(kspace=k[:3], mask=torch.ones(1, 1, 1, 64)), SMS.validate({}))
    mask = random_line_mask(64, 2, 16, seed=0)
    with pytest.raises(ReconError, match="uniform lattice"):
        SMS.run(ReconInput(kspace=k * mask, mask=mask), SMS.validate({}))
    with pytest.raises(ReconError, match="2D"):
        m2 = torch.ones(1, 1, 64, 64)
        m2[:, :, ::2, 1::2] = 0
        SMS.run(ReconInput(kspace=k * m2, mask=m2), SMS.validate({}))
    with pytest.raises(ParameterError, match="multiband"):
        SMS.validate({"multiband": 1})


@pytest.mark.parametrize("given_maps", [True, False])
def test_sms_sense_method(four, given_maps):
    k, gt = four["kspace"], four["rss"]
    mask = line_mask(64, 2, 24)
    out = SMS_SENSE.run(
        ReconInput(kspace=k * mask, mask=mask, sensitivities=four["maps"] if given_maps else None),
        SMS_SENSE.validate({"multiband": 2, "acs_lines": 24}),
    )
    assert out.info["inplane_R"] == 2 and out.info["fov_shift"] == 4
    assert out.info["sensitivities"] == (
        "input" if given_maps else "espirit(single-band reference)"
    )
    assert nrmse(out.image.abs(), gt) < 0.06
    assert SMS_SENSE.vendor_names == SMS.vendor_names
