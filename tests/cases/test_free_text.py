"""Free text kept by de-identification holds only MR-vocabulary tokens (issue 11).

The series descriptions in the table are written the way the vendors' MSK protocols name
their series (GE SIGNA, Siemens syngo, Philips, Canon, United Imaging exam cards and the
fastMRI knee labels); a description that carries a name, a record number or a date must
lose exactly that and nothing else.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import h5py
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from mriplatform.accounts.roles import Role
from mriplatform.cases import deid
from mriplatform.cases.free_text import (
    VOCABULARY_FILE,
    FreeTextCleaner,
    load_vocabulary,
    vocabulary_terms,
)
from mriplatform.cases.ingest import ISMRMRD_NS as NS
from tests.cases import ACCESSION, MARK, ismrmrd_header, write_fastmri, write_ismrmrd
from tests.cases.test_deid import ctx, to_bytes
from tests.cases.test_deid_end_to_end import database_text, leaks, upload_through_api

MSK_DESCRIPTIONS = [
    # GE SIGNA
    "3-Plane Loc",
    "ASSET Cal",
    "Sag PD FSE",
    "Cor T1 FSE",
    "Sag T2 FS PROPELLER",
    "Ax PD FSE AIR Recon DL",
    "3D CUBE PD",
    "Sag PD FSE HyperSense ARC",
    "Cor STIR",
    "Ax T2 FRFSE-XL",
    "Ax T2* MERGE",
    "Cor T1 IDEAL",
    "MAVRIC SL PD",
    "Ax T1 FS +C",
    # Siemens syngo (protocol and sequence names)
    "AAHead_Scout",
    "pd_tse_fs_cor_p2",
    "pd_tse_fs_tra_320",
    "t2_de3d_we_sag_iso",
    "t1_vibe_fs_tra_p2",
    "pd_tse_fs_sag_DRB",
    "t2_tse_dixon_sag_W",
    "t2_space_sag_p3_iso 0.5mm",
    "PD TSE FS SAG Deep Resolve Boost",
    "t2_blade_tra",
    "*tse2d1_15",
    "ep2d_diff_b50_800 ADC",
    "T2 TIRM COR",
    # Philips
    "SURVEY",
    "PDW_SPAIR_SAG",
    "WIP PDW_TSE_SPIR_TRA CS-SENSE",
    "3D_PDW_VISTA 0.4x0.4",
    "sT1W_3D_TFE",
    "T2W_mDIXON_TSE",
    "PD SPAIR SAG CS-AI",
    "Compressed SENSE AI PD FS COR",
    "PD_SPAIR_SAG SmartSpeed",
    # Canon
    "PD FS SAG AiCE",
    "PD WFOP TRA",
    "T1 FSE SAG Speeder",
    # United Imaging
    "pd_fse_cor_fs uCS DeepRecon",
    "T1 GRE 3D ACS",
    # third-party DL, generic labels, procedure text, fastMRI
    "SAG PD FS SwiftMR",
    "COR T1 TSE R=4",
    "AX PD FSE ACC 4",
    "FSE 2.5mm 320x256",
    "DWI b=800 1.5T",
    "COR PD fat sat",
    "MRI SHOULDER W/O CONTRAST RIGHT",
    "CORPDFS_FBK",
]


@pytest.fixture(scope="module")
def cleaner() -> FreeTextCleaner:
    return FreeTextCleaner()


@pytest.mark.parametrize("description", MSK_DESCRIPTIONS)
def test_vendor_msk_descriptions_survive_whole(cleaner, description):
    assert cleaner.clean(description) == description


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("Sag PD FS SMITH^JOHN", "Sag PD FS"),
        ("pd_tse_fs_sag_Mueller", "pd_tse_fs_sag"),
        ("AX PD FSE (Dr. Jones)", "AX PD FSE"),
        ("Jones (AX PD FSE)", "(AX PD FSE)"),
        ("T2 [(SMITH)] FS (DL", "T2 FS DL"),
        ("T2 ((FS) SMITH)", "T2 ((FS))"),
        ("COR PD FS MRN 4452781", "COR PD FS"),
        ("T1 SAG 12.03.1965", "T1 SAG"),
        ("Knee 2024-03-01 L", "Knee L"),
        ("T2 15 03 65 FS", "T2 FS"),
        ("PD FS 445-2781", "PD FS"),
        ("MRN 445 2781 PD", "PD"),
        ("FSE 320 256", "FSE"),  # a matrix must be written 320x256 to survive
        ("T1 15 MAR 65 MAR", "T1 MAR"),
        ("t1_15-Mar-1965_cor", "t1_cor"),
        ("PD March 15, 65", "PD"),
        ("T2 FSE 10:15 repeat", "T2 FSE repeat"),
        ("Sag T2 1965", "Sag T2"),
        ("b2000 DWI b 2000", "b2000 DWI b 2000"),
        ("Müller T2 山田 太郎", "T2"),
        ("T2 ٤٤٥٢", "T2"),  # Arabic-Indic digits are not numbers here
        ("john.smith@example.org PD", "PD"),
        ("ACC#20240301 PD", "ACC PD"),
        ("PATIENT SMITHJOHN MRN4452781", ""),
        ("", ""),
    ],
)
def test_unknown_tokens_numbers_and_dates_are_dropped(cleaner, description, expected):
    assert cleaner.clean(description) == expected


def test_deeply_nested_brackets_are_cleaned_in_one_pass(cleaner):
    depth = 50_000  # quadratic bracket handling would take minutes here
    assert cleaner.clean("PD " + "(" * depth + "SMITH" + ")" * depth + " FS") == "PD FS"
    assert cleaner.clean("(" * depth + "PD" + ")" * depth) == "(" * depth + "PD" + ")" * depth


def test_long_digit_runs_need_a_unit(cleaner):
    assert not cleaner.allows("12345")
    assert cleaner.allows("12345ms")
    assert cleaner.allows("b10000")
    assert not cleaner.allows("b123456")
    assert not cleaner.allows("2019") and cleaner.allows("2019ms") and cleaner.allows("320")


def test_every_vocabulary_term_is_a_single_lower_case_token():
    terms = load_vocabulary()
    assert len(terms) > 500
    assert all(t == t.lower() and vocabulary_terms([t]) == {t} for t in terms)
    # Words that are first names or eponyms are left to the site, never shipped.
    assert not {"john", "jane", "smith", "baker", "hoffa", "mary", "a"} & terms
    assert VOCABULARY_FILE.read_text(encoding="utf-8").startswith("# MR vocabulary")


# MR terms that are also someone's name in Faker's name lists (below). Each was kept on
# purpose: the sequence, product or anatomy term is needed, and a patient of that name is
# caught by the header's own name (identifiers) instead.
NAME_COLLISIONS = {
    "bones",
    "brain",
    "bravo",
    "cal",
    "clear",
    "con",
    "corr",
    "de",
    "deep",
    "dixon",
    "dwi",
    "early",
    "echo",
    "field",
    "foot",
    "hand",
    "jet",
    "kidney",
    "mar",
    "pace",
    "philips",
    "post",
    "real",
    "sharp",
    "signa",
    "smart",
    "stack",
    "swift",
    "te",
    "trace",
    "ute",
    "water",
}


def _faker_names() -> set[str]:
    """Every first and last name of every locale of Faker's person provider (~56,000)."""
    import importlib
    import pkgutil

    person = pytest.importorskip("faker.providers.person")
    names: set[str] = set()
    for module_info in pkgutil.iter_modules(person.__path__):
        provider = importlib.import_module(f"{person.__name__}.{module_info.name}").Provider
        for attribute in dir(provider):
            if attribute.startswith(("first_names", "last_names")):
                value = getattr(provider, attribute)
                if isinstance(value, dict | list | tuple | set):
                    names.update(value)
    return names


