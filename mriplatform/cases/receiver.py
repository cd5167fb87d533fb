"""DICOM C-STORE receiver: a scanner or PACS sends a study; each series becomes a
de-identified series of a case, through the same ingest as browser uploads.

Instances are kept in memory until the association is released (never written to disk
before de-identification). An aborted association stores nothing. Sends of the same
patient and study land in the same case, found by a keyed hash of the identifiers.

Only listed senders are served: calling AE titles (checked by pynetdicom when the
association is requested) and IP addresses (checked per C-STORE). Each instance is
validated before it is acknowledged, so a modality sees a failure status for an object
the platform will not keep instead of a success followed by a silent drop.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
from collections import defaultdict

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections, transaction
from pydicom.filewriter import dcmwrite
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    EnhancedMRImageStorage,
    MRImageStorage,
    Verification,
)

from mriplatform.audit.services import record
from mriplatform.cases.ingest import validate_dicom
from mriplatform.cases.models import Case
from mriplatform.cases.services import IngestError, ingest_files

logger = logging.getLogger(__name__)

ACCEPTED = (MRImageStorage, EnhancedMRImageStorage)
STATUS_SUCCESS = 0x0000
STATUS_NOT_AUTHORISED = 0x0124  # PS3.7 C.4.2.1.4 general status "Refused: Not Authorized"
STATUS_CANNOT_UNDERSTAND = 0xC000  # PS3.4 Table B.2-1 Storage "Error: Cannot understand"


def source_key(patient_id: str, study_uid: str) -> str:
    message = f"{patient_id}\x00{study_uid}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def case_for(institution, patient_id: str, study_uid: str) -> Case:
    key = source_key(patient_id, study_uid)
    with transaction.atomic():
        case = (
            Case.objects.select_for_update().filter(institution=institution, source_key=key).first()
        )
        if case is None:
            number = Case.objects.filter(institution=institution).count() + 1
            code = f"{institution.code.upper()}-R{number:05d}"
            while Case.objects.filter(institution=institution, subject_code=code).exists():
                number += 1
                code = f"{institution.code.upper()}-R{number:05d}"
            case = Case.objects.create(
                institution=institution,
                subject_code=code,
                source_key=key,
                notes="Received over DICOM",
            )
            record(None, "case.create", obj=case, details={"via": "dicom-receiver"})
    return case


class Receiver:
    """Holds the instances of each association until it is released."""

    def __init__(
        self,
        institution,
        allowed_aets: list[str] | None = None,
        allowed_hosts: list[str] | None = None,
    ):
        """allowed_aets / allowed_hosts: senders served; None or empty serves every one."""
        self.institution = institution
        self.allowed_aets = [a.strip() for a in allowed_aets or [] if a.strip()]
        self.allowed_hosts = {h.strip() for h in allowed_hosts or [] if h.strip()}
        self.pending: dict[int, dict[tuple[str, str, str], list[bytes]]] = defaultdict(
            lambda: defaultdict(list)
        )

    def _refuse(self, event, reason: str) -> None:
        sender = event.assoc.requestor
        logger.warning(
            "refused an instance from %s (%s): %s", sender.ae_title, sender.address, reason
        )
        record(
            None,
            "case.receive_refused",
            details={
                "sender": sender.ae_title,
                "address": sender.address,
                "institution": self.institution.code,
                "error": reason[:500],
            },
        )

    def handle_store(self, event) -> int:
        address = event.assoc.requestor.address
        if self.allowed_hosts and address not in self.allowed_hosts:
            self._refuse(event, f"address {address} is not on the receiver's allow-list")
            return STATUS_NOT_AUTHORISED
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            buffer = io.BytesIO()
            dcmwrite(buffer, ds, enforce_file_format=True)
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types for bad datasets
            self._refuse(event, f"unreadable dataset: {exc}")
            return STATUS_CANNOT_UNDERSTAND
        _, problems = validate_dicom("instance", buffer.getvalue())
        if problems:
            self._refuse(event, "; ".join(problems))
            return STATUS_CANNOT_UNDERSTAND
        key = (
            str(getattr(ds, "PatientID", "")),
            str(getattr(ds, "StudyInstanceUID", "")),
            str(getattr(ds, "SeriesInstanceUID", "")),
        )
        self.pending[id(event.assoc)][key].append(buffer.getvalue())
        return STATUS_SUCCESS

    def handle_released(self, event) -> None:
        try:
            self._store(event)
        finally:
            # pynetdicom runs each association in its own thread, and Django opens one
            # database connection per thread: close it, or every association leaks one.
            connections.close_all()

    def _store(self, event) -> None:
        batches = self.pending.pop(id(event.assoc), {})
        sender = event.assoc.requestor.ae_title
        for (patient_id, study_uid, _series_uid), items in batches.items():
            files = [SimpleUploadedFile(f"{i}.dcm", data) for i, data in enumerate(items)]
            try:
                # One transaction: a refused first series leaves no empty case behind.
                with transaction.atomic():
                    case = case_for(self.institution, patient_id, study_uid)
                    series = ingest_files(case, files, None, description=f"received from {sender}")
                logger.info(
                    "stored %d instances as series %s of case %s",
                    len(items),
                    series.pk,
                    case.subject_code,
                )
            except Exception as exc:  # noqa: BLE001 - a lost series must leave a trace
                # IngestError: refused input. Anything else (a race on the subject code, a
                # storage outage) must not vanish silently either: log and audit it.
                level = logging.WARNING if isinstance(exc, IngestError) else logging.ERROR
                logger.log(
                    level,
                    "refused a series from %s: %s",
                    sender,
                    exc,
                    exc_info=not isinstance(exc, IngestError),
                )
                record(
                    None,
                    "case.receive_refused",
                    details={
                        "sender": sender,
                        "institution": self.institution.code,
                        "error": f"{type(exc).__name__}: {exc}"[:500],
                    },
                )

    def handle_aborted(self, event) -> None:
        self.pending.pop(id(event.assoc), None)

    def application_entity(self, ae_title: str = "RECONTRIAL") -> AE:
        ae = AE(ae_title=ae_title)
        if self.allowed_aets:
            ae.require_calling_aet = self.allowed_aets
        for context in ACCEPTED:
            ae.add_supported_context(context)
        ae.add_supported_context(Verification)
        return ae

    def handlers(self) -> list:
        return [
            (evt.EVT_C_STORE, self.handle_store),
            (evt.EVT_RELEASED, self.handle_released),
            (evt.EVT_ABORTED, self.handle_aborted),
        ]
