"""Ingest: validate, de-identify and store uploaded series. Nothing is half-stored.

The order matters: every file is validated and de-identified in memory (or in a private
temporary file for large HDF5 uploads) before anything reaches storage; files are then
saved under random names, and the database rows are created in one transaction. If any
step fails, the files saved so far are deleted and the case is left as it was.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from mriplatform.audit.services import record
from mriplatform.cases import deid, ingest
from mriplatform.cases.models import Case, Instance, Series

IngestError = ingest.IngestError


def deid_context(case: Case) -> deid.DeidContext:
    return deid.DeidContext(
        subject_code=case.subject_code,
        uid_secret=bytes.fromhex(case.uid_secret),
        date_shift_days=case.date_shift_days,
        extra_vocabulary=tuple(settings.DEID_EXTRA_VOCABULARY),
    )


def _series_folder(case: Case, series: Series) -> str:
    return f"cases/{case.pk}/series/{series.uuid.hex}"


def ingest_files(case: Case, files, user, description: str = "", request=None) -> Series:
    """Validate, de-identify and store one series made of ``files`` (Django UploadedFiles)."""
    plan = ingest.inspect_upload(files)
    try:
        context = deid_context(case)
    except ValueError as exc:  # a subject code stored before codes were validated
        raise IngestError(f"case {case.pk} cannot be de-identified: {exc}") from exc
    series = Series(case=case, description=description, created_by=user)
    folder = _series_folder(case, series)
    written: list[str] = []
    try:
        if plan.kind == "dicom":
            series.kind = Series.Kind.DICOM
            instances = []
            reports = []
            for number, item in enumerate(plan.dicom_items, start=1):
                data, report = deid.deidentify_dicom_bytes(item.read_bytes(), context)
                name = default_storage.save(f"{folder}/{number:05d}.dcm", ContentFile(data))
                written.append(name)
                instances.append((report.sop_instance_uid, item.instance_number, name))
                reports.append(report)
            series.series_instance_uid = reports[0].series_instance_uid
            series.n_slices = len(instances)
            series.matrix = list(plan.summary.get("matrix", []))
            series.metadata = deid.clean_summary(plan.summary, context)
            series.deid_report = deid.merge_reports(reports)
        else:
            series.kind = Series.Kind.FASTMRI if plan.kind == "fastmri_h5" else Series.Kind.ISMRMRD
            with tempfile.TemporaryDirectory(prefix="ingest-") as tmp:
                out = Path(tmp) / "kspace.h5"
                report = deid.deidentify_raw_h5(plan.raw_file, out, context, kind=plan.kind)
                with out.open("rb") as fh:
                    name = default_storage.save(f"{folder}/kspace.h5", File(fh))
                written.append(name)
            series.file = name
            summary = plan.summary
            series.n_slices = summary.get("n_slices")
            series.n_coils = summary.get("n_coils")
            series.matrix = list(summary.get("matrix", []))
            series.fully_sampled = summary.get("fully_sampled")
            series.metadata = deid.clean_summary(summary, context)
            series.deid_report = report.to_dict() if hasattr(report, "to_dict") else dict(report)
            instances = []
        with transaction.atomic():
            series.save()
            Instance.objects.bulk_create(
                Instance(series=series, file=name, sop_instance_uid=uid, instance_number=n)
                for uid, n, name in instances
            )
            record(
                user,
                "case.deidentify",
                obj=series,
                request=request,
                details={
                    "kind": series.kind,
                    "files": len(files),
                    "profile": series.deid_report.get("profile", ""),
                },
            )
        return series
    except Exception:
        for name in written:
            default_storage.delete(name)
        raise


def create_case_with_series(
    form_data: dict, institution, files, user, description="", request=None
) -> Case:
    """Create a case and its first series together: a failed upload leaves no empty case."""
    with transaction.atomic():
        case = Case.objects.create(institution=institution, created_by=user, **form_data)
        ingest_files(case, files, user, description=description, request=request)
        record(user, "case.create", obj=case, request=request)
    return case
