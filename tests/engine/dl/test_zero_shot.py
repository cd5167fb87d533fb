"""Zero-shot self-supervised fine-tuning (ZS-SSL): the splits of the acquired samples, the
held-out set never reaching training, and the registry methods built on it."""

from __future__ import annotations

import copy

import pytest
import torch

from recon_engine.dl.varnet import VarNet
from recon_engine.dl.zero_shot import (
    FineTuneSettings,
    fine_tune,
    kspace_loss,
    split_acquired,
    train_epoch,
    validation_loss,
)
from recon_engine.methods.dl_varnet_zs import centre_band, predictor
from recon_engine.pipeline import reconstruct_kspace
from recon_engine.sampling import make_mask


def _scan(slices: int = 3, h: int = 16, w: int = 32, seed: int = 0):
    """Random 4-coil k-space, a random 1D mask at R = 3 with a 6-column centre, the centre."""
    g = torch.Generator().manual_seed(seed)
    kspace = torch.randn(slices, 4, h, w, dtype=torch.complex64, generator=g)
    line = torch.rand(w, generator=g) < 1 / 3
    line[w // 2 - 3 : w // 2 + 3] = True
    keep = torch.zeros(1, 1, 1, w, dtype=torch.bool)
    keep[..., w // 2 - 3 : w // 2 + 3] = True
    mask = line.view(1, 1, 1, w)
    return kspace * mask, mask, keep


def test_splits_are_disjoint_and_cover_the_acquired_samples() -> None:
    _, mask, keep = _scan()
    acquired = mask.expand(3, 1, 16, 32)
    split = split_acquired(acquired, keep, 0.2, 0.4, n_splits=5, seed=7)
    assert split.validation.shape == (3, 1, 16, 32)
    assert split.dc.shape == split.loss.shape == (5, 3, 1, 16, 32)
    for k in range(5):
        theta, lam, gamma = split.dc[k], split.loss[k], split.validation
        assert not (theta & lam).any() and not (theta & gamma).any() and not (lam & gamma).any()
        assert torch.equal(theta | lam | gamma, acquired)
        assert (theta | ~keep.expand_as(theta)).all(), "the ACS stays in every Theta_k"
    # shares of the splittable samples (acquired, outside the ACS), per slice
    splittable = (acquired & ~keep).sum(dim=(1, 2, 3)).float()
    gamma_share = split.validation.sum(dim=(1, 2, 3)) / splittable
    assert torch.allclose(gamma_share, torch.full((3,), 0.2), atol=1 / splittable.min())
    lam_share = split.loss[0].sum(dim=(1, 2, 3)) / (splittable * 0.8)
    assert torch.allclose(lam_share, torch.full((3,), 0.4), atol=2 / splittable.min())
    # the K loss sets differ (resampled), the held-out set differs between slices
    assert not torch.equal(split.loss[0], split.loss[1])
    assert not torch.equal(split.validation[0], split.validation[1])


def test_splits_are_deterministic_for_a_seed() -> None:
    _, mask, keep = _scan()
    acquired = mask.expand(3, 1, 16, 32)
    a = split_acquired(acquired, keep, 0.2, 0.4, 3, seed=11)
    b = split_acquired(acquired, keep, 0.2, 0.4, 3, seed=11)
    c = split_acquired(acquired, keep, 0.2, 0.4, 3, seed=12)
    assert torch.equal(a.validation, b.validation) and torch.equal(a.loss, b.loss)
    assert not torch.equal(a.validation, c.validation)


def _tiny_varnet() -> VarNet:
    torch.manual_seed(0)
    return VarNet(num_cascades=2, sens_chans=2, sens_pools=1, chans=4, pools=1)


@pytest.mark.parametrize("per_case", [False, True])
def test_training_never_sees_the_held_out_samples(per_case: bool) -> None:
    """Training with the held-out samples replaced by other values gives bit-identical
    weights, while the validation loss (which must see them) changes."""
    kspace, mask, keep = _scan()
    acquired = mask.expand(3, 1, 16, 32)
    split = split_acquired(acquired, keep, 0.25, 0.4, n_splits=2, seed=3)
    g = torch.Generator().manual_seed(99)
    noise = torch.randn(kspace.shape, dtype=torch.complex64, generator=g)
    tampered = torch.where(split.validation, noise, kspace)
    assert not torch.equal(tampered, kspace)
    _, num_low = centre_band(mask)
    predict = predictor(num_low)
    slices = torch.arange(3) if per_case else torch.tensor([1])
    weights, val = [], []
    for data in (kspace, tampered):
        model = _tiny_varnet()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for epoch in range(3):
            train_epoch(model, predict, opt, data, split, slices, 2, epoch)
        weights.append(model.state_dict())
        val.append(validation_loss(model, predict, data, split, slices, 2))
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name
    assert val[0] != pytest.approx(val[1], rel=1e-3)


def test_loss_gradient_is_zero_outside_the_loss_set() -> None:
    measured = torch.randn(2, 3, 8, 8, dtype=torch.complex64)
    predicted = torch.randn(2, 3, 8, 8, dtype=torch.complex64, requires_grad=True)
    where = torch.rand(2, 1, 8, 8) < 0.3
    kspace_loss(predicted, measured, where).backward()
    grad = predicted.grad.abs()
    assert (grad * ~where).max() == 0
    assert (grad * where).max() > 0


def test_fine_tune_keeps_the_best_epoch_and_leaves_the_base_untouched() -> None:
    kspace, mask, keep = _scan(slices=2)
    base = _tiny_varnet()
    before = copy.deepcopy(base.state_dict())
    _, num_low = centre_band(mask)
    predict = predictor(num_low)
    settings = FineTuneSettings(max_epochs=6, patience=2, learning_rate=1e-2, n_splits=2)
    result = fine_tune(base, predict, kspace, mask, keep, settings)
    for name, value in base.state_dict().items():
        assert torch.equal(value, before[name])
    assert len(result.models) == 2 and [g.tolist() for g in result.groups] == [[0], [1]]
    split = split_acquired(
        mask.expand(2, 1, 16, 32), keep, 0.2, 0.4, settings.n_splits, settings.seed
    )
    for i, model in enumerate(result.models):
        slices = torch.tensor([i])
        again = validation_loss(model, predict, kspace, split, slices, 4)
        assert again == pytest.approx(result.best_validation[i], rel=1e-5)
        start = validation_loss(base, predict, kspace, split, slices, 4)
        assert result.best_validation[i] <= start
        assert result.epochs[i] <= settings.max_epochs
        assert result.epochs[i] - result.best_epochs[i] <= settings.patience
    per_case = fine_tune(
        base, predict, kspace, mask, keep, FineTuneSettings(max_epochs=2, per_case=True, n_splits=2)
    )
    assert len(per_case.models) == 1 and per_case.groups[0].tolist() == [0, 1]


def _brain_scan():
    from recon_engine.simulation import load_slices, simulate_multicoil

    image = load_slices("data/mri/mni152_2009a_t1_1mm.nii.gz", 1, size=(128, 128), spread=0.0)
    sim = simulate_multicoil(image, n_coils=8, snr=40.0, seed=1)
    mask = make_mask("random", (128, 128), 4, seed=3, center_fraction=0.08).mask
    return sim.kspace * mask, mask


def test_varnet_zs_without_epochs_is_the_shipped_varnet() -> None:
    kspace, mask = _brain_scan()
    shipped = reconstruct_kspace(kspace, mask, "varnet", {}, "cpu", progress=False)
    zs = reconstruct_kspace(kspace, mask, "varnet_zs", {"max_epochs": 0}, "cpu", progress=False)
    torch.testing.assert_close(
        torch.as_tensor(zs.volume), torch.as_tensor(shipped.volume), rtol=1e-4, atol=1e-5
    )
    assert zs.info["zero_shot"]["epochs"] == [0]
