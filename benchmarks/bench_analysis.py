"""Time the heavy statistics of studies.analysis on study-sized synthetic data.

* interchangeability: 2000 patient bootstrap resamples, 100 patients x 5 findings x 6
  readers x 2 arms (target < 2 s);
* mrmc_or: 10 readers x 200 cases x 3 modalities, jackknife and DeLong (target < 2 s).

Run: ``.venv/bin/python benchmarks/bench_analysis.py`` (prints the best of ``--repeat``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studies.analysis import interchangeability, mrmc_or  # noqa: E402


def interchangeability_reads(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_patients, n_findings, n_readers = 100, 5, 6
    truth = rng.integers(0, 2, size=(n_patients, n_findings))
    case = np.arange(n_patients * n_findings)
    patient = np.repeat(np.arange(n_patients), n_findings)
    frames = []
    for arm, accuracy in (("conventional", 0.85), ("dl", 0.83)):
        correct = rng.random((n_readers, n_patients, n_findings)) < accuracy
        reads = np.where(correct, truth, 1 - truth).reshape(n_readers, -1)
        frames.append(
            pd.DataFrame(
                {
                    "reader_id": np.repeat(np.arange(n_readers), case.size),
                    "case_id": np.tile(case, n_readers),
                    "patient_id": np.tile(patient, n_readers),
                    "modality_id": arm,
                    "value": reads.ravel(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def mrmc_reads(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t, r, n = 3, 10, 200
    truth = rng.integers(0, 2, n)
    conf = rng.normal(size=(t, r, n)) + truth * (1.0 + 0.2 * np.arange(t))[:, None, None]
    ti, ri, ci = np.meshgrid(np.arange(t), np.arange(r), np.arange(n), indexing="ij")
    return pd.DataFrame(
        {
            "reader_id": ri.ravel(),
            "case_id": ci.ravel(),
            "modality_id": ti.ravel(),
            "confidence": np.round(conf.ravel() * 2) / 2,
            "truth": truth[ci.ravel()],
        }
    )


def best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    ic = interchangeability_reads()
    mr = mrmc_reads()
    cases = {
        "interchangeability (2000 resamples, 100 pt x 5 findings x 6 readers x 2 arms)": (
            lambda: interchangeability(ic, "conventional", "dl", n_boot=2000)
        ),
        "mrmc_or jackknife (10 readers x 200 cases x 3 modalities)": (
            lambda: mrmc_or(mr, covariance="jackknife")
        ),
        "mrmc_or DeLong (10 readers x 200 cases x 3 modalities)": (
            lambda: mrmc_or(mr, covariance="delong")
        ),
    }
    for name, fn in cases.items():
        ms = best_of(fn, args.repeat) * 1000
        print(f"{name}: {ms:.1f} ms (best of {args.repeat}, target < 2 s)")


if __name__ == "__main__":
    main()
