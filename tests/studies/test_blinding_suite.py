"""Blinding acceptance suite: a reader tries to learn the arm behind a read from everything
the server sends them (HTML, JSON, DICOM attributes including private tags, response
headers, redirects, URLs, the order of reads and of images) and finds nothing.

The study's two arms are made as revealing as possible: distinctive protocol names and
methods, arm labels, and reconstruction DICOM carrying series descriptions, protocol
names, software versions, derivation text, comments, station and institution names,
private tags, real dates, and the original UIDs and file names.
"""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pydicom
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import NoReverseMatch, reverse

from mriplatform.cases.models import Series
from studies.models import Question, ReadingSession, ReadItem, ReferenceStandard
from studies.services import image_set, open_study
from tests.factories import ArmFactory, ProtocolFactory, StudyCaseFactory, StudyFactory
from tests.studies.conftest import T0
from tests.studies.imaging import imaged_reconstruction

pytestmark = pytest.mark.django_db

ARMS = {
    # arm label -> (protocol name, method, revealing DICOM text)
    "ARMVARNET": ("VarNet R4", "zero_filled", "VarNet-2.1 deep learning"),
    "ARMCSWAVE": ("CS Wavelet R4", "cg_sense", "Compressed sensing wavelet l1"),
}
SOURCE_DATE = "20240317"


def _make_revealing(series: Series, arm_label: str, protocol) -> set[str]:
    """Rewrite every stored instance of ``series`` with arm-revealing attributes and a
    private block; returns the strings (UIDs, file names, texts) that must never leak."""
    name, method, text = ARMS[arm_label]
    secrets = {name, method, text, arm_label, str(series.uuid), series.description}
    for inst in series.instances.all():
        with inst.file.open("rb") as fh:
            ds = pydicom.dcmread(fh)
        ds.SeriesDescription = f"{name} {arm_label}"
        ds.ProtocolName = f"{name} protocol"
        ds.SoftwareVersions = text
        ds.DerivationDescription = f"method={method}; {text}"
        ds.ImageComments = f"reconstructed by {name}"
        ds.StationName = "RECONSTATION7"
        ds.InstitutionName = "Sentinel Hospital Recon Lab"
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = SOURCE_DATE
        ds.StudyDescription = f"{name} study"
        block = ds.private_block(0x0011, "RECONTRIAL_ARM", create=True)
        block.add_new(0x01, "LO", f"arm={arm_label}")
        block.add_new(0x02, "LO", f"method={method}")
        secrets |= {
            str(ds.SOPInstanceUID),
            str(ds.SeriesInstanceUID),
            str(ds.StudyInstanceUID),
            str(ds.FrameOfReferenceUID),
            "RECONSTATION7",
            "Sentinel Hospital",
            "RECONTRIAL_ARM",
            inst.file.name.rsplit("/", 1)[-1].removesuffix(".dcm") + ".dcm",
        }
        out = io.BytesIO()
        ds.save_as(out)
        default_storage.delete(inst.file.name)
        default_storage.save(inst.file.name, ContentFile(out.getvalue()))
    secrets.add(SOURCE_DATE)
    return secrets


@pytest.fixture
def revealing_study(make_user):
    """An open study (2 cases x 2 revealing arms, 2 readers, paired reads, 50 % repeats)."""
    from studies.services import add_reader
    from tests.factories import SeriesFactory

    study = StudyFactory(title="Knee reader study", paired_reads=True, repeat_fraction=0.5)
    secrets: set[str] = set()
    arms = []
    for label, (name, method, _) in ARMS.items():
        protocol = ProtocolFactory(name=name, method=method)
        arms.append(ArmFactory(study=study, label=label, protocol=protocol))
    cases = [StudyCaseFactory(study=study) for _ in range(2)]
    for sc in cases:
        raw = SeriesFactory(case=sc.case)
        secrets.add(sc.case.subject_code)
        for arm in arms:
            job = imaged_reconstruction(raw, arm.protocol, n_slices=3, size=32)
            secrets |= _make_revealing(job.output_series, arm.label, arm.protocol)
    Question.objects.create(study=study, key="quality", kind="likert", label="Quality")
    Question.objects.create(
        study=study, key="pref", kind="preference", label="Which image is better?"
    )
    readers = [make_user("reader", institution=study.institution) for _ in range(2)]
    for reader in readers:
        add_reader(study, reader, actor=study.coordinator)
    open_study(study, study.coordinator, now=T0)
    # Every session available now, so the reader can fetch everything they will ever see.
    ReadingSession.objects.filter(study=study).update(available_from=T0)
    study.refresh_from_db()
    return study, arms, cases, readers, {s for s in secrets if len(s) >= 4}


