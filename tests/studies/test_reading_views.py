"""The reader's pages: worklist, reading page, autosave/resume, idempotent submit, session
finishing, and the blinded image endpoint (normalised pixels, anatomical order, access)."""

from __future__ import annotations

import io
import json
import uuid

import numpy as np
import pydicom
import pytest
from django.urls import reverse

from mriplatform.cases.models import Series
from studies.models import Answer, AnswerHistory, Question, ReadingSession, ReadItem
from studies.services import open_study
from tests.studies.conftest import T0
from tests.studies.imaging import imaged_reconstruction

pytestmark = pytest.mark.django_db


@pytest.fixture
def imaged_study(build_study):
    """An open 2-case, 2-arm, 2-reader study with real DICOM image sets and questions."""

    def build(**study_kwargs):
        study, arms, cases, readers = build_study(
            n_cases=2, n_arms=2, n_readers=2, reconstruct=False, **study_kwargs
        )
        for sc in cases:
            raw = Series.objects.get(case=sc.case, kind="fastmri_h5")
            for arm in arms:
                imaged_reconstruction(raw, arm.protocol, n_slices=3, size=32)
        Question.objects.create(
            study=study,
            key="quality",
            kind="likert",
            label="Overall quality",
            scale_min=1,
            scale_max=5,
            anchors={"1": "non-diagnostic", "5": "excellent"},
        )
        Question.objects.create(
            study=study,
            key="effusion",
            kind="finding",
            label="Joint effusion",
            choices=["absent", "present"],
            with_confidence=True,
        )
        Question.objects.create(
            study=study, key="snr_roi", kind="roi", label="Muscle ROI", required=False
        )
        open_study(study, study.coordinator, now=T0)
        study.refresh_from_db()
        return study, arms, cases, readers

    return build


def first_session(study, reader):
    return ReadingSession.objects.get(study=study, reader=reader, index=0)


def answer_all(client, item):
    body = {
        "answers": [
            {"question": "quality", "value": 4},
            {"question": "effusion", "value": "present", "confidence": 3},
        ]
    }
    return client.post(
        reverse("reading:answers", args=[item.alias]),
        json.dumps(body),
        content_type="application/json",
    )


def test_worklist_shows_sessions_progress_and_start_link(client, imaged_study):
    study, arms, _, (reader, _) = imaged_study()
    client.force_login(reader)
    response = client.get(reverse("reading:worklist"))
    assert response.status_code == 200
    html = response.content.decode()
    first = first_session(study, reader).items.order_by("order_index").first()
    assert reverse("reading:read", args=[first.alias]) in html
    assert "Session 1" in html and "Session 2" in html and "0 / 2" in html
    for arm in arms:
        assert arm.protocol.name not in html
    coordinator = study.coordinator
    client.force_login(coordinator)
    assert client.get(reverse("reading:worklist")).status_code == 403


