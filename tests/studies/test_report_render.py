"""The report as a statistician reads it: parameters as a table, a methods paragraph per
analysis with references, intervals inside each parameter's range, small-n warnings, and a
PDF whose table rows are never split across pages and whose pages are numbered."""

from __future__ import annotations

import pytest

from studies import report
from tests.studies.test_report import simulated_reads


@pytest.fixture(scope="module")
def results():
    reads = simulated_reads(n_patients=8)
    params = {"reference": "A", "n_boot": 200, "seed": 3}
    return report.compute_results(reads, params)


def _walk(obj, path=""):
    if isinstance(obj, dict):
        yield path, obj
        for key, value in obj.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _walk(value, f"{path}[{i}]")


def test_every_interval_respects_its_parameter_space(results):
    """Kappa-type coefficients stay in [-1, 1]; AUCs and proportions in [0, 1] (the report
    used to print kappa '0.410 to 1.123' and AUC '0.945 to 1.034')."""
    checked = 0
    for section in ("inter_reader", "intra_reader"):
        for path, est in _walk(results["analyses"][section]):
            if "ci" in est and est["ci"] and None not in est["ci"]:
                assert -1 <= est["ci"][0] <= est["ci"][1] <= 1, path
                checked += 1
    for path, est in _walk(results["analyses"]["accuracy"]):
        name = str(est.get("name", ""))
        if (
            est.get("ci")
            and None not in est["ci"]
            and (
                name.startswith(("AUC[", "sensitivity", "specificity", "accuracy"))
                and " - " not in name
            )
        ):
            assert 0 <= est["ci"][0] <= est["ci"][1] <= 1, path
            checked += 1
    assert checked > 50


def test_small_samples_are_flagged_in_the_report(results):
    body = report.render_body(results, {}, "Simulated")
    assert "only 8 subjects" in body  # kappas over 8 cases
    assert "fewer than 10 repeated cases" in body  # intra-reader from 4 repeated cases


def test_parameters_table_and_methods_paragraphs(results):
    body = report.render_body(results, {}, "Simulated")
    assert '<table class="parameters">' in body
    assert "Bootstrap resamples</th><td>200" in body
    assert '"n_boot"' not in body  # no raw JSON blob
    done = [n for n, s in results["analyses"].items() if s["status"] == "done"]
    assert body.count('<p class="methods"><strong>Methods.</strong>') == len(done)
    for phrase in (
        "Fisher-z",  # kappa intervals
        "Obuchowski NA, Subhas N, Schoenhagen P",  # interchangeability reference
        "margin of 0.05",
        "Hillis SL, Stat Med 2007",
        "Bland JM, Altman DG",
    ):
        assert phrase in body, phrase


def test_pdf_rows_are_never_split_and_pages_are_numbered(results):
    from weasyprint import HTML

    html = report.render_html(report.render_body(results, {}, "Simulated"), "Simulated")
    document = HTML(string=html).render()
    assert len(document.pages) >= 3

    def walk(box, parent=None):
        yield box, parent
        for child in getattr(box, "children", None) or []:
            yield from walk(child, box)

    pages_of_row: dict[int, set[int]] = {}
    numbers = []
    for index, page in enumerate(document.pages):
        for box, parent in walk(page._page_box):
            if getattr(box, "element_tag", None) == "tr" and (
                getattr(parent, "element_tag", None) != "thead"
            ):
                pages_of_row.setdefault(id(box.element), set()).add(index)
            if getattr(box, "at_keyword", None) == "@bottom-center":
                numbers.append("".join(getattr(t, "text", "") for t in box.descendants()))
    assert len(pages_of_row) > 50
    assert all(len(pages) == 1 for pages in pages_of_row.values())
    total = len(document.pages)
    assert numbers == [f"{i} / {total}" for i in range(1, total + 1)]


def test_noninferiority_of_correct_calls_equals_the_direct_gee(results):
    """The accuracy section tests each arm's correct calls for non-inferiority with the
    stated margin (default 10 %), exactly as studies.analysis.noninferiority_gee does."""
    from studies import analysis as sa

    reads = simulated_reads(n_patients=8)
    q = reads[(reads["question"] == "tear") & (reads["read_index"].fillna(1) == 1)]
    call, truth, _ = report.finding_calls(q)
    table = q[["reader_id", "case_id", "patient_id", "modality_id"]].assign(
        value=(call == truth).astype(int).to_numpy()
    )
    direct = sa.noninferiority_gee(table, "A", "B", margin=0.10)
    item = next(
        i for i in results["analyses"]["accuracy"]["items"] if i["id"] == "tear/B/noninferiority"
    )
    assert item["result"]["difference"] == direct.difference.to_dict()
    assert item["result"]["margin"] == 0.10
    assert results["parameters"]["noninferiority_margin"] == 0.10
    with pytest.raises(report.ReportError, match="noninferiority_margin"):
        report.normalise_parameters({"noninferiority_margin": 1.5})