def test_no_name_from_fakers_lists_survives_unless_it_is_a_reviewed_mr_term(cleaner):
    names = _faker_names()
    assert len(names) > 40_000
    survivors: set[str] = set()
    for name in names:
        kept = cleaner.clean(f"SAG PD {name} FS").removeprefix("SAG PD").removesuffix("FS")
        # What is left of a name: only reviewed MR terms, or a particle of one or two
        # letters ("De" of "De Backer", "O" of "O'Brien").
        survivors.update(t.lower() for t in kept.split() if len(t) > 2)
    assert survivors <= NAME_COLLISIONS, survivors - NAME_COLLISIONS


def test_site_vocabulary_term_survives_only_when_configured(cleaner):
    description = "SAG PD KneeFast7 AIR Recon DL"
    assert cleaner.clean(description) == "SAG PD AIR Recon DL"
    site = FreeTextCleaner(["kneefast", "Hospital Special"])
    assert site.clean(description) == description
    assert site.clean("Hospital PD") == "Hospital PD"
    assert cleaner.clean("Hospital PD") == "PD"


# --------------------------------------------------------------------------------------
# DICOM: the ten free-text attributes of the issue
# --------------------------------------------------------------------------------------

MARKER = "PATIENT SMITHJOHN MRN4452781 14.03.2024"
KEPT = {
    "SeriesDescription",
    "ProtocolName",
    "StudyDescription",
    "RequestedProcedureDescription",
    "PerformedProcedureStepDescription",
}
REMOVED = {
    "ImageComments",
    "AdmittingDiagnosesDescription",
    "DerivationDescription",
    "ReasonForStudy",
}


