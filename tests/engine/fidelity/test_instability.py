"""Instability tests (Antun et al., PNAS 2020): gradient attack, more data, tiny structures.

The attack is checked against linear algebra: for ``f(y) = W y`` the largest change over
``||e|| = r`` is ``sigma_max(W) r`` (the top singular value, numpy's SVD), and a random
direction gets ``sqrt(mean sigma_i^2) r`` on average.
"""

import numpy as np
import pytest
import torch

from recon_engine.fidelity.instability import (
    differentiable_forward,
    more_data_check,
    nested_column_masks,
    tiny_structure_check,
    worst_case_perturbation,
)
from recon_engine.fidelity.lesions import Lesion, lesion_twins
from recon_engine.registry import ParameterError
from recon_engine.sampling import make_mask


def test_gradient_ascent_finds_the_top_singular_direction_of_a_linear_map():
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    v, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    singular = np.array([5.0, 2.0] + [1.0] * 28)
    weights = torch.as_tensor(u @ np.diag(singular) @ v[:30], dtype=torch.float64)
    y = torch.as_tensor(rng.standard_normal(40))
    ones = torch.ones(40, dtype=torch.float64)
    result = worst_case_perturbation(lambda k, m: weights @ (k * m), y, ones, 0.1, steps=30)
    scale = float(torch.linalg.vector_norm(weights @ y))
    radius = 0.1 * float(torch.linalg.vector_norm(y))
    assert result["worst_change"] * scale == pytest.approx(5.0 * radius, rel=0.01)
    expected_random = np.sqrt((singular**2).sum() / 40) * radius  # E||W e||^2 = r^2 tr/n
    assert result["random_change"] * scale == pytest.approx(expected_random, rel=0.35)
    assert float(torch.linalg.vector_norm(result["perturbation"])) == pytest.approx(radius)


def test_a_dl_method_is_less_stable_to_its_worst_case_than_to_random_noise(sim8):
    kspace = sim8.kspace[:1].clone()
    mask = make_mask("random", (96, 96), 4, seed=0, center_fraction=0.08).mask
    forward = differentiable_forward("unet")
    result = worst_case_perturbation(forward, kspace, mask, 0.02, steps=10, n_random=4)
    assert result["worst_change"] > 2 * result["random_change_max"]


def test_methods_without_a_differentiable_forward_are_skipped_with_a_reason():
    with pytest.raises(ParameterError, match="gradient attack is skipped"):
        differentiable_forward("cg_sense")
    with pytest.raises(ParameterError, match="epsilon"):
        worst_case_perturbation(lambda k, m: k, torch.ones(4), torch.ones(4), 0.0)


def test_nested_masks_contain_each_other_and_have_the_stated_rate():
    masks = nested_column_masks(128, [8, 4, 2], center_fraction=0.08, seed=3)
    assert torch.all(masks[4.0] >= masks[8.0]) and torch.all(masks[2.0] >= masks[4.0])
    for r, mask in masks.items():
        assert int(mask.sum()) == round(128 / r)


def test_more_data_never_hurts_zero_filled(sim8):
    kspace = sim8.kspace[:1]
    reference = sim8.image[:1].abs()
    report = more_data_check("zero_filled", kspace, reference, accelerations=(8, 4, 2, 1))
    errors = [row["nrmse"] for row in report["rows"]]
    assert report["worse_with_more_data"] == []
    assert errors[-1] < 0.1 < errors[0]


def test_a_one_pixel_finding_keeps_the_sampled_share_of_its_contrast_when_zero_filled(
    brain_slices,
):
    """Zero-filled point-spread function: its peak is the sampled fraction of k-space."""
    image = brain_slices[1].numpy()
    lesion = Lesion("focus", 1.0, 0.8, (48.0, 48.0))
    full = tiny_structure_check("rss", image, 1.0, lesion, 1.0)
    assert full["recovery"] == pytest.approx(1.0, abs=0.03) and full["appears"]
    sparse = tiny_structure_check("zero_filled", image, 1.0, lesion, 8.0)
    assert sparse["recovery"] == pytest.approx(1 / 8, abs=0.06)
    assert not sparse["appears"]
    twins = lesion_twins(image, lesion, 1.0, n_realisations=1)
    assert bool(twins.truth[48, 48])
