"""Fidelity runs: validation, execution (what the Celery task calls) and feature stability.

Domain work is the engine's (:mod:`recon_engine.fidelity`); this module turns protocols and
cases into its inputs, keeps the run's progress and results, and computes the agreement of
radiomic features across arms with the project's tested ICC (:mod:`studies.analysis`).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from django.db import transaction
from django.utils import timezone

from fidelity.models import FidelityRun
from mriplatform.cases.models import Case, Series
from mriplatform.protocols.models import Protocol

logger = logging.getLogger(__name__)

MAX_REALISATIONS = 500
MIN_REALISATIONS = 8
MATRIX_RANGE = (32, 512)
ATTACK_EPSILONS = (0.01, 0.02)


class FidelityInputError(ValueError):
    """A fidelity run cannot be made from this input (the message says why)."""


def _check_number(value, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FidelityInputError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise FidelityInputError(f"{name} must be between {low:g} and {high:g}, got {number:g}")
    return number


def create_run(
    user,
    name: str,
    protocols: Sequence[Protocol],
    sizes_mm: Sequence[float],
    cases: Sequence[Case] = (),
    lesion_kind: str = "focus",
    contrast: float = -0.3,
    n_realisations: int = 50,
    snr: float = 20.0,
    pixel_mm: float = 1.0,
    matrix: int = 128,
) -> FidelityRun:
    """Validate and save a queued run (FidelityInputError with a clear message otherwise)."""
    from recon_engine.fidelity.lesions import Lesion
    from recon_engine.registry import ParameterError

    if not name or not name.strip():
        raise FidelityInputError("give the run a name")
    if not protocols:
        raise FidelityInputError("choose at least one protocol")
    if not sizes_mm:
        raise FidelityInputError("give at least one lesion size (mm)")
    pixel_mm = _check_number(pixel_mm, "pixel size", 0.05, 10)
    matrix = int(_check_number(matrix, "matrix", *MATRIX_RANGE))
    n_realisations = int(
        _check_number(n_realisations, "noise realisations", MIN_REALISATIONS, MAX_REALISATIONS)
    )
    snr = _check_number(snr, "SNR", 1, 1000)
    sizes = sorted({_check_number(s, "lesion size", 0, 100) for s in sizes_mm})
    for size in sizes:
        try:
            Lesion(lesion_kind, size, float(contrast), (matrix / 2, matrix / 2)).validate(
                (matrix, matrix), pixel_mm
            )
        except ParameterError as exc:
            raise FidelityInputError(str(exc)) from None
    for case in cases:
        if _raw_series(case) is None:
            raise FidelityInputError(
                f"case {case.subject_code} has no raw k-space series to insert findings into"
            )
    with transaction.atomic():
        run = FidelityRun.objects.create(
            name=name.strip(),
            lesion_kind=lesion_kind,
            contrast=float(contrast),
            sizes_mm=sizes,
            n_realisations=n_realisations,
            snr=snr,
            pixel_mm=pixel_mm,
            matrix=matrix,
            created_by=user,
        )
        run.protocols.set(protocols)
        run.cases.set(cases)
    return run


def _raw_series(case: Case) -> Series | None:
    return case.series.filter(kind=Series.Kind.FASTMRI).exclude(file="").first()


def read_raw_series(series: Series):
    """The series' fastMRI raw data (copied out of storage first: it may not be a local disk)."""
    from recon_engine.io.fastmri import read_fastmri

    with tempfile.TemporaryDirectory(prefix="fidelity-") as tmp:
        local = Path(tmp) / "kspace.h5"
        with series.file.open("rb") as source, local.open("wb") as target:
            shutil.copyfileobj(source, target)
        return read_fastmri(local)