def _check_text(text: str, secrets: set[str], where: str) -> None:
    lowered = text.lower()
    for secret in secrets:
        assert secret.lower() not in lowered, f"{secret!r} leaked in {where}"


def _check_headers(response, secrets: set[str], where: str) -> None:
    for header, value in response.items():
        _check_text(f"{header}: {value}", secrets, f"{where} header {header}")
    assert "filename" not in response.get("Content-Disposition", "")


def _harvest(client: Client, item: ReadItem, secrets: set[str]) -> list[pydicom.Dataset]:
    """Fetch, as the reader, everything of one read; check it; return the DICOM served."""
    page = client.get(reverse("reading:read", args=[item.alias]))
    assert page.status_code == 200
    html = page.content.decode()
    _check_text(html, secrets, f"reading page {item.alias}")
    _check_headers(page, secrets, "reading page")
    answers = client.get(reverse("reading:answers", args=[item.alias]))
    _check_text(answers.content.decode(), secrets, "answers JSON")
    config = json.loads(
        re.search(r'id="reading-config" type="application/json">(.*?)</script>', html).group(1)
    )
    served = []
    prefetch = [image_id for side in config["prefetch"] for image_id in side]
    slices = [
        (i.removeprefix("wadouri:"), r"/read/i/([A-Za-z0-9_-]{22})/\d+/")
        for i in config["imageIds"] + config["secondImageIds"] + prefetch
    ]
    whole = [
        (u, r"/read/s/([A-Za-z0-9_-]{22})/") for u in config["series"] + config["prefetchSeries"]
    ]
    datasets = []
    for url, pattern in slices + whole:
        assert re.fullmatch(pattern, url), url
        assert item.alias not in url and (item.second_alias or "-" * 40) not in url
        response = client.get(url)
        assert response.status_code == 200
        _check_headers(response, secrets, "image")
        body = response.getvalue()
        _check_text(body.decode("latin-1"), secrets, f"DICOM bytes {url}")
        if "/read/s/" in url:
            datasets += _multipart_parts(response["Content-Type"], body)
        else:
            datasets.append(body)
    for data in datasets:
        ds = pydicom.dcmread(io.BytesIO(data))
        for element in ds.iterall():
            assert not element.tag.is_private, f"private tag {element.tag} served"
            if element.tag != 0x7FE00010:
                _check_text(str(element.value), secrets, f"DICOM {element.keyword}")
        for element in ds.file_meta:
            _check_text(str(element.value), secrets, "DICOM file meta")
        served.append(ds)
    return served


def _multipart_parts(content_type: str, body: bytes) -> list[bytes]:
    """The bodies of a multipart/related response (standard library MIME parser)."""
    import email.parser
    import email.policy

    raw = f"Content-Type: {content_type}\r\n\r\n".encode() + body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    return [part.get_payload(decode=True) for part in message.iter_parts()]


def _header(ds: pydicom.Dataset) -> dict:
    """The served header minus what is per alias (UIDs) or per image (window, pixels)."""
    skip = {
        "PixelData",
        "WindowCenter",
        "WindowWidth",
        "SOPInstanceUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "FrameOfReferenceUID",
    }
    return {e.keyword: str(e.value) for e in ds if e.keyword not in skip}


def test_nothing_the_reader_receives_reveals_the_arm(revealing_study):
    study, arms, _, (reader, _), secrets = revealing_study
    client = Client()
    client.force_login(reader)
    worklist = client.get(reverse("reading:worklist"))
    _check_text(worklist.content.decode(), secrets, "worklist")
    _check_headers(worklist, secrets, "worklist")

    headers_by_arm: dict[int, list[dict]] = {arm.pk: [] for arm in arms}
    sizes_by_arm: dict[int, set] = {arm.pk: set() for arm in arms}
    items = ReadItem.objects.filter(reader=reader).select_related("session__study")
    assert {i.kind for i in items} == {"independent", "repeat", "paired"}
    for item in items:
        served = _harvest(client, item, secrets)
        n_own = image_set(item.study_case, item.arm).instances.count()
        for ds in served[:n_own]:
            headers_by_arm[item.arm_id].append(_header(ds))
            sizes_by_arm[item.arm_id].add(len(ds.PixelData))
        # Submitting answers in JSON; the reply (next URL) carries only aliases.
        value = "left" if item.second_arm_id else 3
        key = "pref" if item.second_arm_id else "quality"
        saved = client.post(
            reverse("reading:answers", args=[item.alias]),
            json.dumps({"answers": [{"question": key, "value": value}]}),
            content_type="application/json",
        )
        _check_text(saved.content.decode(), secrets, "autosave reply")
        submitted = client.post(reverse("reading:submit", args=[item.alias]))
        assert submitted.status_code == 200
        _check_text(submitted.content.decode(), secrets, "submit reply")

    # The same display header (same keywords, same values) whatever the arm, slice by slice
    # (InstanceNumber, position) and the same pixel-data size.
    a, b = (headers_by_arm[arm.pk] for arm in arms)
    assert {json.dumps(h, sort_keys=True) for h in a} == {json.dumps(h, sort_keys=True) for h in b}
    assert sizes_by_arm[arms[0].pk] == sizes_by_arm[arms[1].pk]
    assert all(float(h["RescaleSlope"]) == 1 and float(h["RescaleIntercept"]) == 0 for h in a + b)