def _marked_instance(extra_vocabulary: tuple[str, ...] = ()) -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    for keyword in KEPT | REMOVED:
        setattr(ds, keyword, f"SAG PD FS {MARKER}")
    item = pydicom.Dataset()
    item.ScheduledProcedureStepDescription = f"MRI KNEE LEFT {MARKER}"
    ds.ScheduledProcedureStepSequence = [item]
    ds.SequenceName = "*tse2d1_15 JOHN"  # SH: 16 characters at most
    # Free text the profile's table does not list: cleaned whatever the options.
    ds.PulseSequenceName = "TSE SMITHJOHN"
    ds.AcquisitionProtocolName = f"pd_tse_fs_sag {MARKER}"
    ds.ContentDescription = f"KNEE {MARKER}"
    ds.FrameLabel = f"T2 {MARKER}"
    # Unlisted prose: removed.
    item.CommentsOnTheScheduledProcedureStep = f"call {MARKER} on 555 1234"
    ds.PotentialReasonsForProcedure = f"knee pain after a fall, {MARKER}"
    return ds


def test_ten_free_text_attributes_lose_the_marker():
    data, report = deid.deidentify_dicom_bytes(to_bytes(_marked_instance()), ctx())
    for needle in (b"SMITHJOHN", b"JOHN", b"4452781", b"PATIENT", b"14.03.2024", b"2024"):
        assert needle not in data, needle
    ds = pydicom.dcmread(io.BytesIO(data))
    for keyword in KEPT:
        assert ds.get(keyword) == "SAG PD FS", keyword
    for keyword in REMOVED:
        assert keyword not in ds, keyword
    # Inside a sequence the same rules apply.
    step = ds.ScheduledProcedureStepSequence[0]
    assert step.ScheduledProcedureStepDescription == "MRI KNEE LEFT"
    assert ds.SequenceName == "*tse2d1_15" and ds.PulseSequenceName == "TSE"
    assert ds.AcquisitionProtocolName == "pd_tse_fs_sag" and ds.ContentDescription == "KNEE"
    assert ds.FrameLabel == "T2" and "PotentialReasonsForProcedure" not in ds
    assert "CommentsOnTheScheduledProcedureStep" not in step
    record = report.to_dict()
    assert record["actions"]["C"] >= len(KEPT) + 4
    assert {"ImageComments", "ReasonForStudy"} <= set(record["changed"])


