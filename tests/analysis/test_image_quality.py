"""SNR / CNR noise methods, scan time, and the tidy-table validation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studies.analysis import (
    AnalysisError,
    acquisition_time,
    cnr,
    fleiss_kappa,
    g_factor_map,
    magnitude_noise_factors,
    pseudo_replica_sigma,
    ratings_matrix,
    require_columns,
    scan_time_reduction,
    snr,
    validate_reads,
)


def test_noise_factors_match_published_constants():
    """Rayleigh (single coil): mean 1.2533 sigma, SD 0.6551 sigma; 8-coil RSS: beta_8 =
    3.9380, SD factor 0.7014 (Constantinides et al. 1997; design/statistics.md)."""
    assert magnitude_noise_factors(1) == pytest.approx((1.2533, 0.6551), abs=5e-5)
    assert magnitude_noise_factors(8) == pytest.approx((3.9380, 0.7014), abs=5e-5)
    assert magnitude_noise_factors(1)[0] == pytest.approx(np.sqrt(np.pi / 2))


@pytest.mark.parametrize("n_coils", [1, 4, 8])
@pytest.mark.parametrize("statistic", ["rms", "sd", "mean"])
def test_background_method_recovers_sigma_of_rss_noise(n_coils, statistic):
    """Simulated n-coil RSS background of complex Gaussian noise (sigma = 2.5 per channel)."""
    rng = np.random.default_rng(n_coils)
    sigma = 2.5
    noise = sigma * (rng.normal(size=(n_coils, 200_000)) + 1j * rng.normal(size=(n_coils, 200_000)))
    background = np.sqrt((np.abs(noise) ** 2).sum(0))
    signal = np.full(1000, 100.0)
    res = snr(signal, background, n_coils=n_coils, background_statistic=statistic)
    assert res.sigma == pytest.approx(sigma, rel=0.01)
    assert res.value == pytest.approx(100 / sigma, rel=0.01)
    assert not res.noise_method_warning
    json.dumps(res.to_dict())


def test_difference_method_recovers_sigma():
    rng = np.random.default_rng(1)
    obj = np.linspace(50, 150, 4000)
    i1 = obj + rng.normal(0, 3.0, obj.size)
    i2 = obj + rng.normal(0, 3.0, obj.size)
    res = snr(i1, method="difference", signal_roi_2=i2, reconstruction_family="deep_learning")
    assert res.sigma == pytest.approx(3.0, rel=0.04)
    assert res.signal == pytest.approx(100.0, rel=0.01)
    assert not res.noise_method_warning and "SD(I1 - I2)" in res.method


def test_pseudo_replica_recovers_spatially_varying_noise():
    """g-factor-like noise map: sigma doubles across the ROI; replicas recover it per pixel
    while a background ROI (uniform noise region) would not."""
    rng = np.random.default_rng(2)
    sigma_map = np.linspace(1.0, 2.0, 500)
    replicas = 80 + sigma_map * rng.normal(size=(400, 500))
    est = pseudo_replica_sigma(replicas)
    assert np.corrcoef(est, sigma_map)[0, 1] > 0.95
    res = snr(None, method="pseudo_replica", replicas=replicas)
    assert res.sigma == pytest.approx(np.sqrt(np.mean(sigma_map**2)), rel=0.03)


def test_background_on_parallel_imaging_is_flagged():
    rng = np.random.default_rng(3)
    bg = np.abs(rng.normal(size=500) + 1j * rng.normal(size=500))
    res = snr(np.full(10, 50.0), bg, reconstruction_family="parallel_imaging")
    assert res.noise_method_warning and res.warnings
    assert res.noise_method == "background"
    contrast = cnr(
        np.full(10, 60.0), np.full(10, 40.0), bg, reconstruction_family="compressed_sensing"
    )
    assert contrast.noise_method_warning
    assert contrast.value == pytest.approx(20 / contrast.sigma)


def test_cnr_difference_method():
    rng = np.random.default_rng(4)
    a1, a2 = 120 + rng.normal(0, 2, 3000), 120 + rng.normal(0, 2, 3000)
    b1, b2 = 80 + rng.normal(0, 2, 3000), 80 + rng.normal(0, 2, 3000)
    res = cnr(a1, b1, method="difference", roi_a_2=a2, roi_b_2=b2)
    assert res.sigma == pytest.approx(2.0, rel=0.04)
    assert res.value == pytest.approx(20.0, rel=0.05)


def test_snr_bad_input():
    with pytest.raises(AnalysisError, match="NaN"):
        snr([1.0, np.nan, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(AnalysisError, match="complex"):
        snr(np.ones(4) + 1j, np.ones(4))
    with pytest.raises(AnalysisError, match="unknown noise method"):
        snr(np.ones(4), np.arange(4.0), method="nema")
    with pytest.raises(AnalysisError, match="n_coils"):
        magnitude_noise_factors(0)
    with pytest.raises(AnalysisError, match="shapes differ"):
        snr(np.ones(4), method="difference", signal_roi_2=np.ones(5))
    with pytest.raises(AnalysisError, match="zero"):
        snr(np.ones(4), np.ones(10))


def test_acquisition_time_and_reduction():
    """TA = N_pe x TR x NSA / R: 256 x 0.5 s x 2 / 2 = 128 s; TSE ETL 16: 8 s."""
    assert acquisition_time(256, 0.5, nsa=2, acceleration=2) == pytest.approx(128.0)
    assert acquisition_time(256, 4.0, turbo_factor=16, acceleration=2) == pytest.approx(32.0)
    res = scan_time_reduction(
        acquisition_time(256, 0.5), acquisition_time(256, 0.5, acceleration=4)
    )
    assert res.reduction_percent == pytest.approx(75.0)
    assert res.speedup == pytest.approx(4.0)
    with pytest.raises(AnalysisError, match="acceleration"):
        acquisition_time(256, 0.5, acceleration=0.5)
    with pytest.raises(AnalysisError, match="new_s"):
        scan_time_reduction(100, 0)


def test_tidy_errors_name_the_missing_columns():
    df = pd.DataFrame({"reader_id": [1], "case_id": [1], "value": [1]})
    with pytest.raises(AnalysisError, match="'patient_id', 'modality_id'"):
        require_columns(df, ["reader_id", "patient_id", "modality_id"], "test")
    with pytest.raises(AnalysisError, match="DataFrame"):
        require_columns([1, 2], ["a"], "test")
    with pytest.raises(AnalysisError, match="empty"):
        validate_reads(df.iloc[:0], "test", columns=("reader_id", "case_id", "value"))


def test_library_imports_without_django():
    """studies.analysis must work in a notebook without Django settings: importing it (in a
    fresh interpreter) must not import django."""
    root = Path(__file__).resolve().parents[2]
    code = "import sys, studies.analysis; assert 'django' not in sys.modules, 'django imported'"
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_g_factor_map_from_pseudo_replicas():
    """Uniform noise amplified only by sqrt(R) gives g = 1; a 1.5x hot spot gives g = 1.5."""
    rng = np.random.default_rng(6)
    r = 4
    amplification = np.where(np.arange(300) < 150, 1.0, 1.5)
    full = pseudo_replica_sigma(rng.normal(size=(600, 300)))
    accel = pseudo_replica_sigma(np.sqrt(r) * amplification * rng.normal(size=(600, 300)))
    g = g_factor_map(accel, full, r)
    assert g[:150].mean() == pytest.approx(1.0, rel=0.02)
    assert g[150:].mean() == pytest.approx(1.5, rel=0.02)
    with pytest.raises(AnalysisError, match="acceleration"):
        g_factor_map(accel, full, 0.5)


def test_ratings_matrix_feeds_fleiss_kappa():
    reads = pd.DataFrame(
        {
            "reader_id": ["a", "b", "c", "a", "b", "a", "b", "c"],
            "case_id": [1, 1, 1, 2, 2, 3, 3, 3],
            "modality_id": "dl",
            "value": [1, 1, 2, 2, 2, 1, 1, 1],
        }
    )
    mat = ratings_matrix(reads, modality="dl")
    assert mat.shape == (3, 3) and np.isnan(mat.loc[2, "c"])
    assert fleiss_kappa(mat, [1, 2]).n == 3
    with pytest.raises(AnalysisError, match="several reads"):
        ratings_matrix(pd.concat([reads, reads.assign(modality_id="sr")]))


def _correlated_rss_background(rho: float, n_coils: int, sigma: float, n: int = 200_000):
    """RSS of complex Gaussian coil noise with equal inter-coil correlation ``rho``."""
    corr = np.full((n_coils, n_coils), rho)
    np.fill_diagonal(corr, 1.0)
    chol = np.linalg.cholesky(corr)
    rng = np.random.default_rng(40)
    z = sigma * (rng.normal(size=(n, n_coils)) + 1j * rng.normal(size=(n, n_coils))) @ chol.T
    return np.sqrt((np.abs(z) ** 2).sum(1))


def test_correlated_coil_noise_biases_sd_but_not_rms():
    """Issue 14: rho = 0.4 between 8 coils makes the background-SD method overestimate sigma
    by 36 % (the RSS background is then an nc-chi with about 3.8 effective coils, Aja-
    Fernandez & Tristan-Vega 2012); the second moment E[M^2] = 2 n sigma^2 holds for any
    correlation, so the default 'rms' statistic stays exact."""
    background = _correlated_rss_background(0.4, 8, sigma=2.0)
    signal = np.full(100, 80.0)
    biased = snr(signal, background, n_coils=8, background_statistic="sd")
    assert biased.sigma / 2.0 == pytest.approx(1.36, abs=0.01)
    assert any("uncorrelated coil noise" in w for w in biased.warnings)
    exact = snr(signal, background, n_coils=8)
    assert exact.sigma == pytest.approx(2.0, rel=0.005)
    assert not exact.warnings
    assert "rms" in exact.method or "mean(background^2)" in exact.method