def test_aliases_and_image_urls_are_unique_per_read_and_reader(revealing_study, client):
    study, _, _, readers, _ = revealing_study
    items = list(ReadItem.objects.filter(session__study=study))
    aliases = [i.alias for i in items] + [i.second_alias for i in items if i.second_alias]
    assert len(aliases) == len(set(aliases))
    urls_by_reader = []
    for reader in readers:
        client.force_login(reader)
        urls = set()
        for item in ReadItem.objects.filter(reader=reader):
            config = client.get(reverse("reading:read", args=[item.alias])).context["config"]
            urls |= set(config["imageIds"]) | set(config["secondImageIds"])
        urls_by_reader.append(urls)
    assert not urls_by_reader[0] & urls_by_reader[1]
    # Within one reader, the first read and its repeat of (case, arm) get different URLs.
    repeat = ReadItem.objects.filter(session__study=study, kind="repeat").first()
    original = ReadItem.objects.get(
        reader=repeat.reader, study_case=repeat.study_case, arm=repeat.arm, kind="independent"
    )
    client.force_login(repeat.reader)
    first = client.get(reverse("reading:read", args=[original.alias])).context["config"]
    again = client.get(reverse("reading:read", args=[repeat.alias])).context["config"]
    assert not set(first["imageIds"]) & set(again["imageIds"])


def test_reading_order_is_not_grouped_by_arm(build_study):
    """With 8 cases and 2 arms, a session's reads come in a seeded uniformly random order:
    arms are balanced, grouped orders (all of one arm first) are as rare as chance makes
    them (2 of the 70 arm sequences) rather than the rule, and the readers' orders differ.

    The order depends on the reader's pk, so the grouping rate is checked over 200 reader
    pks (independent of which pks this test run happens to create)."""
    from studies.services import reading_plan

    study, arms, _, readers = build_study(n_cases=8, n_arms=2, n_readers=2)
    study.seed = 20260105
    study.save(update_fields=["seed"])
    open_study(study, study.coordinator, now=T0)
    grouped = total = 0
    for reader_pk in range(1, 201):
        for session in reading_plan(study, reader_pk):
            sequence = [arm for _, arm, _, _, _ in session["reads"]]
            if session["kind"] != ReadingSession.Kind.INDEPENDENT:
                continue
            switches = sum(1 for x, y in zip(sequence, sequence[1:], strict=False) if x != y)
            grouped += switches < 2
            total += 1
            assert sequence.count(arms[0].pk) == sequence.count(arms[1].pk) == 4
    assert grouped / total < 0.1, (grouped, total)
    orders = []
    for reader in readers:
        for session in ReadingSession.objects.filter(study=study, reader=reader):
            sequence = list(session.items.order_by("order_index").values_list("arm_id", flat=True))
            assert sequence.count(arms[0].pk) == sequence.count(arms[1].pk) == 4
        orders.append(
            list(
                ReadItem.objects.filter(reader=reader, session__index=0)
                .order_by("order_index")
                .values_list("study_case_id", "arm_id")
            )
        )
    assert orders[0] != orders[1]


def test_image_order_within_a_read_is_anatomical_for_every_arm(revealing_study, client):
    """Images arrive in the same order (slice 1..n, positions increasing) for every arm."""
    study, _, _, (reader, _), _ = revealing_study
    client.force_login(reader)
    for item in ReadItem.objects.filter(reader=reader, kind="independent"):
        config = client.get(reverse("reading:read", args=[item.alias])).context["config"]
        served = [
            pydicom.dcmread(io.BytesIO(client.get(u.removeprefix("wadouri:")).content))
            for u in config["imageIds"]
        ]
        assert [int(d.InstanceNumber) for d in served] == list(range(1, len(served) + 1))
        z = [float(np.dot(d.ImagePositionPatient, [0, 0, 1])) for d in served]
        assert z == sorted(z)


