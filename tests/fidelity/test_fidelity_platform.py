"""Fidelity runs on the platform: validation, execution, report pages and who may see them,
and the feature-stability statistics (ICC and CCC checked by hand)."""

import numpy as np
import pytest
from django.urls import reverse

from fidelity import services
from fidelity.models import FidelityRun
from tests.factories import ProtocolFactory


def test_feature_stability_matches_a_hand_computed_icc_and_ccc():
    """Reference 1,2,3,4 vs arm 2,3,4,5 (offset 1): MSR = 10/3, MSC = 2, MSE = 0, so
    ICC(2,1) = MSR / (MSR + k (MSC - MSE) / n) = (10/3) / (10/3 + 1) = 10/13 (Shrout &
    Fleiss 1979, case 2); Lin's CCC = 2 * 1.25 / (1.25 + 1.25 + 1) = 5/7."""
    reference = np.array([[1.0, 7.0, 3.0], [2.0, 7.0, 1.0], [3.0, 7.0, 4.0], [4.0, 7.0, 2.0]])
    shifted = reference + np.array([1.0, 0.0, 0.0])
    out = services.feature_stability(
        {"ref": reference, "arm": shifted}, ["a", "constant", "b"], reference="ref"
    )
    a, constant, b = out["arm"]["features"]
    assert a["icc"] == pytest.approx(10 / 13) and a["ccc"] == pytest.approx(5 / 7)
    assert constant["icc"] is None  # the same value in every case: undefined, not 1
    assert b["icc"] == pytest.approx(1.0) and b["ccc"] == pytest.approx(1.0)
    assert out["arm"]["share_icc_above_0_9"] == pytest.approx(0.5)
    with pytest.raises(services.FidelityInputError, match="reference arm"):
        services.feature_stability({"arm": shifted}, ["a", "c", "b"], reference="ref")


@pytest.mark.django_db
def test_readers_get_403_and_coordinators_the_page(client, make_user):
    client.force_login(make_user("reader"))
    run = FidelityRun.objects.create(name="x", sizes_mm=[2], created_by=make_user("coordinator"))
    for url in (
        reverse("fidelity:list"),
        reverse("fidelity:detail", args=[run.pk]),
        reverse("fidelity:progress", args=[run.pk]),
        reverse("fidelity:report-pdf", args=[run.pk]),
    ):
        assert client.get(url).status_code == 403
    client.force_login(make_user("coordinator"))
    assert client.get(reverse("fidelity:list")).status_code == 200
    assert client.get(reverse("fidelity:report-pdf", args=[run.pk])).status_code == 409


@pytest.mark.django_db
def test_bad_runs_are_refused_with_a_message(client, make_user):
    client.force_login(make_user("coordinator"))
    protocol = ProtocolFactory()
    form = {
        "name": "too small",
        "protocols": [protocol.pk],
        "lesion_kind": "focus",
        "contrast": -0.3,
        "sizes_mm": "0.2,2",
        "n_realisations": 20,
        "snr": 20,
        "pixel_mm": 1.0,
        "matrix": 64,
    }
    response = client.post(reverse("fidelity:list"), form)
    assert response.status_code == 400
    assert "below one pixel" in response.content.decode()
    response = client.post(reverse("fidelity:list"), {**form, "sizes_mm": "two"})
    assert response.status_code == 400 and "separated by commas" in response.content.decode()
    assert not FidelityRun.objects.exists()


