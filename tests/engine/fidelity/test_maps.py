"""Error, hallucination, data-consistency and Fourier-ring-correlation maps.

FRC reference: for ``a = s + n1`` and ``b = s + n2`` with white signal power ``P_s`` and
independent white noise power ``P_n``, the expected FRC in every ring is
``P_s / (P_s + P_n)`` (Saxton & Baumeister, J Microsc 127:127, 1982; van Heel & Schatz,
J Struct Biol 151:250, 2005, eq. 4 with equal SNR in both halves).
"""

import numpy as np
import pytest
import torch

from recon_engine.fft import fftc
from recon_engine.fidelity.maps import (
    data_consistency_residual,
    error_map,
    frc_curve,
    hallucination_map,
    local_frc_map,
    map_summary,
)
from recon_engine.registry import ParameterError
from recon_engine.simulation import coil_sensitivities, smooth_phase


def test_frc_of_signal_plus_independent_noise_matches_the_snr_formula():
    rng = np.random.default_rng(0)
    signal = 2.0 * rng.standard_normal((128, 128))
    a = signal + rng.standard_normal((128, 128))
    b = signal + rng.standard_normal((128, 128))
    freqs, frc = frc_curve(a, b)
    expected = 4.0 / (4.0 + 1.0)
    outer = freqs > 0.1  # rings with enough pixels for a stable mean
    assert frc[outer].mean() == pytest.approx(expected, abs=0.02)
    assert np.abs(frc[outer] - expected).max() < 0.12  # ~4/sqrt(pixels per ring)
    _, same = frc_curve(a, a)
    np.testing.assert_allclose(same, 1.0, atol=1e-12)


def test_local_frc_drops_where_a_structure_was_made_up():
    rng = np.random.default_rng(1)
    reference = 10 + rng.standard_normal((96, 96))
    recon = reference.copy()
    recon[8:40, 8:40] = 10 + rng.standard_normal((32, 32))  # invented texture, same power
    frc = local_frc_map(recon, reference, window=32, step=16)
    assert frc[24, 24] < 0.3
    assert frc[72, 72] == pytest.approx(1.0, abs=1e-9)


def test_hallucination_map_is_the_error_outside_findings_and_inside_the_object():
    reference = np.zeros((32, 32))
    reference[4:28, 4:28] = 1.0
    recon = reference + 0.1
    truth = np.zeros((32, 32), dtype=bool)
    truth[15:17, 15:17] = True
    hall = hallucination_map(recon, reference, truth, margin_px=1)
    assert hall[15, 15] == 0 and hall[14, 15] == 0  # in the finding and its margin
    assert hall[0, 0] == 0  # outside the object
    assert hall[6, 6] == pytest.approx(0.1)
    np.testing.assert_allclose(error_map(recon, reference), 0.1)
    with pytest.raises(ParameterError, match="truth mask"):
        hallucination_map(recon, reference, np.zeros((8, 8), bool))
    summary = map_summary(recon, reference, truth)
    assert summary["hallucination_max"] == pytest.approx(0.1)


def test_data_consistency_residual_is_zero_for_the_truth_and_not_for_a_wrong_image():
    h = w = 48
    rows, cols = np.mgrid[0:h, 0:w]
    magnitude = torch.as_tensor(((rows - 24) ** 2 + (cols - 24) ** 2 < 300).astype(np.float32))
    phase = smooth_phase((1, h, w), seed=0)[0].float()
    maps = coil_sensitivities((h, w), 4, "birdcage").to(torch.complex64)
    kspace = fftc(maps * torch.polar(magnitude, phase)[None])[None]
    mask = torch.zeros(1, 1, 1, w)
    mask[..., ::2] = 1
    measured = kspace * mask
    exact = data_consistency_residual(magnitude[None], phase, maps, measured, mask)
    assert float(exact.abs().max()) < 1e-4 * float(magnitude.max())
    wrong = magnitude.clone()
    wrong[20:24, 20:24] += 0.5
    residual = data_consistency_residual(wrong[None], phase, maps, measured, mask)
    assert float(residual.max()) > 0.05
