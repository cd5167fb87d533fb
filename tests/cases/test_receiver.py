"""The DICOM C-STORE receiver, driven over the network by pynetdicom's SCU: a released
association becomes a de-identified series of an automatically coded case; later sends of
the same patient and study join that case; an aborted association and non-MR objects
store nothing."""

from __future__ import annotations

import copy
import time

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, MRImageStorage

from mriplatform.audit.models import AuditEvent
from mriplatform.cases.models import Case, Instance, Series
from mriplatform.cases.receiver import Receiver
from tests.cases.test_deid import DATE, MARK, UID_MARK, marked_dataset
from tests.cases.test_deid_end_to_end import database_text, leaks
from tests.factories import InstitutionFactory

pytestmark = pytest.mark.django_db(transaction=True)

MARKERS = [MARK, UID_MARK, DATE]


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the receiver")


@pytest.fixture
def receiver(media_root):
    institution = InstitutionFactory(code="recv")
    receiver = Receiver(institution)
    ae = receiver.application_entity("RECONTRIAL")
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=receiver.handlers())
    receiver.port = server.server_address[1]
    yield receiver
    server.shutdown()


def mr_instances(n: int, series_uid: str | None = None) -> list[pydicom.Dataset]:
    base = marked_dataset()
    base.SeriesInstanceUID = series_uid or generate_uid(prefix=UID_MARK)
    out = []
    for number in range(1, n + 1):
        ds = copy.deepcopy(base)
        ds.SOPInstanceUID = generate_uid(prefix=UID_MARK)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = number
        out.append(ds)
    return out


def associate(receiver):
    scu = AE(ae_title="SCANNER1")
    scu.add_requested_context(MRImageStorage)
    scu.add_requested_context(CTImageStorage)
    assoc = scu.associate("127.0.0.1", receiver.port, ae_title="RECONTRIAL")
    assert assoc.is_established
    return assoc


def send(receiver, datasets, abort: bool = False) -> list[int]:
    assoc = associate(receiver)
    statuses = [assoc.send_c_store(ds).Status for ds in datasets]
    if abort:
        assoc.abort()
    else:
        assoc.release()
    return statuses


def test_released_association_becomes_a_deidentified_series(receiver):
    assert send(receiver, mr_instances(3)) == [0, 0, 0]
    wait_for(lambda: Series.objects.exists())
    case = Case.objects.get()
    assert case.institution == receiver.institution
    assert case.subject_code == "RECV-R00001" and case.source_key
    series = case.series.get()
    assert series.kind == Series.Kind.DICOM and series.n_slices == 3
    assert "SCANNER1" in series.description
    instances = list(series.instances.all())
    assert len(instances) == 3
    for instance in instances:
        with instance.file.open("rb") as fh:
            data = fh.read()
        assert leaks(data, MARKERS) == []
        assert str(pydicom.dcmread(instance.file.path).PatientID) == "RECV-R00001"
    assert leaks(database_text(), MARKERS) == []
    assert receiver.pending == {}


def test_same_patient_and_study_land_in_the_same_case(receiver):
    first = mr_instances(2)
    send(receiver, first)
    wait_for(lambda: Series.objects.count() == 1)
    second = mr_instances(2)  # another series of the same patient and study
    send(receiver, second)
    wait_for(lambda: Series.objects.count() == 2)
    assert Case.objects.count() == 1
    assert len({s.series_instance_uid for s in Series.objects.all()}) == 2

    other_study = mr_instances(1)
    for ds in other_study:
        ds.StudyInstanceUID = generate_uid()
    send(receiver, other_study)
    wait_for(lambda: Series.objects.count() == 3)
    assert sorted(Case.objects.values_list("subject_code", flat=True)) == [
        "RECV-R00001",
        "RECV-R00002",
    ]


def test_aborted_association_stores_nothing(receiver, media_root):
    assert send(receiver, mr_instances(2), abort=True) == [0, 0]
    wait_for(lambda: receiver.pending == {})
    time.sleep(0.5)
    assert not Case.objects.exists() and not Series.objects.exists()
    assert not Instance.objects.exists()
    assert [p for p in media_root.rglob("*") if p.is_file()] == []


def test_non_mr_series_refused(receiver, media_root):
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assoc = associate(receiver)
    with pytest.raises(ValueError, match="No presentation context"):
        assoc.send_c_store(ct)
    assoc.release()
    # An MR image storage object whose modality says CT is refused before it is
    # acknowledged: the sender gets a failure status, not a success and a silent drop.
    fake = mr_instances(1)[0]
    fake.Modality = "CT"
    assert send(receiver, [fake]) == [0xC000]
    wait_for(lambda: receiver.pending == {})
    event = AuditEvent.objects.get(action="case.receive_refused")
    assert "modality is CT, not MR" in event.details["error"]
    assert event.details["sender"] == "SCANNER1"
    assert not Series.objects.exists()
    assert not Case.objects.exists()  # no empty case is left behind
    assert [p for p in media_root.rglob("*") if p.is_file()] == []


def test_senders_outside_the_allow_lists_are_refused(media_root):
    from pynetdicom import AE as SCU

    institution = InstitutionFactory(code="recv2")
    by_aet = Receiver(institution, allowed_aets=["PACS1"])
    server = by_aet.application_entity().start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=by_aet.handlers()
    )
    try:
        scu = SCU(ae_title="SCANNER1")
        scu.add_requested_context(MRImageStorage)
        assoc = scu.associate("127.0.0.1", server.server_address[1], ae_title="RECONTRIAL")
        assert assoc.is_rejected
    finally:
        server.shutdown()

    by_host = Receiver(institution, allowed_hosts=["10.1.2.3"])
    server = by_host.application_entity().start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=by_host.handlers()
    )
    by_host.port = server.server_address[1]
    try:
        assert send(by_host, mr_instances(2)) == [0x0124, 0x0124]
        wait_for(lambda: by_host.pending == {})
    finally:
        server.shutdown()
    event = AuditEvent.objects.filter(action="case.receive_refused").first()
    assert "not on the receiver's allow-list" in event.details["error"]
    assert event.details["address"] == "127.0.0.1"
    assert not Series.objects.exists() and not Case.objects.exists()