def test_without_clean_descriptors_kept_text_goes_too():
    data, _report = deid.deidentify_dicom_bytes(
        to_bytes(_marked_instance()), ctx(clean_descriptors=False)
    )
    ds = pydicom.dcmread(io.BytesIO(data))
    assert not (KEPT | REMOVED) & set(ds.dir())
    # Not in the table: always cleaned, never removed.
    assert ds.SequenceName == "*tse2d1_15" and ds.AcquisitionProtocolName == "pd_tse_fs_sag"


def test_site_vocabulary_reaches_dicom_descriptors():
    ds = _marked_instance()
    ds.SeriesDescription = "SAG PD KneeFast7 SMITHJOHN"
    plain, _ = deid.deidentify_dicom_bytes(to_bytes(ds), ctx())
    site, _ = deid.deidentify_dicom_bytes(to_bytes(ds), ctx(extra_vocabulary=("KneeFast",)))
    assert pydicom.dcmread(io.BytesIO(plain)).SeriesDescription == "SAG PD"
    assert pydicom.dcmread(io.BytesIO(site)).SeriesDescription == "SAG PD KneeFast7"


# --------------------------------------------------------------------------------------
# Raw data: ISMRMRD XML free text, through the real upload
# --------------------------------------------------------------------------------------

FREE_TEXT_PHI = ["SMITH", "JANE", "Jones", "4452781", "14.03.2024"]
# (field as in tests.cases.ismrmrd_header, replacement with PHI, expected after cleaning)
XML_FREE_TEXT = {
    "studyInformation/studyDescription": (
        f"<studyDescription>Knee {MARK}ID123</studyDescription>",
        "<studyDescription>MSK^KNEE Dr. Jones 4452781</studyDescription>",
        "MSK^KNEE",
    ),
    "studyInformation/bodyPartExamined": (
        "<bodyPartExamined>KNEE</bodyPartExamined>",
        "<bodyPartExamined>KNEE SMITH</bodyPartExamined>",
        "KNEE",
    ),
    "measurementInformation/protocolName": (
        f"<protocolName>CORPD_FBK {MARK}^JANE</protocolName>",
        "<protocolName>pd_tse_fs_sag SMITH^JANE</protocolName>"
        "<sequenceName>*tse2d1_15 JANE</sequenceName>",
        "pd_tse_fs_sag",
    ),
    "measurementInformation/sequenceName": (None, None, "*tse2d1_15"),
    "measurementInformation/seriesDescription": (
        f"<seriesDescription>Coronal PD {ACCESSION}</seriesDescription>",
        "<seriesDescription>AX PD FSE AIR Recon DL 14.03.2024 JANE</seriesDescription>",
        "AX PD FSE AIR Recon DL",
    ),
    "sequenceParameters/sequence_type": (
        "<TE>27</TE></sequenceParameters>",
        "<TE>27</TE><sequence_type>TSE SMITH</sequence_type></sequenceParameters>",
        "TSE",
    ),
    "encoding/trajectoryDescription/identifier": (
        "<trajectory>cartesian</trajectory>",
        "<trajectory>cartesian</trajectory><trajectoryDescription>"
        "<identifier>cartesian SMITH</identifier>"
        "<userParameterString><name>by</name><value>Jones</value></userParameterString>"
        "<comment>scanned for Jane Smith</comment></trajectoryDescription>",
        "cartesian",
    ),
}


def phi_header(**shape) -> str:
    header = ismrmrd_header(**shape)
    for original, replacement, _expected in XML_FREE_TEXT.values():
        if original:
            assert original in header, original
            header = header.replace(original, replacement)
    return header


def _stored_header(media_root) -> ET.Element:
    (stored,) = [p for p in media_root.rglob("*") if p.is_file()]
    raw = stored.read_bytes()
    assert leaks(raw, FREE_TEXT_PHI) == []
    with h5py.File(stored) as h5:
        assert "acquisition" not in h5.attrs or h5.attrs["acquisition"] == "CORPD_FBK"
        value = h5["ismrmrd_header"][()]
    return ET.fromstring(value.reshape(-1)[0] if isinstance(value, np.ndarray) else value)


