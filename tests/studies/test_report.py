"""The statistician's report (pure): numbers equal direct studies.analysis calls on the
same tables, absent data give a stated skip, the PDF is a real PDF, and the bundle's one
command reproduces every number (and refuses a tampered results.json)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pandas as pd
import pytest

from studies import analysis as sa
from studies import report

SCAN_TIMES = {"A": 300.0, "B": 150.0, "C": 100.0}
PARAMS = {"reference": "A", "n_boot": 300, "seed": 7, "scan_times_s": SCAN_TIMES}


def simulated_reads(n_patients=12, readers=("R1", "R2", "R3"), arms=("A", "B", "C"), seed=1):
    """A tidy reads table in the layout of studies.export.tidy_reads: per (reader, case,
    arm) a Likert score, a present/absent finding with confidence and truth, a thickness
    measurement and three ROIs (two tissues and background); cases 0-3 are read twice. Each
    reader also compares A with C side by side (left / right alternating, C preferred)."""
    rng = np.random.default_rng(seed)
    truth = {p: int(rng.random() < 0.5) for p in range(n_patients)}
    shift = {"A": 0.0, "B": -0.3, "C": -0.8}
    noise = {"A": 5.0, "B": 6.0, "C": 8.0}
    rows = []
    for p in range(n_patients):
        quality, thickness = rng.normal(3.8, 0.7), rng.normal(2.5, 0.4)
        for arm in arms:
            for reader in readers:
                for read_index in (1, 2) if p < 4 else (1,):
                    base = {
                        "reader_id": reader,
                        "case_id": str(100 + p),
                        "patient_id": f"P{p:02d}",
                        "modality_id": arm,
                        "arm_protocol": f"protocol {arm} v1",
                        "second_modality_id": None,
                        "session": read_index,
                        "read_index": read_index,
                        "read_kind": "first" if read_index == 1 else "repeat",
                        "time_on_case_s": 30.0,
                        "submitted_at": "2026-01-05T09:00:00+00:00",
                        "confidence": None,
                        "truth": None,
                        "truth_numeric": None,
                    }
                    score = int(np.clip(round(quality + shift[arm] + rng.normal(0, 0.5)), 1, 5))
                    rows.append(
                        {
                            **base,
                            "question": "overall",
                            "question_kind": "likert",
                            "criterion": "overall quality",
                            "structure": "",
                            "value": score,
                            "value_numeric": float(score),
                        }
                    )
                    call = int(rng.random() < (0.85 if truth[p] else 0.15))
                    rows.append(
                        {
                            **base,
                            "question": "tear",
                            "question_kind": "finding",
                            "criterion": "",
                            "structure": "meniscus",
                            "value": "present" if call else "absent",
                            "value_numeric": float(call),
                            "confidence": int(rng.integers(2, 6)),
                            "truth": "present" if truth[p] else "absent",
                            "truth_numeric": float(truth[p]),
                        }
                    )
                    mm = round(thickness + rng.normal(0, 0.15) + (0.1 if arm == "C" else 0), 3)
                    rows.append(
                        {
                            **base,
                            "question": "thickness",
                            "question_kind": "number",
                            "criterion": "",
                            "structure": "cartilage",
                            "value": mm,
                            "value_numeric": mm,
                        }
                    )
                    rois = {
                        "roi_cartilage": ("cartilage", 200 + rng.normal(0, 5), noise[arm]),
                        "roi_muscle": ("muscle", 120 + rng.normal(0, 5), noise[arm]),
                        "roi_background": (
                            "background",
                            noise[arm] * 1.25,
                            noise[arm] * 0.655 * rng.uniform(0.9, 1.1),
                        ),
                    }
                    for key, (structure, mean, sd) in rois.items():
                        roi = {"shape": "ellipse", "mean": mean, "sd": sd, "area_mm2": 20.0}
                        rows.append(
                            {
                                **base,
                                "question": key,
                                "question_kind": "roi",
                                "criterion": "",
                                "structure": structure,
                                "value": json.dumps(roi),
                                "value_numeric": mean,
                            }
                        )
    pref_codes = {"left": 1.0, "right": -1.0, "equal": 0.0}
    for p in range(n_patients):
        for reader in readers:
            left, right = ("A", "C") if p % 2 else ("C", "A")
            draw = rng.random()
            choice = "equal" if draw < 0.2 else ("C" if draw < 0.75 else "A")
            value = "equal" if choice == "equal" else ("left" if choice == left else "right")
            rows.append(
                {
                    **base,
                    "reader_id": reader,
                    "case_id": str(100 + p),
                    "patient_id": f"P{p:02d}",
                    "modality_id": left,
                    "arm_protocol": f"protocol {left} v1",
                    "second_modality_id": right,
                    "session": 1,
                    "read_index": 1,
                    "read_kind": "first",
                    "confidence": None,
                    "truth": None,
                    "truth_numeric": None,
                    "question": "preferred",
                    "question_kind": "preference",
                    "criterion": "overall preference",
                    "structure": "",
                    "value": value,
                    "value_numeric": pref_codes[value],
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def reads():
    """The simulated table after the CSV round trip the report always makes."""
    import io

    return report.load_reads(io.StringIO(simulated_reads().to_csv(index=False)))


@pytest.fixture(scope="module")
def results(reads):
    return report.compute_results(reads, PARAMS)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    results = report.write_report(simulated_reads().to_csv(index=False), PARAMS, out, "Study 9")
    return out, results


def first(reads, question):
    q = reads[(reads["question"] == question) & (reads["read_index"] == 1)]
    return q


def item(results, analysis, item_id):
    section = results["analyses"][analysis]
    return next(i for i in section["items"] if i["id"] == item_id)


def test_every_analysis_runs_on_complete_data(results):
    assert {k: s["status"] for k, s in results["analyses"].items()} == dict.fromkeys(
        report.ANALYSES, "done"
    )
    assert results["summary"]["n_readers"] == 3 and results["summary"]["n_patients"] == 12


def test_likert_numbers_equal_direct_call(reads, results):
    q = first(reads, "overall")
    table = q[["reader_id", "case_id", "patient_id", "modality_id"]].assign(
        value=q["value_numeric"]
    )
    direct = sa.likert_comparison(table, "A", "B", threshold=3, n_boot=300, seed=7).to_dict()
    assert item(results, "likert", "overall/B")["result"] == direct
    p = [item(results, "likert", f"overall/{m}")["result"]["pooled"]["p_value"] for m in "BC"]
    holm = sa.holm(p)
    assert item(results, "likert", "overall/C")["p_holm"] == pytest.approx(holm[1])


def test_agreement_numbers_equal_direct_calls(reads, results):
    q = first(reads, "overall")
    q = q[q["modality_id"] == "B"]
    matrix = q.pivot(index="case_id", columns="reader_id", values="value_numeric")
    observed = sorted(q["value_numeric"].astype(int).unique())
    scale = list(range(observed[0], observed[-1] + 1))  # no scale given: observed range
    fleiss = sa.fleiss_kappa(matrix, scale).to_dict()
    ac2 = sa.gwet_ac1(matrix, scale, weights="linear").to_dict()
    assert item(results, "inter_reader", "overall/B/fleiss")["result"] == fleiss
    assert item(results, "inter_reader", "overall/B/gwet")["result"] == ac2
    alpha = sa.krippendorff_alpha(matrix, "ordinal", n_boot=PARAMS["n_boot"], seed=PARAMS["seed"])
    assert item(results, "inter_reader", "overall/B/krippendorff")["result"] == alpha.to_dict()

    tear = reads[
        (reads["question"] == "tear") & (reads["case_id"].isin(["100", "101", "102", "103"]))
    ]
    table = tear[["reader_id", "case_id", "modality_id", "read_index"]].assign(value=tear["value"])
    direct = sa.intra_reader_agreement(table, ["absent", "present"], n_boot=300, seed=7)
    assert item(results, "intra_reader", "tear")["result"] == direct.to_dict()


def test_two_readers_use_weighted_cohen_kappa_on_the_full_scale():
    df = report.load_reads(
        __import__("io").StringIO(simulated_reads(readers=("R1", "R2")).to_csv(index=False))
    )
    params = {**PARAMS, "analyses": ["inter_reader"], "scales": {"overall": [1, 5]}}
    res = report.compute_results(df, params)
    q = first(df, "overall")
    q = q[q["modality_id"] == "A"]
    m = q.pivot(index="case_id", columns="reader_id", values="value_numeric")
    direct = sa.cohen_kappa(m["R1"], m["R2"], [1, 2, 3, 4, 5], weights="linear").to_dict()
    assert item(res, "inter_reader", "overall/A/cohen")["result"] == direct


def test_interchangeability_accuracy_and_mrmc_equal_direct_calls(reads, results):
    q = first(reads, "tear")
    cols = ["reader_id", "case_id", "patient_id", "modality_id"]
    table = q[cols].assign(value=q["value"])
    direct = sa.interchangeability(table, "A", "C", margin=0.05, n_boot=300, seed=7)
    assert item(results, "interchangeability", "tear/C")["result"] == direct.to_dict()

    call = (q["value"] == "present").astype(int)
    truth = (q["truth"] == "present").astype(int)
    acc = sa.diagnostic_accuracy(q[cols].assign(value=call, truth=truth), n_boot=300, seed=7)
    assert item(results, "accuracy", "tear/accuracy")["result"] == acc.to_dict()

    # ROC rating: confidence signed by the call (present: 5 + c, absent: 6 - c)
    rating = np.where(call == 1, 5 + q["confidence"], 6 - q["confidence"])
    mrmc = sa.mrmc_or(q[cols].assign(value=call, truth=truth, confidence=rating))
    assert item(results, "accuracy", "tear/mrmc")["result"] == mrmc.to_dict()


def test_snr_cnr_bland_altman_and_scan_time(reads, results):
    q = reads[reads["read_index"] == 1]
    one = q[(q["reader_id"] == "R2") & (q["case_id"] == "105") & (q["modality_id"] == "B")]
    rois = {r.question: json.loads(r.value) for r in one.itertuples() if r.question_kind == "roi"}
    sigma = rois["roi_background"]["sd"] / 0.6551  # Rayleigh SD factor, one coil
    table = report.image_quality_table(reads, report.normalise_parameters(PARAMS))
    row = table[
        (table["reader_id"] == "R2") & (table["case_id"] == "105") & (table["modality_id"] == "B")
    ]
    snr = row[(row["measure"] == "SNR") & (row["name"] == "cartilage")]["value"].item()
    assert snr == pytest.approx(rois["roi_cartilage"]["mean"] / sigma, rel=1e-4)
    cnr = row[row["measure"] == "CNR"]["value"].item()
    diff = abs(rois["roi_cartilage"]["mean"] - rois["roi_muscle"]["mean"])
    assert cnr == pytest.approx(diff / sigma, rel=1e-4)
    summary = item(results, "image_quality", "SNR/cartilage/B")["result"]
    values = table[
        (table["measure"] == "SNR") & (table["name"] == "cartilage") & (table["modality_id"] == "B")
    ]["value"]
    assert summary["median"] == pytest.approx(float(np.median(values)))
    assert summary["n"] == 36

    snr_reads = table[(table["measure"] == "SNR") & (table["name"] == "cartilage")]
    per_case = snr_reads.pivot_table(index="case_id", columns="modality_id", values="value")
    from scipy import stats

    direct = stats.wilcoxon(per_case["C"] - per_case["A"])
    comparison = item(results, "image_quality", "SNR/cartilage/C-vs-A")["result"]
    assert comparison["p_value"] == pytest.approx(direct.pvalue)
    assert comparison["n_cases"] == 12
    assert comparison["median_difference"] < 0  # noise 8 in C vs 5 in A

    thickness = reads[reads["question"] == "thickness"]
    tidy = thickness[["reader_id", "case_id", "patient_id", "modality_id", "read_index"]].assign(
        value=thickness["value_numeric"]
    )
    ba = item(results, "bland_altman", "thickness/C")["result"]
    assert ba == sa.bland_altman(tidy, reference="A", new="C").to_dict()
    assert ba["n_pairs"] == 36 + 4 * 3 and ba["n_cases"] == 12
    m = thickness.pivot_table(
        index=["reader_id", "case_id", "read_index"], columns="modality_id", values="value_numeric"
    )
    assert ba["bias"] == pytest.approx((m["C"] - m["A"]).mean())

    st = item(results, "scan_time", "B")["result"]
    assert st == sa.scan_time_reduction(300.0, 150.0).to_dict()
    assert st["reduction_percent"] == pytest.approx(50.0)


def test_preference_equals_direct_call_and_single_arm_analyses_ignore_it(reads, results):
    paired = reads[reads["second_modality_id"].notna()]
    cols = ["reader_id", "case_id", "patient_id", "modality_id", "second_modality_id"]
    direct = sa.preference_analysis(
        paired[cols].assign(value=paired["value_numeric"]), "A", "C", n_boot=300, seed=7
    )
    pref = item(results, "preference", "preferred/A-vs-C")
    assert pref["result"] == direct.to_dict()
    assert pref["arm_a"] == "A"  # the reference arm is A
    assert pref["result"]["prefer_b"] > pref["result"]["prefer_a"]
    assert results["summary"]["n_rows"] == len(reads) - len(paired)
    coded_from_text = report.compute_results(
        reads.assign(value_numeric=np.nan), {**PARAMS, "analyses": ["preference"]}
    )
    assert item(coded_from_text, "preference", "preferred/A-vs-C")["result"] == direct.to_dict()


def test_absent_data_are_skipped_with_a_reason(reads):
    likert_only = reads[reads["question"] == "overall"].drop(columns=["truth"])
    res = report.compute_results(likert_only, {**PARAMS, "scan_times_s": {}})
    sections = res["analyses"]
    assert sections["likert"]["status"] == "done"
    assert sections["accuracy"]["status"] == "skipped"
    assert "reference standard" in sections["accuracy"]["reason"]
    assert sections["image_quality"]["status"] == "skipped"
    assert sections["bland_altman"]["status"] == "skipped"
    assert sections["preference"]["reason"] == "no side-by-side preference reads were made"
    assert sections["scan_time"]["reason"] == "the reference arm's acquisition time is unknown"
    no_ref = report.compute_results(likert_only, {**PARAMS, "reference": None})
    assert no_ref["analyses"]["likert"]["reason"] == "no reference arm among the arms read"


def test_bad_parameters_are_refused_with_a_message():
    with pytest.raises(report.ReportError, match="unknown analyses"):
        report.normalise_parameters({"analyses": ["kappa_everything"]})
    with pytest.raises(report.ReportError, match="n_boot"):
        report.normalise_parameters({"n_boot": 5})
    with pytest.raises(report.ReportError, match="margin"):
        report.normalise_parameters({"margin": 2})
    with pytest.raises(report.ReportError, match="unknown parameter"):
        report.normalise_parameters({"bootstraps": 10})


def pdf_pages(data: bytes) -> int:
    """Number of page objects in a PDF (object streams decompressed)."""
    text = data
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        try:
            text += zlib.decompress(m.group(1))
        except zlib.error:
            continue
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", text))


def test_written_report_has_plots_pdf_and_csv(written):
    out, results = written
    html = (out / "report.html").read_text()
    assert html.count('<img src="data:image/svg+xml;base64,') >= 8
    for title in (
        "Inter-reader agreement",
        "Likert scores",
        "Interchangeability",
        "ROC curves",
        "SNR box plot",
        "Bland-Altman",
    ):
        assert f'alt="{title}' in html
    assert "NaN" not in html
    pdf = (out / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf_pages(pdf) >= 2
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    assert (out / "reads.csv").read_text() == simulated_reads().to_csv(index=False)


def run_reproduce(folder):
    """Run the bundle's reproduce.py as a user would, asserting Django is never imported."""
    code = (
        "import runpy, sys\n"
        "sys.argv = ['reproduce.py']\n"
        "try:\n"
        "    runpy.run_path('reproduce.py', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    status = exc.code\n"
        "assert 'django' not in sys.modules, 'the bundle imported Django'\n"
        "sys.exit(status)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True
    )