def _reverse(name: str, *args) -> str | None:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


def test_reader_is_refused_other_reads_and_every_study_page(revealing_study, client):
    study, _, cases, (reader, other), secrets = revealing_study
    theirs = ReadItem.objects.filter(reader=other).first()
    client.force_login(other)
    config = client.get(reverse("reading:read", args=[theirs.alias])).context["config"]
    their_image = config["imageIds"][0].removeprefix("wadouri:")
    ReferenceStandard.objects.create(
        study_case=cases[0],
        question="quality",
        value=4,
        source="import",
        entered_by=study.coordinator,
    )

    client.force_login(reader)
    for url in (
        reverse("reading:read", args=[theirs.alias]),
        reverse("reading:answers", args=[theirs.alias]),
        their_image,
    ):
        assert client.get(url).status_code == 404, url
    assert client.post(reverse("reading:submit", args=[theirs.alias])).status_code == 404
    assert client.post(reverse("reading:finish", args=[theirs.alias])).status_code == 404

    pk, case_pk = study.pk, cases[0].pk
    refused = [
        _reverse("studies:detail", pk),
        _reverse("studies:edit", pk),
        _reverse("studies:reference", pk),
        _reverse("studies:reference_import", pk),
        _reverse("studies:reference_template", pk),
        _reverse("studies:reference_read", pk, case_pk),
        _reverse("studies:reference_consensus", pk, case_pk),
        _reverse("studies:adjudicate", pk),
        _reverse("studies:analysis-index"),
        _reverse("studies:analysis-study", pk),
        _reverse("api:study-reads", pk),
        _reverse("api:study-reads-csv", pk),
        _reverse("api:job-list"),
        _reverse("api:series-list"),
        _reverse("api:protocol-list"),
        "/cases/",
        "/jobs/",
        "/protocols/",
    ]
    for url in filter(None, refused):
        response = client.get(url)
        assert response.status_code in (403, 404), f"{url} answered {response.status_code}"
    for url in filter(None, [_reverse("studies:close", pk), _reverse("studies:open", pk)]):
        response = client.post(url, {"reason": "reader tries"})
        assert response.status_code in (403, 404), f"POST {url} answered {response.status_code}"
    study.refresh_from_db()
    assert study.status == study.Status.OPEN
    # Listing pages a reader may open show nothing of the study's design.
    for url in filter(None, [_reverse("studies:list"), _reverse("studies:reference_list")]):
        response = client.get(url)
        assert response.status_code in (200, 403, 404)
        _check_text(response.content.decode(), secrets, url)
        assert reverse("studies:detail", args=[pk]) not in response.content.decode()


def test_finished_session_reads_and_images_are_out_of_reach(revealing_study, client):
    """After a reader finishes session 1 and session 2 is released, the old aliases and
    image tokens (slices and whole series) answer 404 (independence of the later reads)."""
    from studies.questions import questions_for
    from studies.services import finish_session, release_session, save_answer, submit_read

    study, _, _, (reader, _), _ = revealing_study
    first = ReadingSession.objects.get(study=study, reader=reader, index=0)
    ReadingSession.objects.filter(study=study, reader=reader, index__gt=0).update(
        available_from=None
    )
    client.force_login(reader)
    old = []
    for item in first.items.order_by("order_index"):
        config = client.get(reverse("reading:read", args=[item.alias])).context["config"]
        old.append((item, config["imageIds"] + config["secondImageIds"] + config["series"]))
        for question in questions_for(item):
            value = 3 if question.kind == "likert" else "equal"
            save_answer(item, question.key, value, None, reader)
        submit_read(item, reader)
    finish_session(first, reader)
    following = ReadingSession.objects.get(study=study, reader=reader, index=1)
    release_session(following, study.coordinator, reason="blinding suite")
    assert client.get(reverse("reading:worklist")).status_code == 200
    for item, image_urls in old:
        assert client.get(reverse("reading:read", args=[item.alias])).status_code == 404
        assert client.get(reverse("reading:answers", args=[item.alias])).status_code == 404
        assert client.post(reverse("reading:submit", args=[item.alias])).status_code == 404
        for url in image_urls:
            assert client.get(url.removeprefix("wadouri:")).status_code == 404
    new = following.items.order_by("order_index").first()
    assert client.get(reverse("reading:read", args=[new.alias])).status_code == 200
