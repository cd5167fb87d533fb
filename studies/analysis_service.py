"""Analyses of closed studies: start one (a queued :class:`AnalysisRun` and a Celery task),
run it (the report files under ``analysis/<run pk>/`` of the default storage: local disk
or S3, so a web server on another machine serves what the worker wrote) and write the same
report synchronously for ``manage.py analyse``.

The numbers come from :mod:`studies.report` (pure); this module adds what only the
database knows: the tidy reads (:func:`studies.export.tidy_csv`), the reference arm, the
full Likert scales and finding choices, the arms' acquisition times and reconstruction
families. All of it is stored in the run's ``parameters`` so that the bundle reproduces it.
"""

from __future__ import annotations

import json
import logging
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from mriplatform.audit.services import record
from studies import report
from studies.models import AnalysisRun, Question, Study
from studies.questions import choice_values, scale
from studies.services import StudyError

logger = logging.getLogger(__name__)

REPORT_FILES = {
    "report.html": "text/html; charset=utf-8",
    "report.pdf": "application/pdf",
    "reads.csv": "text/csv; charset=utf-8",
    "bundle.zip": "application/zip",
}
REFERENCE_DIGEST_FILE = "reference_standard.json"


def study_seed(study: Study) -> int:
    """The default bootstrap seed: the study's own randomisation seed (kept in int32 range
    so that it fits every form and RNG)."""
    return int(study.seed % 2**31)


def study_parameters(study: Study) -> dict[str, Any]:
    """The parameters the database fixes: reference arm, default seed, scales, choices,
    arm timings and reconstruction families."""
    from recon_engine.registry import get_method

    params: dict[str, Any] = {
        "reference": study.reference_arm.label if study.reference_arm_id else None,
        "seed": study_seed(study),
        "scales": {},
        "categories": {},
        "scan_times_s": {},
        "reconstruction_families": {},
    }
    for q in study.questions.all():
        if q.kind == Question.Kind.LIKERT:
            params["scales"][q.key] = list(scale(q))
        elif q.kind in (Question.Kind.FINDING, Question.Kind.CHOICE) and q.choices:
            params["categories"][q.key] = [str(c) for c in choice_values(q)]
    for arm in study.arms.select_related("protocol"):
        params["scan_times_s"][arm.label] = float(arm.protocol.acquisition_time_s)
        try:
            params["reconstruction_families"][arm.label] = get_method(arm.protocol.method).family
        except KeyError:
            params["reconstruction_families"][arm.label] = None
    return params


def analysis_parameters(study: Study, requested: dict[str, Any]) -> dict[str, Any]:
    """``requested`` (the statistician's choices) completed from the study and checked.

    Raises :class:`studies.report.ReportError` for bad values.
    """
    params = study_parameters(study)
    for key, value in requested.items():
        if value not in (None, ""):
            params[key] = value
    return report.normalise_parameters(params)


def _tidy_csv(study: Study) -> str:
    from studies.export import tidy_csv

    return tidy_csv(study)


def run_folder(run: AnalysisRun) -> str:
    """The storage folder (default storage name prefix) of ``run``'s report files."""
    return f"analysis/{run.pk}"


def _delete_folder(folder: str) -> None:
    """Delete every stored file under ``folder`` (what an interrupted attempt left)."""
    try:
        dirs, files = default_storage.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in files:
        default_storage.delete(f"{folder}/{name}")
    for name in dirs:
        _delete_folder(f"{folder}/{name}")


def _discard(folder: str) -> None:
    """Best-effort removal of a failed run's stored files (the failure is already recorded;
    a storage outage only leaves files the next attempt deletes)."""
    try:
        _delete_folder(folder)
    except Exception:  # boto/OS errors: whatever the storage backend raises
        logger.warning("could not delete the files of failed analysis %s", folder, exc_info=True)


def _store_folder(local: Path, folder: str) -> None:
    """Save every file under the local directory ``local`` to ``folder`` of the default
    storage, keeping relative names (the folder was emptied first, so none is renamed)."""
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        name = f"{folder}/{path.relative_to(local).as_posix()}"
        with path.open("rb") as fh:
            saved = default_storage.save(name, File(fh))
        if saved != name:
            raise RuntimeError(f"storage renamed {name} to {saved}: the folder was not empty")