def backgrounds(run: FidelityRun) -> list[tuple[str, np.ndarray]]:
    """``[(label, (H, W) magnitude)]``: each case's central fully sampled slice (RSS), or
    the shipped Colin27 T1 central slice at the run's matrix when the run has no cases."""
    from recon_engine.fft import ifftc, rss
    from recon_engine.fidelity.cli import DEFAULT_VOLUME, background_slice

    cases = list(run.cases.all())
    if not cases:
        image, _ = background_slice(DEFAULT_VOLUME, run.matrix, pixel_mm=run.pixel_mm)
        return [("simulated Colin27 T1 slice", image)]
    out = []
    for case in cases:
        data = read_raw_series(_raw_series(case))
        kspace = data.kspace[data.kspace.shape[0] // 2][None]
        out.append((case.subject_code, rss(ifftc(kspace), coil_dim=1)[0].abs().numpy()))
    return out


def _pattern(protocol: Protocol) -> str:
    return "random" if protocol.mask_pattern == "as_acquired" else protocol.mask_pattern


def execute_run(run_id: int) -> FidelityRun:
    """Run every background x protocol (idempotent: a finished run is left as it is)."""
    from recon_engine.fidelity.detectability import (
        FidelitySetting,
        detectability,
        smallest_detected,
    )
    from recon_engine.fidelity.instability import differentiable_forward, instability_curve
    from recon_engine.registry import ParameterError, ReconError
    from recon_engine.sampling import make_mask
    from recon_engine.simulation import simulate_multicoil

    run = FidelityRun.objects.get(pk=run_id)
    if run.status in (FidelityRun.Status.DONE, FidelityRun.Status.FAILED):
        return run
    FidelityRun.objects.filter(pk=run.pk).update(status=FidelityRun.Status.RUNNING, progress=0)
    protocols = list(run.protocols.order_by("method", "acceleration", "pk"))
    rows, summary, instability, skipped = [], [], [], []
    try:
        images = backgrounds(run)
        total = len(images) * len(protocols)
        for b_index, (label, image) in enumerate(images):
            for p_index, protocol in enumerate(protocols):
                setting = FidelitySetting(
                    kind=run.lesion_kind,
                    contrast=run.contrast,
                    n_realisations=run.n_realisations,
                    snr=run.snr,
                    pattern=_pattern(protocol),
                    center_fraction=protocol.center_fraction,
                    seed=protocol.mask_seed,
                )
                found = detectability(
                    image,
                    run.pixel_mm,
                    protocol.method,
                    protocol.acceleration,
                    run.sizes_mm,
                    setting,
                    params=protocol.params,
                )
                for row in found:
                    row.update(protocol=protocol.name, background=label)
                rows.extend(found)
                summary.append(
                    {
                        "protocol": protocol.name,
                        "method": protocol.method,
                        "acceleration": protocol.acceleration,
                        "background": label,
                        "smallest_detected_cho_mm": smallest_detected(found, "cho"),
                        "smallest_detected_npw_mm": smallest_detected(found, "npw"),
                    }
                )
                try:
                    forward = differentiable_forward(protocol.method, protocol.params)
                except ParameterError as exc:
                    skipped.append({"protocol": protocol.name, "reason": str(exc)})
                else:
                    data = simulate_multicoil(image.astype(np.float32), snr=run.snr)
                    mask = make_mask(
                        _pattern(protocol),
                        image.shape,
                        protocol.acceleration,
                        seed=protocol.mask_seed,
                        center_fraction=protocol.center_fraction,
                    ).mask
                    for row in instability_curve(
                        forward, data.kspace, mask, ATTACK_EPSILONS, steps=10, n_random=4
                    ):
                        instability.append({"protocol": protocol.name, "background": label, **row})
                done = (b_index * len(protocols) + p_index + 1) / total
                FidelityRun.objects.filter(pk=run.pk).update(progress=done)
    except (ParameterError, ReconError, ValueError, OSError) as exc:
        logger.info("fidelity run %s failed: %s", run.pk, exc)
        FidelityRun.objects.filter(pk=run.pk).update(
            status=FidelityRun.Status.FAILED, error=str(exc), finished=timezone.now()
        )
        return FidelityRun.objects.get(pk=run.pk)
    FidelityRun.objects.filter(pk=run.pk).update(
        status=FidelityRun.Status.DONE,
        progress=1.0,
        results={
            "rows": rows,
            "summary": summary,
            "instability": instability,
            "skipped": skipped,
        },
        finished=timezone.now(),
    )
    return FidelityRun.objects.get(pk=run.pk)


def concordance_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's concordance correlation coefficient (Lin, Biometrics 45:255, 1989, eq. 2a):
    ``2 s_xy / (s_x^2 + s_y^2 + (mean x - mean y)^2)`` with 1/n moments."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.size < 2:
        raise FidelityInputError("CCC needs two equally long series of at least 2 values")
    sxy = ((x - x.mean()) * (y - y.mean())).mean()
    denominator = x.var() + y.var() + (x.mean() - y.mean()) ** 2
    return float(2 * sxy / denominator) if denominator > 0 else 1.0


def feature_stability(
    features: dict[str, np.ndarray], names: Sequence[str], reference: str
) -> dict:
    """Per arm and feature: ICC(2,1) (absolute agreement, Shrout & Fleiss) and Lin's CCC of
    the arm against ``reference`` over cases, and the share of features with ICC > 0.9.

    features: ``{arm: (n_cases, n_features)}`` with the same cases in the same order.
    Features constant over cases in both arms are reported with ICC None (undefined).
    """
    from studies.analysis.agreement import icc

    if reference not in features:
        raise FidelityInputError(f"reference arm {reference!r} is not among the arms")
    ref = np.asarray(features[reference], dtype=float)
    out = {}
    for arm, values in features.items():
        if arm == reference:
            continue
        values = np.asarray(values, dtype=float)
        if values.shape != ref.shape:
            raise FidelityInputError(f"arm {arm!r} has {values.shape}, reference {ref.shape}")
        per_feature = []
        for j, name in enumerate(names):
            pair = np.column_stack([ref[:, j], values[:, j]])
            if np.ptp(pair) == 0 or np.ptp(pair, axis=0).max() == 0:
                per_feature.append({"feature": name, "icc": None, "ccc": None})
                continue
            with np.errstate(divide="ignore", invalid="ignore"):  # CI of a perfect fit
                estimate = icc(pair, form="ICC(2,1)").estimate
            per_feature.append(
                {
                    "feature": name,
                    "icc": estimate,
                    "ccc": concordance_correlation(ref[:, j], values[:, j]),
                }
            )
        defined = [f["icc"] for f in per_feature if f["icc"] is not None]
        out[arm] = {
            "features": per_feature,
            "share_icc_above_0_9": float(np.mean(np.array(defined) > 0.9)) if defined else None,
            "median_icc": float(np.median(defined)) if defined else None,
        }
    return out