def test_bundle_reproduces_every_number_and_detects_tampering(written, tmp_path):
    out, results = written
    with zipfile.ZipFile(out / "bundle.zip") as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path)
    assert {
        "reads.csv",
        "parameters.json",
        "results.json",
        "versions.json",
        "reproduce.py",
        "studies/report/__init__.py",
        "studies/report/compute.py",
        "studies/analysis/agreement.py",
    } <= names
    params = json.loads((tmp_path / "parameters.json").read_text())
    assert params["seed"] == 7 and params["n_boot"] == 300 and params["reference"] == "A"
    versions = json.loads((tmp_path / "versions.json").read_text())
    assert versions["packages"]["numpy"] == np.__version__
    done = run_reproduce(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "numbers in results.json reproduced" in done.stdout

    tampered = json.loads((tmp_path / "results.json").read_text())
    entry = tampered["analyses"]["likert"]["items"][0]["result"]["pooled"]
    entry["estimate"] = entry["estimate"] + 0.01
    (tmp_path / "results.json").write_text(json.dumps(tampered))
    failed = run_reproduce(tmp_path)
    assert failed.returncode == 1
    assert "likert" in failed.stdout and "pooled/estimate" in failed.stdout


def test_compare_results_tolerance():
    assert report.compare_results({"a": [1.0, "x"]}, {"a": [1.0 + 1e-12, "x"]}) == []
    assert report.compare_results({"a": 1.0}, {"a": 1.1}) == ["/a: 1.0 != 1.1"]
    assert report.compare_results({"a": None}, {"a": math.nan}) != []


def test_graded_findings_are_dichotomised_and_paired_reads_left_out(reads):
    tear = first(reads, "tear").copy()
    grade = tear["value_numeric"] * (1 + (tear["confidence"] > 3))  # 0, 1 or 2
    tear = tear.assign(
        question="defect",
        value=grade.map({0.0: "none", 1.0: "partial", 2.0: "full"}),
        value_numeric=grade,
        truth_numeric=tear["truth_numeric"] * 2,
    )
    paired = tear.assign(second_modality_id="B", question_kind="preference", value="left")
    table = pd.concat([tear, paired], ignore_index=True)
    res = report.compute_results(table, {**PARAMS, "analyses": ["accuracy"]})
    acc = item(res, "accuracy", "defect/accuracy")
    assert acc["dichotomised"].startswith("graded finding")
    cols = ["reader_id", "case_id", "patient_id", "modality_id"]
    direct = sa.diagnostic_accuracy(
        tear[cols].assign(value=(grade > 0).astype(float), truth=tear["truth_numeric"] > 0),
        n_boot=300,
        seed=7,
    )
    assert acc["result"] == direct.to_dict()
    assert res["summary"]["n_rows"] == len(tear)