def _assert_cleaned(root: ET.Element) -> None:
    for path, (_original, _replacement, expected) in XML_FREE_TEXT.items():
        element = root.find("/".join(f"{{{NS}}}{p}" for p in path.split("/")))
        assert element is not None and element.text == expected, path
    description = root.find(f"{{{NS}}}encoding/{{{NS}}}trajectoryDescription")
    assert [child.tag.split("}")[-1] for child in description] == ["identifier"]


def _upload(client, make_user, files) -> None:
    admin = make_user(Role.SITE_ADMIN)
    client.force_login(admin)
    client.session_user = admin
    upload_through_api(client, files)
    assert leaks(database_text(), FREE_TEXT_PHI) == []


@pytest.mark.django_db
def test_fastmri_header_free_text_cleaned_through_upload(client, make_user, media_root):
    buffer = io.BytesIO()
    write_fastmri(buffer, shape=(3, 4, 16, 12), header=phi_header(matrix=(16, 12), slices=3))
    with h5py.File(buffer, "r+") as h5:
        h5.attrs["acquisition"] = "CORPD_FBK SMITH JANE"
    _upload(client, make_user, [("scan.h5", buffer.getvalue())])
    _assert_cleaned(_stored_header(media_root))


@pytest.mark.django_db
def test_ismrmrd_header_free_text_cleaned_through_upload(client, make_user, media_root, tmp_path):
    path = tmp_path / "raw.h5"
    write_ismrmrd(path)
    with h5py.File(path, "r+") as h5:
        old = h5["dataset/xml"]
        shape, dtype = old.shape, old.dtype
        del h5["dataset/xml"]
        text = phi_header(matrix=(16, 12), slices=2, coils=3)
        h5["dataset"].create_dataset(
            "xml", data=np.array([text] * (shape[0] if shape else 1), dtype=dtype).reshape(shape)
        )
    _upload(client, make_user, [("scan.h5", path.read_bytes())])
    _assert_cleaned(_stored_header(media_root))


@pytest.mark.django_db
@pytest.mark.parametrize("configured", [False, True])
def test_site_vocabulary_setting_reaches_uploads(
    client, make_user, media_root, settings, configured
):
    settings.DEID_EXTRA_VOCABULARY = ["KneeFast"] if configured else []
    ds = _marked_instance()
    ds.SeriesDescription = "SAG PD KneeFast7 SMITHJOHN"
    admin = make_user(Role.SITE_ADMIN)
    client.force_login(admin)
    client.session_user = admin
    upload_through_api(client, [("scan.dcm", to_bytes(ds))])
    (stored,) = [p for p in media_root.rglob("*") if p.is_file()]
    expected = "SAG PD KneeFast7" if configured else "SAG PD"
    assert pydicom.dcmread(stored).SeriesDescription == expected


def test_site_vocabulary_comes_from_the_environment():
    """DEID_EXTRA_VOCABULARY="AIR Recon DL,KneeFast" (comma-separated) reaches settings."""
    code = (
        "import django; from django.conf import settings; django.setup(); "
        "print('|'.join(settings.DEID_EXTRA_VOCABULARY))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mriplatform.settings",
        "DEID_EXTRA_VOCABULARY": "AIR Recon DL,KneeFast",
    }
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "AIR Recon DL|KneeFast"


@pytest.mark.parametrize(
    "text", ["T2 tse 445.2781", "t2 1.2345678901", "t1 20.240301", "t2 ax 555.1234 x 12"]
)
def test_numbers_hidden_behind_a_decimal_point_are_dropped(text):
    """Review finding: only the integer part was counted, so an MRN, a phone number or a
    date written with a dot passed through."""
    cleaned = FreeTextCleaner().clean(text)
    for hidden in ("2781", "2345678901", "240301", "1234"):
        assert hidden not in cleaned