def report_title(study: Study) -> str:
    return f"Analysis of study {study.pk}: {study.title}"


def write_study_report(
    study: Study,
    params: dict[str, Any],
    out_dir: str | Path,
    progress: report.ProgressCallback | None = None,
) -> dict[str, Any]:
    """Every report file of ``study`` in ``out_dir``; returns the results dict, with the
    digest of the reference standard the reads were scored against
    (``reference_standard``: ``sha256``, ``cells``; see
    :func:`studies.reference.reference_digest`)."""
    if study.status != Study.Status.CLOSED:
        raise StudyError("only studies closed for analysis can be analysed")
    from studies.reference import reference_digest

    if progress:
        progress(0.01, "Exporting the reads")
    truth = reference_digest(study)
    csv_text = _tidy_csv(study)
    results = report.write_report(csv_text, params, out_dir, report_title(study), progress)
    _add_reference_digest(Path(out_dir), truth)
    results["reference_standard"] = truth
    return results


def _add_reference_digest(out_dir: Path, truth: dict[str, Any]) -> None:
    """Write ``reference_standard.json`` (the digest of the truth the reads were scored
    against) next to the report and into its bundle, so the bundle names it too."""
    text = json.dumps(truth, indent=2, sort_keys=True)
    (out_dir / REFERENCE_DIGEST_FILE).write_text(text, encoding="utf-8")
    with zipfile.ZipFile(out_dir / "bundle.zip", "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(REFERENCE_DIGEST_FILE, text)


def _enqueue(run: AnalysisRun) -> None:
    """Send ``run`` to the worker once the surrounding transaction commits. When the broker
    cannot be reached the run is marked failed with the reason (instead of staying queued
    with no task behind it), so the statistician can run it again later."""
    from studies.tasks import run_analysis as task

    def send() -> None:
        try:
            task.delay(run.pk)
        except Exception as exc:  # kombu/redis/OS errors: whatever the broker transport raises
            logger.exception("could not send analysis run %s to the broker", run.pk)
            AnalysisRun.objects.filter(pk=run.pk, status=AnalysisRun.Status.QUEUED).update(
                status=AnalysisRun.Status.FAILED,
                message=(
                    f"could not reach the task broker ({exc}); run it again when the "
                    "worker service is back"
                )[:2000],
                finished=timezone.now(),
            )

    transaction.on_commit(send)


def _queue(study: Study, user, params: dict[str, Any], request=None, **details) -> AnalysisRun:
    run = AnalysisRun.objects.create(
        study=study, requested_by=user, parameters=params, message="Queued"
    )
    record(
        user,
        "study.analysis.start",
        study,
        request=request,
        details={
            "run": run.pk,
            "analyses": params["analyses"],
            "seed": params["seed"],
            **details,
        },
    )
    _enqueue(run)
    return run


def start_analysis(study: Study, user, requested: dict[str, Any], request=None) -> AnalysisRun:
    """Queue an analysis of the closed ``study`` with the statistician's ``requested``
    parameters; the Celery task starts once the transaction commits (audited)."""
    if study.status != Study.Status.CLOSED:
        raise StudyError("only studies closed for analysis can be analysed")
    return _queue(study, user, analysis_parameters(study, requested), request=request)


def run_again(run: AnalysisRun, user, request=None) -> AnalysisRun:
    """A new queued run of a failed ``run``'s study with exactly its parameters (audited
    with ``rerun_of``); the failed run is kept as it is."""
    if run.status != AnalysisRun.Status.FAILED:
        raise StudyError("only a failed run can be run again")
    study = run.study
    if study.status != Study.Status.CLOSED:
        raise StudyError("only studies closed for analysis can be analysed")
    params = report.normalise_parameters(run.parameters)
    return _queue(study, user, params, request=request, rerun_of=run.pk)


def _set_progress(run_pk: int, fraction: float, message: str) -> None:
    AnalysisRun.objects.filter(pk=run_pk).update(
        progress=round(min(max(fraction, 0.0), 1.0), 4), message=message[:500]
    )


def _fail(run_pk: int, message: str) -> None:
    AnalysisRun.objects.filter(pk=run_pk).update(
        status=AnalysisRun.Status.FAILED, message=message[:2000], finished=timezone.now()
    )


def run_analysis(run_pk: int) -> AnalysisRun:
    """Compute run ``run_pk`` (idempotent: a succeeded run is left as it is; a run whose
    worker died is computed again from scratch). Failures are stored, not raised."""
    run = AnalysisRun.objects.select_related("study").get(pk=run_pk)
    if run.status == AnalysisRun.Status.SUCCEEDED:
        return run
    folder = run_folder(run)
    _delete_folder(folder)
    AnalysisRun.objects.filter(pk=run.pk).update(
        status=AnalysisRun.Status.RUNNING,
        started=timezone.now(),
        progress=0.0,
        message="Starting",
        output_dir=folder,
    )
    try:
        # Written in this worker's own temporary folder, then stored: no other process
        # ever needs a path on this machine.
        with tempfile.TemporaryDirectory(prefix=f"analysis-{run.pk}-") as tmp:
            results = write_study_report(
                run.study,
                run.parameters,
                tmp,
                lambda fraction, message: _set_progress(run.pk, fraction, message),
            )
            _set_progress(run.pk, 0.99, "Storing the report")
            _store_folder(Path(tmp), folder)
    except (StudyError, report.ReportError, ValueError) as exc:
        _fail(run.pk, str(exc))
        _discard(folder)
    except Exception as exc:
        logger.exception("analysis run %s failed", run.pk)
        _fail(run.pk, f"internal error ({type(exc).__name__}): {exc}")
        _discard(folder)
    else:
        AnalysisRun.objects.filter(pk=run.pk).update(
            status=AnalysisRun.Status.SUCCEEDED,
            progress=1.0,
            message="Finished",
            result=results,
            finished=timezone.now(),
        )
    run.refresh_from_db()
    return run


def run_file(run: AnalysisRun, name: str) -> str | None:
    """The default-storage name of report file ``name`` of a succeeded run (None if it is
    not there); open it with ``default_storage.open``."""
    if name not in REPORT_FILES and name != "report_body.html":
        return None
    if run.status != AnalysisRun.Status.SUCCEEDED or not run.output_dir:
        return None
    stored = f"{run.output_dir}/{name}"
    return stored if default_storage.exists(stored) else None


def reference_check(run: AnalysisRun) -> dict[str, Any] | None:
    """The reference standard a succeeded run used against the study's current one:
    ``{"sha256", "cells", "current_sha256", "current_cells", "changed"}``; None when the
    run has no digest (not finished, or computed before digests were recorded)."""
    used = (run.result or {}).get("reference_standard")
    if not used:
        return None
    from studies.reference import reference_digest

    current = reference_digest(run.study)
    return {
        **used,
        "current_sha256": current["sha256"],
        "current_cells": current["cells"],
        "changed": current["sha256"] != used["sha256"],
    }


def queued_message(run: AnalysisRun) -> str:
    """Why a queued ``run`` has not started: analysis runs go to the Celery ``short`` queue
    (one worker slot, never behind reconstructions), first in first out."""
    ahead = AnalysisRun.objects.filter(
        status__in=(AnalysisRun.Status.QUEUED, AnalysisRun.Status.RUNNING),
        created__lt=run.created,
    ).count()
    behind = f", behind {ahead} earlier analysis run{'s' if ahead != 1 else ''}" if ahead else ""
    return f"Queued: waiting for a worker on the short queue{behind}"


def run_state(run: AnalysisRun) -> dict[str, Any]:
    """What the progress bar shows (JSON)."""
    return {
        "id": run.pk,
        "status": run.status,
        "status_display": run.get_status_display(),
        "progress_percent": round(100 * run.progress),
        "message": queued_message(run) if run.status == AnalysisRun.Status.QUEUED else run.message,
        "finished": run.status in (AnalysisRun.Status.SUCCEEDED, AnalysisRun.Status.FAILED),
    }
