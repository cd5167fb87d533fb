"""Lesion insertion: sizes and areas as stated, consistent k-space in every coil, bad input."""

import math

import numpy as np
import pytest
import torch

from recon_engine.fft import ifftc
from recon_engine.fidelity.lesions import Lesion, insert_lesion, lesion_profile, lesion_twins
from recon_engine.registry import ParameterError


def disc_phantom(n: int = 64) -> np.ndarray:
    rows, cols = np.mgrid[0:n, 0:n]
    return ((rows - n / 2) ** 2 + (cols - n / 2) ** 2 < (0.4 * n) ** 2).astype(float) * 100.0


def test_focus_area_and_tear_length_are_as_stated():
    pixel = 0.5
    focus = Lesion("focus", size_mm=4.0, contrast=-0.5, center=(32.0, 30.0))
    profile, truth = lesion_profile((64, 64), focus, pixel)
    radius_px = 4.0 / pixel / 2
    assert float(profile.sum()) == pytest.approx(math.pi * radius_px**2, rel=0.03)
    assert abs(int(truth.sum()) - math.pi * radius_px**2) < 2 * math.pi * radius_px  # edge

    tear = Lesion("tear", size_mm=5.0, contrast=1.0, center=(32.0, 32.0), angle_deg=30)
    profile, _ = lesion_profile((64, 64), tear, pixel)
    assert float(profile.sum()) == pytest.approx(5.0 / pixel * 1.0, rel=0.05)


def test_oedema_is_half_height_at_its_stated_diameter():
    lesion = Lesion("oedema", size_mm=6.0, contrast=0.6, center=(32.0, 32.0))
    profile, truth = lesion_profile((64, 64), lesion, pixel_mm=1.0)
    assert float(profile[32, 32]) == pytest.approx(1.0, abs=0.02)
    assert float(profile[32, 35]) == pytest.approx(0.5, abs=0.05)  # 3 px = half the FWHM
    assert bool(truth[32, 34]) and not bool(truth[32, 36])


def test_contrast_is_relative_to_the_local_signal():
    image = disc_phantom()
    lesion = Lesion("focus", size_mm=6.0, contrast=0.5, center=(32.0, 32.0))
    lesioned, truth = insert_lesion(image, lesion, pixel_mm=1.0)
    assert float(lesioned[32, 32]) == pytest.approx(150.0, rel=0.01)
    rows, cols = np.mgrid[0:64, 0:64]
    far = np.hypot(rows - 32, cols - 32) > 3.0 + 1.5  # beyond the partial-volume edge
    assert float((lesioned - torch.as_tensor(image)).abs()[torch.as_tensor(far)].max()) == 0.0
    assert bool(truth[32, 32]) and not bool(truth[32, 37])


def test_twins_are_consistent_in_every_coil_and_share_their_noise():
    image = disc_phantom()
    lesion = Lesion("oedema", size_mm=5.0, contrast=0.4, center=(30.0, 34.0))
    twins = lesion_twins(image, lesion, pixel_mm=1.0, n_realisations=3, n_coils=4, snr=20)
    inserted = twins.image_present - twins.image_absent
    coil_difference = ifftc(twins.kspace_present - twins.kspace_absent)  # (N, C, H, W)
    expected = twins.sensitivities * inserted[None, None]
    assert float((coil_difference - expected).abs().max()) < 1e-3 * float(inserted.abs().max())
    # fully sampled, coil-combined with the true maps: image + lesion, within the noise
    combined = (twins.sensitivities.conj() * ifftc(twins.kspace_present)).sum(dim=1)
    residual = combined - twins.image_present[None]
    assert float((residual.abs() ** 2).mean()) == pytest.approx(twins.noise_std**2, rel=0.1)

    independent = lesion_twins(
        image, lesion, pixel_mm=1.0, n_realisations=3, n_coils=4, snr=20, same_noise=False
    )
    noise_a = independent.kspace_absent - independent.kspace_absent.mean(0)
    noise_p = independent.kspace_present - independent.kspace_present.mean(0)
    assert not torch.allclose(noise_a, noise_p)


@pytest.mark.parametrize(
    ("lesion", "message"),
    [
        (Lesion("focus", 0.3, -0.5, (32.0, 32.0)), "below one pixel"),
        (Lesion("focus", 3.0, -0.5, (2.0, 2.0)), "outside the object"),
        (Lesion("focus", 3.0, -0.5, (90.0, 2.0)), "outside the 64x64 image"),
        (Lesion("cyst", 3.0, 0.5, (32.0, 32.0)), "unknown lesion kind"),
        (Lesion("focus", 3.0, 0.0, (32.0, 32.0)), "contrast"),
    ],
)
def test_impossible_findings_get_a_clear_message(lesion, message):
    with pytest.raises(ParameterError, match=message):
        insert_lesion(disc_phantom(), lesion, pixel_mm=0.5)
