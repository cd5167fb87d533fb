"""A site administrator, in Chromium: uploads a raw case and a DICOM case, creates a
protocol, runs jobs on the real worker, watches progress and opens the result."""

import re

import numpy as np
import pytest

from mriplatform.accounts.roles import Role
from mriplatform.jobs.models import ReconJob
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def raw_file(tmp_path):
    from recon_engine.simulation import simulate_fastmri_file

    out = tmp_path / "patient_name_scan.h5"
    simulate_fastmri_file(
        "data/mri/colin27_t1_1mm.nii.gz",
        out,
        n_slices=4,
        matrix=(96, 96),
        n_coils=8,
        snr=40.0,
        seed=3,
    )
    return out


@pytest.fixture
def dicom_files(tmp_path):
    from recon_engine.io.dicom import write_dicom_series
    from recon_engine.simulation import load_slices

    volume = load_slices("data/mri/mni152_2009a_t1_1mm.nii.gz", 3, size=(64, 64)).numpy()
    return write_dicom_series(
        tmp_path / "dicom",
        np.abs(volume),
        description="T1 axial",
        patient_id="HOSPITAL-123",
        patient_name="Doe^Jane",
    )


def login(page, url, user):
    page.goto(f"{url}/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")


def upload_case(page, url, code, files):
    page.goto(f"{url}/cases/new/")
    page.fill("#id_subject_code", code)
    page.select_option("#id_anatomy", "brain")
    page.set_input_files("#id_files", [str(f) for f in files])
    page.click("#upload-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/cases/\d+/$"))
    assert code in page.locator("h1").inner_text()


def test_upload_reconstruct_and_open_result(
    page, live_server, make_user, celery_worker_process, raw_file, dicom_files, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path / "media"
    url = live_server.url
    admin = make_user(Role.SITE_ADMIN)
    login(page, url, admin)

    upload_case(page, url, "TRIAL-001", [raw_file])
    assert "8 coils" in page.locator("#series").inner_text()
    upload_case(page, url, "TRIAL-002", dicom_files)
    assert "3 slices" in page.locator("#series").inner_text()
    assert "Doe" not in page.content() and "HOSPITAL-123" not in page.content()

    page.goto(f"{url}/protocols/new/?method=zero_filled")
    page.fill("#id_name", "Zero-filled R2")
    page.select_option("#id_mask_pattern", "equispaced")
    page.fill("#id_acceleration", "2")
    page.click("#protocol-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/protocols/\d+/$"))
    assert "Zero-filled R2 v1" in page.locator("h1").inner_text()

    page.goto(f"{url}/jobs/submit/")
    page.locator("label", has_text="TRIAL-001").locator("input").check()
    page.locator("label", has_text="Zero-filled R2").locator("input").check()
    page.click("main form button[type=submit]")
    page.wait_for_url(f"{url}/jobs/")
    row = page.locator("#jobs tr[data-job]").first
    row.locator(".status-succeeded").wait_for(timeout=120_000)  # the page polls for progress
    assert "4/4 slices" in row.inner_text()

    job = ReconJob.objects.get()
    assert job.status == "succeeded" and job.metrics["psnr"] > 20
    row.locator("a").first.click()
    page.click("text=Open the reconstruction")
    page.wait_for_function(
        "() => { const i = document.getElementById('slice'); return i && i.naturalWidth > 0; }"
    )
    page.keyboard.press("ArrowUp")
    assert page.locator("#slice-label").inner_text() == "4 / 4"
