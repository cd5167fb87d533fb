"""Simulation: coil maps vs SigPy and Biot-Savart, exact inverse, stated SNR, motion."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sigpy.mri import birdcage_maps

from recon_engine.fft import fftc, ifftc
from recon_engine.registry import ParameterError, ReconError
from recon_engine.simulation import (
    coil_sensitivities,
    load_slices,
    noise_std_for_snr,
    object_mask,
    simulate_motion,
    simulate_multicoil,
    smooth_phase,
)

BRAIN = Path(__file__).resolve().parents[3] / "data" / "mri" / "colin27_t1_1mm.nii.gz"


def _low_frequency_energy(maps: torch.Tensor, half: int = 8) -> float:
    """Fraction of the maps' k-space energy within the central (2 half)^2 block."""
    k = fftc(maps).abs() ** 2
    h, w = maps.shape[-2:]
    return float(
        k[..., h // 2 - half : h // 2 + half, w // 2 - half : w // 2 + half].sum() / k.sum()
    )


def test_birdcage_matches_sigpy():
    ours = coil_sensitivities((64, 48), 8, "birdcage")
    ref = birdcage_maps((8, 64, 48))
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-6)


@pytest.mark.parametrize("kind", ["birdcage", "loop"])
@pytest.mark.parametrize("n_coils", [4, 12])
def test_maps_sos_normalised_and_smooth(kind, n_coils):
    maps = coil_sensitivities((80, 64), n_coils, kind)
    assert maps.shape == (n_coils, 80, 64) and maps.dtype == torch.complex64
    sos = torch.sqrt((maps.abs() ** 2).sum(0))
    torch.testing.assert_close(sos, torch.ones_like(sos), atol=1e-5, rtol=0)
    # smooth: >97 % of the energy in the central 16x16 of an 80x64 k-space (5 % of it);
    # white noise would put ~5 % there
    assert _low_frequency_energy(maps) > 0.97
    # each coil is most sensitive on its own side: distinct maps, not copies
    peaks = {int(torch.argmax(m.abs())) for m in maps}
    assert len(peaks) == n_coils


def test_loop_field_matches_on_axis_biot_savart_and_far_field_dipole():
    """Exact loop field: on the axis ``B = a^2 / (a^2 + z^2)^(3/2)`` (units mu0 I / 2),
    in the equatorial plane far away ``B -> -a^2 / (2 rho^3)`` (magnetic dipole)."""
    from recon_engine.simulation import _loop_field

    a = 0.4
    z = np.linspace(0.1, 2.0, 7)
    b_ax, b_rad = _loop_field(np.zeros_like(z), z, a)
    # module units are mu0 I / (2 pi): multiply the textbook mu0 I / 2 form by pi
    np.testing.assert_allclose(b_ax, math.pi * a**2 / (a**2 + z**2) ** 1.5, rtol=1e-10)
    np.testing.assert_allclose(b_rad, 0, atol=1e-12)
    rho = np.array([20.0, 40.0])
    b_ax, _ = _loop_field(rho, np.zeros_like(rho), a)
    np.testing.assert_allclose(b_ax, -math.pi * a**2 / (2 * rho**3), rtol=2e-3)


def test_loop_maps_vary_with_slice_position():
    a = coil_sensitivities((32, 32), 8, "loop", z=0.0)
    b = coil_sensitivities((32, 32), 8, "loop", z=0.6)
    assert float((a - b).abs().max()) > 0.05


def test_noiseless_fully_sampled_inverse_is_exact(sim8_noiseless):
    data = sim8_noiseless
    coil_images = ifftc(data.kspace)
    combined = (data.sensitivities.conj() * coil_images).sum(dim=1)
    assert float((combined - data.image).abs().max()) < 1e-5
    assert data.noise_std == 0.0


def test_noise_sd_matches_stated_snr(sim8_noiseless, brain_slices):
    snr = 20.0
    noisy = simulate_multicoil(brain_slices, n_coils=8, snr=snr, seed=0)
    noise = noisy.kspace - sim8_noiseless.kspace  # same seed -> same phase and maps
    measured_sd = float(torch.sqrt((noise.abs() ** 2).mean()))
    assert measured_sd == pytest.approx(noisy.noise_std, rel=0.01)
    # real and imaginary parts independent, each with SD noise_std / sqrt(2)
    assert float(noise.real.std()) == pytest.approx(noisy.noise_std / math.sqrt(2), rel=0.01)
    assert (
        abs(float(torch.corrcoef(torch.stack([noise.real.ravel(), noise.imag.ravel()]))[0, 1]))
        < 0.01
    )
    mag = noisy.image.abs()
    mean_signal = float(mag[mag > 0.1 * mag.max()].mean())
    assert mean_signal / measured_sd == pytest.approx(snr, rel=0.01)
    # the SNR holds in the combined image too (orthonormal FFT, SoS-normalised maps)
    combined_noise = (noisy.sensitivities.conj() * ifftc(noise)).sum(dim=1)
    combined_sd = float(torch.sqrt((combined_noise.abs() ** 2).mean()))
    assert mean_signal / combined_sd == pytest.approx(snr, rel=0.02)


