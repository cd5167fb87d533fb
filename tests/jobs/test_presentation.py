"""The job page rounds what it shows; the stored values stay exact."""

from mriplatform.jobs.presentation import metric_rows, provenance_rows


def test_metrics_are_rounded_with_units_in_a_fixed_order():
    rows = metric_rows(
        {
            "ssim": 0.8123456789012345,
            "reference": "fully sampled root-sum-of-squares",
            "psnr": 31.234567890123456,
            "nmse": 0.0012345678901234,
        }
    )
    assert [(r["label"], r["value"], r["unit"]) for r in rows] == [
        ("PSNR", "31.23", "dB"),
        ("SSIM", "0.8123", ""),
        ("NMSE", "0.00123", ""),
    ]


def test_an_exact_match_has_no_psnr_to_print():
    assert metric_rows({"psnr": None})[0]["value"] == "–"


def test_provenance_is_flattened_to_rows():
    rows = dict(
        provenance_rows(
            {
                "method": "cs_wavelet",
                "params": {"lambda": 0.005, "iterations": 30},
                "protocol": {"name": "CS R4", "version": 2},
                "timings_s": {"total": 1.23456789},
                "sampling": {},
                "model_sha256": "",
                "info": {"shape": [12, 256, 256]},
            }
        )
    )
    assert rows == {
        "method": "cs_wavelet",
        "params.lambda": "0.005",
        "params.iterations": "30",
        "protocol.name": "CS R4",
        "protocol.version": "2",
        "timings_s.total": "1.235",
        "sampling": "none",
        "model_sha256": "–",
        "info.shape": "12, 256, 256",
    }
