"""Display units, window presets per sequence type, and the viewer's image-failure report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from studies.display import (
    DEFAULT_WINDOW_PRESETS,
    GENERIC_PRESETS,
    display_scale,
    sequence_type,
    validate_window_presets,
    window_presets,
)
from studies.models import ReadingSession
from tests.studies.test_reading_views import imaged_study  # noqa: F401 (fixture)


def test_display_scale_puts_the_995th_percentile_at_3000():
    rng = np.random.default_rng(3)
    slices = [rng.gamma(2.0, 150.0, size=(16, 16)) for _ in range(4)]
    # Reference: numpy's percentile of all values pooled, independently of the order.
    reference = np.percentile(np.concatenate([s.ravel() for s in slices]), 99.5)
    assert display_scale(slices) == pytest.approx(3000.0 / reference)
    # Mostly empty series: the percentile is 0, so the maximum is used; all zero: 1.
    sparse = [np.zeros((20, 20)) for _ in range(2)]
    sparse[0][3, 4] = 50.0
    assert display_scale(sparse) == pytest.approx(60.0)
    assert display_scale([np.zeros((4, 4))]) == 1.0


@pytest.mark.parametrize(
    ("description", "kind"),
    [
        ("PD-weighted FSE", "PD"),
        ("Proton density TSE", "PD"),
        ("PD FS", "PD-FS"),
        ("cor PD fat-sat", "PD-FS"),
        ("PD SPAIR", "PD-FS"),
        ("T1 TSE", "T1"),
        ("sag T2 fat suppressed", "T2"),
        ("3D GRE", None),
        ("", None),
    ],
)
def test_sequence_type_from_the_case_description(description, kind):
    assert sequence_type(description) == kind


@pytest.mark.parametrize(
    "value",
    [
        [],
        {"T3": [{"name": "x", "width": 10, "center": 5}]},
        {"PD": []},
        {"PD": [{"name": "x", "width": 0, "center": 5}]},
        {"PD": [{"name": "x", "width": 10, "center": -1}]},
        {"PD": [{"name": "", "width": 10, "center": 5}]},
        {"PD": [{"name": "x", "width": "10", "center": 5}]},
        {"PD": [{"name": "x", "width": True, "center": 5}]},
        {"PD": [{"name": "x", "width": 10, "center": 5, "extra": 1}]},
    ],
)
def test_bad_window_presets_are_refused(value):
    with pytest.raises(ValidationError):
        validate_window_presets(value)


def test_window_presets_come_from_the_study_then_the_defaults(imaged_study):  # noqa: F811
    study, *_ = imaged_study()
    own = {"PD-FS": [{"name": "Marrow", "width": 1200, "center": 500}]}
    validate_window_presets(own)
    study.window_presets = own
    assert window_presets(study, "cor PD FS") == (
        "PD-FS",
        [{"kind": "absolute", "name": "Marrow", "width": 1200, "center": 500}],
    )
    kind, presets = window_presets(study, "T2 TSE")
    assert kind == "T2" and [p["width"] for p in presets] == [
        p["width"] for p in DEFAULT_WINDOW_PRESETS["T2"]
    ]
    assert window_presets(study, "")[1] == [{"kind": "absolute", **p} for p in GENERIC_PRESETS]


def test_the_reading_page_offers_the_presets_of_the_case_sequence(client, imaged_study):  # noqa: F811
    study, _, _, (reader, _) = imaged_study()
    study.window_presets = {"PD-FS": [{"name": "Marrow", "width": 1200, "center": 500}]}
    study.save(update_fields=["window_presets"])
    item = ReadingSession.objects.get(study=study, reader=reader, index=0).items.first()
    case = item.study_case.case
    case.sequence = "Coronal PD fat-sat"
    case.save(update_fields=["sequence"])
    client.force_login(reader)
    config = client.get(reverse("reading:read", args=[item.alias])).context["config"]
    assert config["sequenceType"] == "PD-FS"
    marrow = {"kind": "absolute", "name": "Marrow", "width": 1200, "center": 500}
    assert config["presets"] == [marrow]


def test_image_failures_are_logged_and_bad_reports_refused(client, imaged_study, caplog):  # noqa: F811
    study, _, _, (reader, other) = imaged_study()
    item = ReadingSession.objects.get(study=study, reader=reader, index=0).items.first()
    url = reverse("reading:image_error", args=[item.alias])
    client.force_login(reader)
    report = {"message": "the server answered 404", "viewport": 0, "slice_index": 2}
    with caplog.at_level("WARNING", logger="studies.views.reading"):
        response = client.post(url, json.dumps(report), content_type="application/json")
    assert response.status_code == 204
    logged = [r.getMessage() for r in caplog.records if r.name == "studies.views.reading"]
    assert any(f"read {item.pk}" in m and "answered 404" in m and "slice 2" in m for m in logged)
    for body in (
        "not json",
        json.dumps([1]),
        json.dumps({"message": 3}),
        json.dumps({"message": "x", "viewport": "0"}),
        json.dumps({"message": "x", "slice_index": True}),
        json.dumps({"message": "x" * 5000}),
    ):
        assert client.post(url, body, content_type="application/json").status_code == 400
    assert client.get(url).status_code == 405
    client.force_login(other)
    response = client.post(url, json.dumps(report), content_type="application/json")
    assert response.status_code == 404


def test_opening_a_study_queues_its_display_build_which_blinds_each_series_once(
    build_study, monkeypatch, django_capture_on_commit_callbacks, client
):
    """Opening queues the build (after commit); the build stores every shown series once, so
    a reader's first request serves the stored copy."""
    from mriplatform.cases.models import Series
    from studies import tasks
    from studies.display import build_study_display
    from studies.models import BlindedSeries, ReadItem
    from studies.services import open_study
    from tests.studies.imaging import imaged_reconstruction

    study, arms, cases, (reader, _) = build_study(
        n_cases=2, n_arms=2, n_readers=2, reconstruct=False
    )
    for sc in cases:
        raw = Series.objects.get(case=sc.case, kind="fastmri_h5")
        for arm in arms:
            imaged_reconstruction(raw, arm.protocol, n_slices=3, size=32)
    queued = []
    monkeypatch.setattr(tasks.build_blinded_display, "delay", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        open_study(study, study.coordinator)
    assert queued == [study.pk]
    assert build_study_display(study.pk) == 4
    stored = {b.series_id: b.blob.name for b in BlindedSeries.objects.all()}
    assert len(stored) == 4
    assert build_study_display(study.pk) == 4  # idempotent: nothing rebuilt
    assert {b.series_id: b.blob.name for b in BlindedSeries.objects.all()} == stored
    item = ReadItem.objects.filter(reader=reader, session__index=0).first()
    client.force_login(reader)
    config = client.get(reverse("reading:read", args=[item.alias])).context["config"]
    assert client.get(config["series"][0]).status_code == 200
    assert BlindedSeries.objects.count() == 4