def test_seeded_and_phase_smooth(brain_slices):
    a = simulate_multicoil(brain_slices[:1], n_coils=4, snr=10, seed=3)
    b = simulate_multicoil(brain_slices[:1], n_coils=4, snr=10, seed=3)
    c = simulate_multicoil(brain_slices[:1], n_coils=4, snr=10, seed=4)
    assert torch.equal(a.kspace, b.kspace)
    assert not torch.equal(a.kspace, c.kspace)
    torch.testing.assert_close(a.image.abs(), brain_slices[:1], atol=1e-6, rtol=0)
    phi = smooth_phase((2, 64, 64), seed=1)
    assert float(phi.abs().max()) == pytest.approx(math.pi, rel=1e-6)
    assert float((phi[..., 1:] - phi[..., :-1]).abs().max()) < 0.3
    assert not torch.allclose(phi[0], phi[1])
    nophase = simulate_multicoil(brain_slices[:1], n_coils=4, snr=None, phase=False)
    assert float(nophase.image.imag.abs().max()) == 0


def test_simulated_kspace_is_fft_of_coil_images(brain_slices):
    data = simulate_multicoil(brain_slices[:2], n_coils=6, coil_kind="loop", snr=None, seed=2)
    expected = fftc(data.sensitivities * data.image[:, None])
    torch.testing.assert_close(data.kspace, expected)
    assert data.kspace.shape == (2, 6, 96, 96) and data.kspace.dtype == torch.complex64


def test_object_mask_and_snr_definition():
    img = torch.zeros(1, 10, 10)
    img[0, 2:8, 2:8] = 2.0
    img[0, 0, 0] = 0.1  # below 10 % of the max: background
    assert int(object_mask(img).sum()) == 36
    assert noise_std_for_snr(img, 4.0) == pytest.approx(0.5)


def test_load_slices_shape_range_and_contiguity():
    x = load_slices(BRAIN, 3, size=(64, 48))
    assert x.shape == (3, 64, 48) and x.dtype == torch.float32
    assert float(x.min()) >= 0 and float(x.max()) == pytest.approx(1.0)
    # neighbouring 1 mm slices are nearly identical; spread-out slices are not
    near = float((x[0] - x[1]).abs().mean())
    far = load_slices(BRAIN, 3, size=(64, 48), spread=0.5)
    assert near < float((far[0] - far[2]).abs().mean())
    # anatomy is padded, not stretched: a 64x48 matrix keeps the brain's aspect ratio,
    # so the brain fills a smaller fraction of the (taller) rows than of the columns
    occupied_rows = (x[1].amax(dim=1) > 0.05).float().mean()
    occupied_cols = (x[1].amax(dim=0) > 0.05).float().mean()
    assert occupied_rows < occupied_cols


def test_motion_shot0_is_reference_and_other_shots_move(brain_slices):
    img = brain_slices[:1].to(torch.complex64)
    still = simulate_motion(img, 4, 0.0, 0.0, seed=0)
    torch.testing.assert_close(still.kspace[:, 0], fftc(img), atol=1e-5, rtol=0)
    moving = simulate_motion(img, 4, 3.0, 4.0, seed=1)
    idx = moving.shot_index
    assert idx.shape == (96,) and set(idx.tolist()) == {0, 1, 2, 3}
    assert torch.all(idx[1:] >= idx[:-1])  # sequential ordering: contiguous blocks
    ref_cols = idx == 0
    torch.testing.assert_close(
        moving.kspace[..., ref_cols], fftc(img)[:, None][..., ref_cols], atol=1e-5, rtol=0
    )
    assert torch.all(moving.transforms[0] == 0)
    assert float(moving.transforms[1:, :2].abs().max()) <= 3.0
    assert float(moving.transforms[1:, 2].abs().max()) <= 4.0
    assert float(moving.transforms[1:].abs().min()) > 0