def test_reading_page_renders_form_and_starts_the_read(client, imaged_study):
    study, _, _, (reader, other) = imaged_study()
    item = first_session(study, reader).items.order_by("order_index").first()
    client.force_login(reader)
    response = client.get(reverse("reading:read", args=[item.alias]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Case 1 of 2" in html and "non-diagnostic" in html and "Joint effusion" in html
    config = response.context["config"]
    assert len(config["imageIds"]) == 3 and config["secondImageIds"] == []
    assert [len(side) for side in config["prefetch"]] == [3] and len(config["prefetchSeries"]) == 1
    item.refresh_from_db()
    assert item.started_at is not None
    # Someone else's read, and a read of a session still in washout, are 404.
    client.force_login(other)
    assert client.get(reverse("reading:read", args=[item.alias])).status_code == 404
    later = ReadItem.objects.filter(session__study=study, reader=reader, session__index=1).first()
    client.force_login(reader)
    assert client.get(reverse("reading:read", args=[later.alias])).status_code == 404


def test_autosave_resume_and_errors(client, imaged_study):
    study, _, _, (reader, other) = imaged_study()
    item = first_session(study, reader).items.order_by("order_index").first()
    url = reverse("reading:answers", args=[item.alias])
    client.force_login(reader)
    assert answer_all(client, item).status_code == 200
    roi = {
        "type": "ellipse",
        "mean": 101.5,
        "sd": 4.2,
        "area_mm2": 30.0,
        "pixel_count": 30,
        "uid": "m1",
        "viewport": 0,
        "slice_index": 1,
        "points": [[10, 12], [10, 4], [6, 8], [14, 8]],
    }
    response = client.post(
        url,
        json.dumps({"answers": [{"question": "snr_roi", "value": roi}]}),
        content_type="application/json",
    )
    assert response.status_code == 200
    saved = {a["question"]: a for a in client.get(url).json()["answers"]}
    assert saved["quality"]["value"] == 4
    assert (saved["effusion"]["value"], saved["effusion"]["confidence"]) == ("present", 3)
    assert saved["snr_roi"]["value"]["mean"] == 101.5
    assert saved["snr_roi"]["value"]["points"][0] == [10.0, 12.0]

    bad = client.post(
        url,
        json.dumps({"answers": [{"question": "quality", "value": 9}]}),
        content_type="application/json",
    )
    assert bad.status_code == 400 and "between 1 and 5" in bad.json()["error"]
    assert client.post(url, "not json", content_type="application/json").status_code == 400
    unknown = client.post(
        url,
        json.dumps({"answers": [{"question": "nope", "value": 1}]}),
        content_type="application/json",
    )
    assert unknown.status_code == 400
    # All or nothing: a bad row in a batch leaves the stored value as it was.
    mixed = {"answers": [{"question": "quality", "value": 2}, {"question": "quality", "value": 0}]}
    assert client.post(url, json.dumps(mixed), content_type="application/json").status_code == 400
    assert Answer.objects.get(read_item=item, question="quality").value == 4

    client.force_login(other)
    assert client.get(url).status_code == 404
    assert answer_all(client, item).status_code == 404


def test_submit_is_idempotent_and_finishes_the_session(client, imaged_study):
    study, _, _, (reader, _) = imaged_study()
    session = first_session(study, reader)
    first, second = session.items.order_by("order_index")
    client.force_login(reader)
    refused = client.post(reverse("reading:submit", args=[first.alias]))
    assert refused.status_code == 409 and "Overall quality" in refused.json()["error"]

    answer_all(client, first)
    response = client.post(reverse("reading:submit", args=[first.alias]))
    assert response.status_code == 200
    assert response.json()["next_url"] == reverse("reading:read", args=[second.alias])
    again = client.post(reverse("reading:submit", args=[first.alias]))
    assert again.json() == response.json()
    first.refresh_from_db()
    submitted_at = first.submitted_at
    assert first.time_on_case_s is not None and first.time_on_case_s >= 0
    late = answer_all(client, first)
    assert late.status_code == 409
    assert AnswerHistory.objects.filter(answer__read_item=first).count() == 2

    answer_all(client, second)
    last = client.post(reverse("reading:submit", args=[second.alias]))
    assert last.json() == {
        "submitted": True,
        "next_url": reverse("reading:worklist"),
        "finished": True,
    }
    session.refresh_from_db()
    assert session.completed_at is not None
    first.refresh_from_db()
    assert first.submitted_at == submitted_at
    # The finished session is no longer offered; the next waits for its washout.
    html = client.get(reverse("reading:worklist")).content.decode()
    assert "finished" in html and "washout" in html


def test_edit_until_session_end_then_finish_button(client, imaged_study):
    study, _, _, (reader, _) = imaged_study(allow_edit_until_session_end=True)
    session = first_session(study, reader)
    items = list(session.items.order_by("order_index"))
    client.force_login(reader)
    for item in items:
        answer_all(client, item)
        assert client.post(reverse("reading:submit", args=[item.alias])).status_code == 200
    session.refresh_from_db()
    assert session.completed_at is None
    changed = client.post(
        reverse("reading:answers", args=[items[0].alias]),
        json.dumps({"answers": [{"question": "quality", "value": 2}]}),
        content_type="application/json",
    )
    assert changed.status_code == 200
    page = client.get(reverse("reading:read", args=[items[0].alias]))
    assert b"finish-form" in page.content
    worklist = client.get(reverse("reading:worklist")).content.decode()
    assert (
        reverse("reading:finish", args=[items[0].alias]) in worklist
        or reverse("reading:finish", args=[items[1].alias]) in worklist
    )
    response = client.post(reverse("reading:finish", args=[items[0].alias]))
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.completed_at is not None
    # The session is over: its reads are out of reach (as any unknown read).
    assert answer_all(client, items[0]).status_code == 404


def test_posts_need_the_csrf_token(imaged_study):
    from django.test import Client

    study, _, _, (reader, _) = imaged_study()
    item = first_session(study, reader).items.first()
    client = Client(enforce_csrf_checks=True)
    client.force_login(reader)
    assert answer_all(client, item).status_code == 403
    assert client.post(reverse("reading:submit", args=[item.alias])).status_code == 403


def _fetch_images(client, urls):
    out = []
    for url in urls:
        response = client.get(url.removeprefix("wadouri:"))
        assert response.status_code == 200
        assert response["Content-Type"] == "application/dicom"
        assert "private" in response["Cache-Control"]
        assert not response.has_header("Content-Disposition")
        out.append(pydicom.dcmread(io.BytesIO(response.content)))
    return out


def _display_values(values: list[np.ndarray]) -> list[np.ndarray]:
    """Independent reference of the display normalisation (studies.display docstring): one
    factor per image set putting the 99.5th percentile (numpy's linear interpolation) of the
    non-negative modality values at 3000, rounded, clipped to uint16."""
    clipped = [np.maximum(v, 0) for v in values]
    p995 = np.percentile(np.stack(clipped), 99.5)
    return [np.clip(np.round(v * (3000.0 / p995)), 0, 65535) for v in clipped]


def test_images_are_normalised_in_anatomical_order_and_private(client, imaged_study):
    study, _, _, (reader, other) = imaged_study()
    item = first_session(study, reader).items.order_by("order_index").first()
    client.force_login(reader)
    config = client.get(reverse("reading:read", args=[item.alias])).context["config"]
    served = _fetch_images(client, config["imageIds"])
    from studies.services import image_set

    source = [
        pydicom.dcmread(i.file.open("rb"))
        for i in image_set(item.study_case, item.arm).instances.all()
    ]
    normal = np.cross(source[0].ImageOrientationPatient[:3], source[0].ImageOrientationPatient[3:])
    source.sort(key=lambda ds: float(np.dot(ds.ImagePositionPatient, normal)))
    values = [ds.pixel_array * float(ds.RescaleSlope) for ds in source]
    for ds, expected in zip(served, _display_values(values), strict=True):
        assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, 0.0)
        np.testing.assert_array_equal(ds.pixel_array, expected)
    # MR-like units, not stretched to 16 bits: the 99.5th percentile sits at 3000.
    stacked = np.stack([ds.pixel_array for ds in served]).astype(float)
    assert abs(np.percentile(stacked, 99.5) - 3000) < 1.0
    assert stacked.max() < 3000 * 1.5
    assert [int(ds.InstanceNumber) for ds in served] == [1, 2, 3]
    # Another reader cannot fetch them; unknown tokens are 404 as well.
    client.force_login(other)
    assert client.get(config["imageIds"][0].removeprefix("wadouri:")).status_code == 404
    assert client.get(config["series"][0]).status_code == 404
    assert client.get(reverse("reading:image", args=["A" * 22, 0])).status_code == 404
    assert client.get(reverse("reading:series", args=["A" * 22])).status_code == 404


def _multipart_instances(response) -> list[pydicom.Dataset]:
    """The DICOM instances of a multipart/related response, parsed with the standard
    library's MIME parser (RFC 2046), independently of the server's offsets."""
    import email.parser
    import email.policy

    content_type = response["Content-Type"]
    body = response.getvalue()
    assert int(response["Content-Length"]) == len(body)
    raw = f"Content-Type: {content_type}\r\n\r\n".encode() + body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    assert message.is_multipart() and message.get_content_type() == "multipart/related"
    assert message.get_param("type") == "application/dicom"
    parts = list(message.iter_parts())
    assert all(part.get_content_type() == "application/dicom" for part in parts)
    return [pydicom.dcmread(io.BytesIO(part.get_payload(decode=True))) for part in parts]


def test_whole_series_in_one_response_equals_the_slices(client, imaged_study):
    """One request returns the image set (DICOMweb-style multipart/related) with exactly the
    instances the per-slice URLs serve; caching headers suit immutable private content and
    a revalidation answers 304."""
    study, _, _, (reader, _) = imaged_study()
    item = first_session(study, reader).items.order_by("order_index").first()
    client.force_login(reader)
    config = client.get(reverse("reading:read", args=[item.alias])).context["config"]
    response = client.get(config["series"][0])
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, max-age=3600, immutable"
    assert not response.has_header("Content-Disposition")
    whole = _multipart_instances(response)
    slices = _fetch_images(client, config["imageIds"])
    assert len(whole) == len(slices) == 3
    for a, b in zip(whole, slices, strict=True):
        assert a.SOPInstanceUID == b.SOPInstanceUID
        np.testing.assert_array_equal(a.pixel_array, b.pixel_array)
    again = client.get(config["series"][0], HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304 and again["ETag"] == response["ETag"]
    # The next case's image set is announced for prefetching, and it loads too.
    assert len(config["prefetchSeries"]) == 1
    assert len(_multipart_instances(client.get(config["prefetchSeries"][0]))) == 3


def test_a_series_is_blinded_once_and_each_reader_gets_own_uids(client, imaged_study):
    """Two readers of the same series share one stored blinded copy (built once) but get
    different UIDs and ETags; pixel data are identical."""
    from studies.models import BlindedSeries

    study, _, _, readers = imaged_study()
    ReadingSession.objects.filter(study=study).update(available_from=T0)
    first = ReadItem.objects.filter(reader=readers[0], second_arm=None).first()
    same = ReadItem.objects.filter(
        reader=readers[1], image_series=first.image_series, second_arm=None
    ).first()
    fetched = []
    for reader, item in zip(readers, (first, same), strict=True):
        client.force_login(reader)
        config = client.get(reverse("reading:read", args=[item.alias])).context["config"]
        response = client.get(config["series"][0])
        fetched.append((response["ETag"], _multipart_instances(response)))
    assert BlindedSeries.objects.count() == 1
    (tag_a, a), (tag_b, b) = fetched
    assert tag_a != tag_b
    for x, y in zip(a, b, strict=True):
        for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
            assert x.get(keyword) != y.get(keyword)
            assert len(str(x.get(keyword))) == 44
        np.testing.assert_array_equal(x.pixel_array, y.pixel_array)


def test_image_order_follows_anatomy_not_instance_numbers(client, imaged_study, tmp_path):
    """Instances stored with reversed InstanceNumbers are still served foot to head."""
    study, _, _, (reader, _) = imaged_study()
    item = first_session(study, reader).items.order_by("order_index").first()
    from studies.services import image_set

    series = image_set(item.study_case, item.arm)
    instances = list(series.instances.order_by("instance_number"))
    for inst, number in zip(instances, (3, 2, 1), strict=True):
        inst.instance_number = number
        inst.save(update_fields=["instance_number"])
    client.force_login(reader)
    config = client.get(reverse("reading:read", args=[item.alias])).context["config"]
    served = _fetch_images(client, config["imageIds"])
    sources = [pydicom.dcmread(i.file.open("rb")) for i in instances]
    for ds, src in zip(served, sources, strict=True):
        assert np.corrcoef(ds.pixel_array.ravel(), src.pixel_array.ravel())[0, 1] > 0.999


def test_tokens_are_resolved_from_the_database_not_process_memory(client, imaged_study):
    """A process that never rendered the page (another gunicorn worker) knows the tokens:
    they live in the database (ImageSet), resolved with a bounded number of queries; another
    reader's token stays unknown."""
    from studies.models import ImageSet

    study, _, _, (reader, other) = imaged_study()
    item = first_session(study, reader).items.order_by("order_index").first()
    client.force_login(reader)
    config = client.get(reverse("reading:read", args=[item.alias])).context["config"]
    token = config["series"][0].rstrip("/").rsplit("/", 1)[-1]
    stored = ImageSet.objects.get(token=token)
    assert (stored.read_item_id, stored.side, stored.series_id) == (
        item.pk,
        0,
        item.image_series_id,
    )
    assert len(_fetch_images(client, config["imageIds"])) == 3
    client.force_login(other)
    assert client.get(config["imageIds"][0].removeprefix("wadouri:")).status_code == 404


def _submit_session(client, session):
    for item in session.items.order_by("order_index"):
        assert answer_all(client, item).status_code == 200
        assert client.post(reverse("reading:submit", args=[item.alias])).status_code == 200


def test_reads_of_a_finished_session_are_out_of_reach(client, imaged_study):
    """After finishing session 1 (and session 2 released), its pages, answers, submit and
    images answer 404."""
    from studies.services import release_session

    study, _, _, (reader, _) = imaged_study()
    session = first_session(study, reader)
    client.force_login(reader)
    item = session.items.order_by("order_index").first()
    image_ids = client.get(reverse("reading:read", args=[item.alias])).context["config"]["imageIds"]
    _submit_session(client, session)
    session.refresh_from_db()
    assert session.completed_at is not None
    following = ReadingSession.objects.get(study=study, reader=reader, index=1)
    release_session(following, study.coordinator, reason="test")
    for name in ("reading:read", "reading:answers"):
        assert client.get(reverse(name, args=[item.alias])).status_code == 404
    assert answer_all(client, item).status_code == 404
    assert client.post(reverse("reading:submit", args=[item.alias])).status_code == 404
    assert client.get(image_ids[0].removeprefix("wadouri:")).status_code == 404
    assert Answer.objects.filter(read_item=item).count() == 2  # nothing stored was lost


def test_images_come_from_the_series_pinned_when_the_study_opened(client, imaged_study):
    """A second reconstruction of the same case and arm after opening changes nothing."""
    study, _, _, (reader, _) = imaged_study()
    item = first_session(study, reader).items.order_by("order_index").first()
    pinned = item.image_series
    assert pinned is not None
    raw = Series.objects.get(case=item.study_case.case, kind="fastmri_h5")
    raw.pk, raw.uuid = None, uuid.uuid4()  # a second raw acquisition of the same case
    raw.save()
    imaged_reconstruction(raw, item.arm.protocol, n_slices=5, size=40)
    client.force_login(reader)
    page = client.get(reverse("reading:read", args=[item.alias]))
    assert page.status_code == 200 and b"images-missing" not in page.content
    served = _fetch_images(client, page.context["config"]["imageIds"])
    assert len(served) == pinned.instances.count() == 3
    assert served[0].pixel_array.shape == (32, 32)
    answer_all(client, item)
    assert client.post(reverse("reading:submit", args=[item.alias])).status_code == 200


def test_a_read_without_images_cannot_be_submitted(client, imaged_study):
    study, _, _, (reader, _) = imaged_study()
    item = first_session(study, reader).items.order_by("order_index").first()
    item.image_series.instances.all().delete()
    client.force_login(reader)
    page = client.get(reverse("reading:read", args=[item.alias]))
    assert page.status_code == 200
    assert b'id="images-missing"' in page.content
    assert answer_all(client, item).status_code == 200
    response = client.post(reverse("reading:submit", args=[item.alias]))
    assert response.status_code == 409
    assert "images" in response.json()["error"]
    item.refresh_from_db()
    assert item.submitted_at is None


def test_negative_values_are_clipped_so_zero_signal_is_black_in_every_arm(client, imaged_study):
    """An arm whose values dip below zero (a network's undershoot) stores zero signal as 0,
    like an arm without negatives; the rest is scaled as every image set is."""
    study, _, _, (reader, _) = imaged_study()
    items = list(first_session(study, reader).items.order_by("order_index"))
    item = next(i for i in items if i.study_case_id == items[0].study_case_id)
    shifted = item.image_series
    for inst in shifted.instances.all():
        with inst.file.open("rb") as fh:
            ds = pydicom.dcmread(fh)
        slope = float(ds.RescaleSlope)
        ds.RescaleIntercept = -1000 * slope  # stored 0..1000 become <= 0
        out = io.BytesIO()
        ds.save_as(out)
        with inst.file.open("wb") as fh:
            fh.write(out.getvalue())
    client.force_login(reader)
    config = client.get(reverse("reading:read", args=[item.alias])).context["config"]
    served = _fetch_images(client, config["imageIds"])
    sources = [pydicom.dcmread(i.file.open("rb")) for i in shifted.instances.all()]
    values = [s.pixel_array * float(s.RescaleSlope) + float(s.RescaleIntercept) for s in sources]
    assert min(float(v.min()) for v in values) < 0
    served_sorted = sorted(served, key=lambda d: float(d.pixel_array.sum()))
    expected_sorted = sorted(_display_values(values), key=lambda a: a.sum())
    for ds, expected in zip(served_sorted, expected_sorted, strict=True):
        np.testing.assert_array_equal(ds.pixel_array, expected)
    for ds, v in zip(
        served_sorted, sorted(values, key=lambda a: np.maximum(a, 0).sum()), strict=True
    ):
        assert (ds.pixel_array[v <= 0] == 0).all()


def test_required_answers_cannot_be_cleared_after_submit_and_block_finishing(client, imaged_study):
    study, _, _, (reader, _) = imaged_study(allow_edit_until_session_end=True)
    session = first_session(study, reader)
    client.force_login(reader)
    _submit_session(client, session)
    item = session.items.order_by("order_index").first()
    cleared = client.post(
        reverse("reading:answers", args=[item.alias]),
        json.dumps({"answers": [{"question": "quality", "value": None}]}),
        content_type="application/json",
    )
    assert cleared.status_code == 400 and "required" in cleared.json()["error"]
    assert Answer.objects.get(read_item=item, question="quality").value == 4
    # The optional ROI can still be cleared.
    optional = client.post(
        reverse("reading:answers", args=[item.alias]),
        json.dumps({"answers": [{"question": "snr_roi", "value": None}]}),
        content_type="application/json",
    )
    assert optional.status_code == 200
    # A required answer missing on a submitted read (e.g. stored before this rule) blocks
    # finishing the session.
    Answer.objects.filter(read_item=item, question="quality").update(value=None)
    response = client.post(reverse("reading:finish", args=[item.alias]))
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.completed_at is None


@pytest.mark.parametrize(
    "answer",
    [
        {"question": "effusion", "value": "pres\u0000ent", "confidence": 3},
        {"question": "effusion", "value": "present", "confidence": "3\u0000"},
        {
            "question": "snr_roi",
            "value": {"shape": "ellipse", "mean": 1, "sd": 1, "pixel_count": 4, "uid": "a\u0000"},
        },
        {"question": "quality", "value": "²"},
        {"question": "quality", "value": "9" * 5000},
        {"question": "effusion", "value": "present", "confidence": "1" * 5000},
    ],
)
def test_nul_characters_and_odd_digits_are_refused_with_400(client, imaged_study, answer):
    study, _, _, (reader, _) = imaged_study()
    item = first_session(study, reader).items.order_by("order_index").first()
    client.force_login(reader)
    response = client.post(
        reverse("reading:answers", args=[item.alias]),
        json.dumps({"answers": [answer]}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["error"]
    assert not Answer.objects.filter(read_item=item).exists()


def test_unknown_tokens_cost_a_bounded_number_of_queries(
    client, imaged_study, django_assert_max_num_queries
):
    """Each unknown token costs one indexed lookup (plus the session and user), never a scan
    of the reader's reads."""
    import secrets

    study, _, _, (reader, _) = imaged_study()
    client.force_login(reader)
    client.get(reverse("reading:worklist"))
    tokens = [secrets.token_urlsafe(16) for _ in range(50)]
    with django_assert_max_num_queries(2 * 50 * 5):
        for token in tokens:
            assert client.get(reverse("reading:image", args=[token, 0])).status_code == 404
            assert client.get(reverse("reading:series", args=[token])).status_code == 404