@pytest.mark.django_db
def test_a_run_executes_and_its_report_renders(
    client, make_user, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr("fidelity.tasks.run_fidelity.delay", queued.append)
    coordinator = make_user("coordinator")
    client.force_login(coordinator)
    protocol = ProtocolFactory(method="zero_filled", mask_pattern="equispaced", acceleration=4)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("fidelity:list"),
            {
                "name": "zero-filled R4",
                "protocols": [protocol.pk],
                "lesion_kind": "focus",
                "contrast": -0.5,
                "sizes_mm": "3,8",
                "n_realisations": 12,
                "snr": 30,
                "pixel_mm": 1.0,
                "matrix": 64,
            },
        )
    assert response.status_code == 302
    run = FidelityRun.objects.get()
    assert queued == [run.pk]  # handed to Celery once the run is saved
    run = services.execute_run(run.pk)
    assert run.status == FidelityRun.Status.DONE, run.error
    assert [row["size_mm"] for row in run.results["rows"]] == [3.0, 8.0]
    assert "no differentiable forward" in run.results["skipped"][0]["reason"]
    page = client.get(reverse("fidelity:detail", args=[run.pk])).content.decode()
    assert "Smallest lesion detected" in page and "data:image/svg+xml" in page
    pdf = client.get(reverse("fidelity:report-pdf", args=[run.pk]))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


@pytest.mark.django_db
def test_a_known_truth_study_stores_the_inserted_truth_as_its_reference(
    make_user, monkeypatch, media_root
):
    from fidelity.truth_study import QUESTION_KEY, case_truth, create_known_truth_study
    from recon_engine.fft import ifftc, rss
    from recon_engine.fidelity.lesions import Lesion, lesion_profile
    from studies.models import ReferenceStandard

    monkeypatch.setattr("mriplatform.jobs.services.enqueue", lambda job: None)
    coordinator = make_user("coordinator")
    protocol = ProtocolFactory(method="zero_filled", mask_pattern="equispaced", acceleration=4)
    study = create_known_truth_study(
        coordinator,
        coordinator.institution,
        "Known truth",
        [protocol],
        n_cases=4,
        size_mm=6.0,
        contrast=-0.5,
        matrix=64,
        snr=40.0,
    )
    truth = case_truth(study)
    assert sorted(truth.values()) == ["absent", "absent", "present", "present"]
    assert study.questions.get().key == QUESTION_KEY
    assert all(
        r.source == "import" for r in ReferenceStandard.objects.filter(study_case__study=study)
    )
    # the stored raw data really carry the finding where the truth says so
    centre = None
    signal = {}
    for study_case in study.study_cases.select_related("case"):
        data = services.read_raw_series(study_case.case.series.get())
        image = rss(ifftc(data.kspace), coil_dim=1)[0].numpy()
        if centre is None:
            from recon_engine.fidelity.detectability import brightest_tissue_center

            centre = brightest_tissue_center(image)
        _, mask = lesion_profile(image.shape, Lesion("focus", 6.0, -0.5, centre), 1.0)
        signal[study_case.case_id] = float(image[mask.numpy()].mean())
        assert truth[study_case.case_id] not in study_case.case.subject_code
    present = [signal[c] for c, t in truth.items() if t == "present"]
    absent = [signal[c] for c, t in truth.items() if t == "absent"]
    assert max(present) < 0.75 * min(absent)


@pytest.mark.django_db
def test_coordinators_create_a_known_truth_study_from_the_page(
    client, make_user, monkeypatch, media_root
):
    monkeypatch.setattr("mriplatform.jobs.services.enqueue", lambda job: None)
    protocol = ProtocolFactory(method="zero_filled", mask_pattern="equispaced", acceleration=4)
    form = {
        "title": "Known truth",
        "protocols": [protocol.pk],
        "n_cases": 2,
        "lesion_kind": "focus",
        "size_mm": 0.3,
        "contrast": -0.4,
        "matrix": 64,
        "pixel_mm": 1.0,
        "snr": 20,
    }
    url = reverse("fidelity:known-truth-study")
    client.force_login(make_user("site_admin"))
    assert client.post(url, form).status_code == 403
    client.force_login(make_user("coordinator"))
    response = client.post(url, form)
    assert response.status_code == 400 and "below one pixel" in response.content.decode()
    response = client.post(url, {**form, "size_mm": 4.0})
    from studies.models import Study

    study = Study.objects.get(title="Known truth")
    assert response.status_code == 302 and response.url == reverse(
        "studies:detail", args=[study.pk]
    )
    assert study.study_cases.count() == 2 and study.arms.count() == 1