def test_motion_translation_is_exact_fourier_shift():
    img = torch.zeros(1, 32, 32, dtype=torch.complex64)
    img[0, 10:20, 12:18] = 1
    res = simulate_motion(img, 2, 5.0, 0.0, seed=0, ordering="interleaved")
    dy, dx, _ = res.transforms[1].tolist()
    ky = torch.fft.fftfreq(32, dtype=torch.float64)
    phase = torch.exp(-2j * math.pi * (ky[:, None] * dy + ky[None, :] * dx))
    shifted = torch.fft.ifft2(torch.fft.fft2(img.to(torch.complex128)) * phase)
    cols = res.shot_index == 1
    assert torch.equal(cols, torch.arange(32) % 2 == 1)
    expected = fftc(shifted.to(torch.complex64))[..., cols]
    torch.testing.assert_close(res.kspace[:, 0][..., cols], expected, atol=1e-4, rtol=0)


def test_motion_rotation_rotates_the_object():
    """A 90 degree rotation is an exact index permutation: ``torch.rot90(k=1)`` for a
    square FOV; for a non-square FOV a point at ``(dr, dc)`` from the centre moves to
    ``(-dc, dr)`` in pixels (square pixels, no stretching)."""
    from recon_engine.simulation import _rigid

    img = torch.zeros(1, 32, 32, dtype=torch.complex64)
    img[0, 4:10, 14:22] = 1 + 0.5j
    out = _rigid(img, 0.0, 0.0, 90.0)
    torch.testing.assert_close(out, torch.rot90(img, k=1, dims=(-2, -1)), atol=1e-5, rtol=0)
    tall = torch.zeros(1, 32, 20, dtype=torch.complex64)
    tall[0, 8:11, 9:11] = 1  # centroid (9, 9.5): offset (-6.5, 0) from the centre (15.5, 9.5)
    out = _rigid(tall, 0.0, 0.0, 90.0).abs()[0]
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(20.0), indexing="ij")
    centroid = ((out * rows).sum() / out.sum(), (out * cols).sum() / out.sum())
    assert float(centroid[0]) == pytest.approx(15.5, abs=0.05)
    assert float(centroid[1]) == pytest.approx(3.0, abs=0.05)
    assert float(out.sum()) == pytest.approx(6.0, abs=1e-4)


def test_motion_with_coils_keeps_coils_still(brain_slices):
    maps = coil_sensitivities((96, 96), 4)
    res = simulate_motion(brain_slices[:1], 3, 2.0, 2.0, seed=0, sensitivities=maps)
    assert res.kspace.shape == (1, 4, 96, 96)
    ref = fftc(maps[None] * brain_slices[:1, None].to(torch.complex64))
    cols = res.shot_index == 0
    torch.testing.assert_close(res.kspace[..., cols], ref[..., cols], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "call,error",
    [
        (lambda: coil_sensitivities((32, 32), 0), ParameterError),
        (lambda: coil_sensitivities((32, 32), 8, "helmet"), ParameterError),
        (lambda: coil_sensitivities((32, 32), 8, radius=1.0), ParameterError),
        (lambda: simulate_multicoil(torch.zeros(2, 2, 8, 8)), ReconError),
        (lambda: simulate_multicoil(torch.full((8, 8), float("nan"))), ReconError),
        (lambda: simulate_multicoil(torch.ones(8, 8), snr=-1), ParameterError),
        (lambda: simulate_motion(torch.ones(8, 8), 0, 1, 1), ParameterError),
        (lambda: simulate_motion(torch.ones(8, 8), 2, 1, 1, ordering="random"), ParameterError),
        (
            lambda: simulate_motion(torch.ones(8, 8), 2, 1, 1, sensitivities=torch.ones(2, 4, 4)),
            ReconError,
        ),
        (lambda: load_slices(BRAIN, 10_000), ParameterError),
        (lambda: load_slices(BRAIN.with_name("missing.nii.gz"), 2), ReconError),
    ],
)
def test_bad_input_raises(call, error):
    with pytest.raises(error):
        call()


def test_load_slices_from_dicom_series(tmp_path, brain_slices):
    from recon_engine.io import write_dicom_series

    vol = brain_slices.numpy() * 1000.0
    write_dicom_series(tmp_path, vol, "T1", pixel_spacing=(1.0, 1.0), slice_thickness=1.0)
    x = load_slices(tmp_path, 2, size=(48, 48))
    assert x.shape == (2, 48, 48) and float(x.max()) == pytest.approx(1.0)
    # the two central slices of the 4-slice series are slices 1 and 2 (DICOM axis 0)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(vol[1:3])[:, None], size=(48, 48), mode="bilinear", antialias=True
    )[:, 0]
    expected = expected / expected.max()
    torch.testing.assert_close(x, expected, atol=2e-3, rtol=0)
