"""Model observers against the analytic result: a known signal s in white Gaussian noise
of SD sigma gives the ideal (and the matched-filter) observer d' = ||s|| / sigma
(Barrett & Myers, Foundations of Image Science, 2004, eq. 13.199)."""

import math

import numpy as np
import pytest

from recon_engine.fidelity.observers import (
    auc_from_d_prime,
    cho_observer,
    laguerre_gauss_channels,
    npw_observer,
)
from recon_engine.registry import ParameterError


def gaussian_signal(n=32, amplitude=0.6, sigma_px=2.0):
    rows, cols = np.mgrid[0:n, 0:n]
    return amplitude * np.exp(-((rows - 16) ** 2 + (cols - 16) ** 2) / (2 * sigma_px**2))


def realisations(signal, sigma, n, seed):
    rng = np.random.default_rng(seed)
    background = 50.0  # far above the noise: the observers' abs() changes nothing
    g0 = background + sigma * rng.standard_normal((n, *signal.shape))
    g1 = background + signal + sigma * rng.standard_normal((n, *signal.shape))
    return g0, g1


def test_npw_reaches_the_analytic_d_prime_in_white_noise():
    signal, sigma = gaussian_signal(), 1.0
    expected = np.linalg.norm(signal) / sigma
    g0, g1 = realisations(signal, sigma, 4000, seed=1)
    rows, cols = np.mgrid[0:32, 0:32]
    roi = np.hypot(rows - 16, cols - 16) <= 6  # 3 SD of the signal: the template stays clean
    result = npw_observer(g0, g1, roi=roi)
    assert result.d_prime == pytest.approx(expected, rel=0.06)
    assert result.auc == pytest.approx(auc_from_d_prime(expected), abs=0.02)
    assert result.auc_empirical == pytest.approx(result.auc, abs=0.03)
    assert result.n_train == result.n_test == 2000


def test_cho_with_laguerre_gauss_channels_is_close_to_the_ideal_observer():
    signal, sigma = gaussian_signal(), 1.0
    expected = np.linalg.norm(signal) / sigma
    g0, g1 = realisations(signal, sigma, 2000, seed=2)
    channels = laguerre_gauss_channels((32, 32), (16.0, 16.0), width_px=6.0, n_channels=6)
    result = cho_observer(g0, g1, channels)
    assert 0.85 * expected <= result.d_prime <= 1.07 * expected


def test_auc_of_d_prime():
    assert auc_from_d_prime(0.0) == 0.5
    assert auc_from_d_prime(math.sqrt(2) * 1.2815515655446004) == pytest.approx(0.9)


def test_a_template_learnt_over_the_whole_image_loses_detectability():
    """The reason for a tight ROI: template noise from every pixel lowers d' (measured)."""
    signal = gaussian_signal()
    g0, g1 = realisations(signal, 1.0, 4000, seed=1)
    assert npw_observer(g0, g1).d_prime < 0.95 * np.linalg.norm(signal)


def test_no_signal_gives_chance_detectability():
    g0, g1 = realisations(np.zeros((32, 32)), 1.0, 400, seed=3)
    assert abs(npw_observer(g0, g1).auc - 0.5) < 0.1


def test_bad_stacks_are_refused():
    g = np.ones((3, 8, 8))
    with pytest.raises(ParameterError, match="at least 4"):
        npw_observer(g, g)
    with pytest.raises(ParameterError, match="must both be"):
        npw_observer(np.ones((8, 8, 8)), np.ones((8, 8, 7)))


def test_leave_one_out_cho_is_less_variable_than_a_half_split_and_as_unbiased():
    """Over 60 independent experiments of 40 realisations each (d' = 1.77 analytic)."""
    signal = gaussian_signal(n=32, amplitude=0.5)
    channels = laguerre_gauss_channels((32, 32), (16.0, 16.0), width_px=6.0, n_channels=6)
    split, loo = [], []
    for trial in range(60):
        g0, g1 = realisations(signal, 1.0, 40, seed=100 + trial)
        split.append(cho_observer(g0, g1, channels).d_prime)
        loo.append(cho_observer(g0, g1, channels, estimator="loo").d_prime)
    assert np.std(loo) < 0.85 * np.std(split)
    assert np.mean(loo) == pytest.approx(np.mean(split), rel=0.1)
    assert np.mean(loo) == pytest.approx(np.linalg.norm(signal), rel=0.2)


def test_leave_one_out_npw_is_not_inflated_by_shared_noise_twins():
    """Twins with the same noise and no signal: chance, not a fitted-to-noise d'."""
    rng = np.random.default_rng(7)
    noise = rng.standard_normal((60, 32, 32))
    result = npw_observer(50 + noise, 50 + noise + 1e-9, estimator="loo")
    assert result.n_train == 59 and result.n_test == 60
    assert abs(result.d_prime) < 0.05
    with pytest.raises(ParameterError, match="estimator"):
        npw_observer(noise, noise, estimator="jackknife")
