"""Rendering of the report: tables, methods paragraphs, HTML and the paginated PDF."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .compute import ProgressCallback, compute_results, load_reads, normalise_parameters
from .figures import _ci, make_figures
from .methods import methods_paragraph, parameter_rows

# ----------------------------------------------------------------------------- tables


def _f(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        if v != 0 and abs(v) < 10 ** (-digits):
            return f"{v:.2e}"
        return f"{v:.{digits}f}"
    return str(v)


def _fci(est: dict[str, Any]) -> str:
    lo, hi = _ci(est)
    return f"{_f(lo)} to {_f(hi)}"


def _table(caption: str, headers: list[str], rows: list[list[str]]) -> dict[str, Any]:
    return {"caption": caption, "headers": headers, "rows": rows}


def _range(pair: list[Any]) -> str:
    return f"{_f(pair[0])} to {_f(pair[1])}"


def _tables_inter_reader(items: list[dict]) -> list[dict[str, Any]]:
    rows = []
    for i in items:
        r = i["result"]
        rows.append(
            [i["label"], i["modality"], i["coefficient"], _f(r["estimate"]), _fci(r)]
            + [_f(r["p_value"]), _f(r["n"])]
        )
    headers = ["Question", "Arm", "Coefficient", "Estimate", "95% CI", "p", "n"]
    return [_table("Agreement coefficients per question and arm (first reads)", headers, rows)]


def _tables_intra_reader(items: list[dict]) -> list[dict[str, Any]]:
    rows = []
    for i in items:
        for e in i["result"]["per_reader"]:
            reader = f"reader {e['details']['reader_id']}"
            mod = e["details"]["modality_id"]
            rows.append([i["label"], mod, reader, _f(e["estimate"]), _fci(e), _f(e["n"])])
        for e in i["result"]["pooled"]:
            mod = e["details"]["modality_id"]
            rows.append([i["label"], mod, "pooled", _f(e["estimate"]), _fci(e), _f(e["n"])])
    headers = ["Question", "Arm", "Reader", "Kappa", "95% CI", "n"]
    return [_table("Intra-reader kappa, read 1 vs read 2", headers, rows)]


def _tables_likert(items: list[dict]) -> list[dict[str, Any]]:
    rows = []
    for i in items:
        r = i["result"]
        model = r.get("ordinal_model") or {}
        diagnostic = "; ".join(f"{d['name']}: {_f(d['estimate'])}" for d in r["diagnostic"])
        rows.append(
            [i["label"], f"{i['modality']} vs {i['reference']}", _f(r["pooled"]["estimate"])]
            + [_f(r["pooled"]["p_value"]), _f(i.get("p_holm"))]
            + [_f(model.get("details", {}).get("odds_ratio")), diagnostic]
        )
    headers = ["Question", "Comparison", "Effect (rank-biserial)", "p", "p (Holm)"]
    headers += ["Odds ratio (ordinal model)", "Proportion diagnostic"]
    return [_table("Paired comparison against the reference arm", headers, rows)]


def _tables_interchangeability(items: list[dict]) -> list[dict[str, Any]]:
    rows = []
    for i in items:
        r = i["result"]
        rows.append(
            [i["label"], f"{i['modality']} vs {i['reference']}", _f(r["a_cc"]), _f(r["a_nc"])]
            + [_f(r["gamma"]), _fci(r), _f(r["margin"]), _f(r["interchangeable"])]
        )
    headers = ["Finding", "Comparison", "A_CC", "A_NC", "gamma", "95% CI", "Margin"]
    headers += ["Interchangeable"]
    return [_table("Individual equivalence index (excess disagreement)", headers, rows)]


def _tables_accuracy(items: list[dict]) -> list[dict[str, Any]]:
    tables = []
    shown = ("sensitivity", "specificity", "accuracy")
    for i in items:
        r = i["result"]
        if i["analysis"] == "accuracy":
            rows = []
            for e in r["estimates"]:
                d = e["details"]
                if d["metric"] in shown:
                    count = f"{d['numerator']}/{d['denominator']}"
                    rows.append(
                        [str(d["modality_id"]), str(d["reader_id"]), d["metric"]]
                        + [_f(e["estimate"]), _fci(e), count]
                    )
            headers = ["Arm", "Reader", "Metric", "Estimate", "95% CI", "k/n"]
            caption = f"{i['label']}: accuracy against the reference standard"
            tables.append(_table(caption, headers, rows))
        elif i["analysis"] == "noninferiority":
            d = r["difference"]
            rows = [
                [f"{i['modality']} vs {i['reference']}", _f(r["p_reference"]), _f(r["p_new"])]
                + [_f(d["estimate"]), _fci(d), f"-{_f(r['margin'])}", _f(r["p_value"])]
                + [_f(r["noninferior"])]
            ]
            headers = ["Comparison", "Correct (ref.)", "Correct (new)", "Difference", "95% CI"]
            headers += ["Margin", "p (non-inferiority)", "Non-inferior"]
            caption = f"{i['label']}: non-inferiority of correct calls (logistic GEE)"
            tables.append(_table(caption, headers, rows))
        else:
            rr = r["random_readers_random_cases"]
            rows = [[e["name"], _f(e["estimate"]), _fci(e), ""] for e in rr["modality_auc"]]
            rows += [
                [e["name"], _f(e["estimate"]), _fci(e), _f(e["p_value"])] for e in rr["differences"]
            ]
            caption = (
                f"{i['label']}: MRMC AUC (Obuchowski-Rockette, random readers and cases; "
                f"F = {_f(rr['statistic'])}, p = {_f(rr['p_value'])})"
            )
            tables.append(_table(caption, ["AUC / difference", "Estimate", "95% CI", "p"], rows))
    return tables


def _tables_image_quality(items: list[dict]) -> list[dict[str, Any]]:
    rows = []
    compared = []
    for i in items:
        r = i["result"]
        if i.get("comparison"):
            compared.append(
                [i["measure"], i["name"], f"{i['modality']} vs {i['reference']}"]
                + [_f(r["n_cases"]), _f(r["median_new"]), _f(r["median_reference"])]
                + [_f(r["hodges_lehmann"]), _f(r["p_value"])]
            )
            continue
        rows.append(
            [i["measure"], i["name"], i["modality"], _f(r["n"]), _f(r["median"])]
            + [_range([r["q1"], r["q3"]]), _f(r["mean"]), "; ".join(r["warnings"])]
        )
    headers = ["Measure", "ROI", "Arm", "n", "Median", "IQR", "Mean", "Note"]
    tables = [_table("SNR / CNR per arm", headers, rows)]
    if compared:
        headers = ["Measure", "ROI", "Comparison", "Cases", "Median", "Median ref."]
        headers += ["HL shift", "Wilcoxon p"]
        tables.append(_table("SNR / CNR between arms (per-case means)", headers, compared))
    return tables


def _tables_bland_altman(items: list[dict]) -> list[dict[str, Any]]:
    rows = []
    for i in items:
        r = i["result"]
        rows.append(
            [i["label"], f"{i['modality']} vs {i['reference']}", _f(r["n_pairs"])]
            + [_f(r["n_cases"]), _f(r["bias"]), _range(r["bias_ci"]), _range(r["loa"])]
            + [_range(r["loa_lower_ci"]), _range(r["loa_upper_ci"])]
            + [_slope(r.get("proportional_bias") or {})]
        )
    headers = ["Measurement", "Comparison", "Pairs", "Cases", "Bias", "Bias CI", "LoA"]
    headers += ["Lower LoA CI", "Upper LoA CI", "Proportional bias (slope, p)"]
    return [_table("Bland-Altman agreement of measurements", headers, rows)]


def _slope(trend: dict[str, Any]) -> str:
    if trend.get("slope") is None:
        return "–"
    return f"{_f(trend['slope'])} (p {_f(trend['p_value'])})"


def _tables_preference(items: list[dict]) -> list[dict[str, Any]]:
    rows = []
    for i in items:
        r = i["result"]
        for row in [*r["per_reader"], {"reader_id": "all readers", **r}]:
            rows.append(
                [i["label"], f"{i['arm_a']} vs {i['arm_b']}", str(row["reader_id"])]
                + [_f(row["prefer_a"]), _f(row["equal"]), _f(row["prefer_b"])]
                + [_f(row["p_a_among_decided"]), _f(row["p_value"])]
            )
        rows[-1][6] += f" ({_range(r['pooled_ci'])})"
    headers = ["Question", "A vs B", "Reader", "Prefer A", "Equal", "Prefer B"]
    headers += ["A among decided (CI)", "Sign test p"]
    return [_table("Side-by-side preference", headers, rows)]


def _tables_scan_time(items: list[dict]) -> list[dict[str, Any]]:
    rows = []
    for i in items:
        r = i["result"]
        rows.append(
            [i["modality"], i["reference"], _f(r["reference_s"], 1), _f(r["new_s"], 1)]
            + [f"{_f(r['reduction_percent'], 1)} %", f"{_f(r['speedup'], 2)}x"]
        )
    headers = ["Arm", "Reference", "TA reference (s)", "TA (s)", "Reduction", "Speed-up"]
    return [_table("Acquisition time from the arms' protocols", headers, rows)]


TABLES: dict[str, Callable[[list[dict]], list[dict[str, Any]]]] = {
    "inter_reader": _tables_inter_reader,
    "intra_reader": _tables_intra_reader,
    "likert": _tables_likert,
    "interchangeability": _tables_interchangeability,
    "accuracy": _tables_accuracy,
    "image_quality": _tables_image_quality,
    "bland_altman": _tables_bland_altman,
    "preference": _tables_preference,
    "scan_time": _tables_scan_time,
}


# ------------------------------------------------------------------------------- HTML

REPORT_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 10pt; color: #1c2430;
       margin: 1.5cm; }
h1 { font-size: 16pt; } h2 { font-size: 13pt; border-bottom: 1px solid #ccd; margin-top: 1.4em; }
table { border-collapse: collapse; margin: .6em 0; width: 100%; }
th, td { border-bottom: 1px solid #dde; padding: 3px 6px; text-align: left; font-size: 9pt; }
caption { text-align: left; font-weight: bold; padding: 4px 0; }
thead { display: table-header-group; }
tr, figure, .figure, .methods, caption { break-inside: avoid; page-break-inside: avoid; }
h2, caption { break-after: avoid; page-break-after: avoid; }
.figure img { max-width: 100%; } .figure { margin: .6em 0; }
.skipped { color: #8a5a00; } .muted { color: #667; font-size: 9pt; }
.methods { font-size: 9pt; }
@page { size: A4; margin: 1.2cm 1.2cm 1.6cm;
        @bottom-center { content: counter(page) " / " counter(pages); font-size: 8pt;
                         color: #667; } }
@media print { body { margin: 0; } }
</style></head>
<body>
{{ body }}
</body></html>
"""

BODY_TEMPLATE = """<div class="analysis-report">
<h1>{{ title }}</h1>
<p class="muted">{{ subtitle }}</p>
<table class="summary"><tbody>
{% for k, v in summary %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}
</tbody></table>
<table class="parameters"><caption>Parameters</caption>
<thead><tr><th>Parameter</th><th>Value</th></tr></thead><tbody>
{% for k, v in parameters %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}
</tbody></table>
{% for s in sections %}
<section class="analysis" id="analysis-{{ s.name }}">
<h2>{{ s.title }}</h2>
{% if s.status == "skipped" %}<p class="skipped">Skipped: {{ s.reason }}.</p>{% else %}
<p class="methods"><strong>Methods.</strong> {{ s.paragraph }}</p>
{% for t in s.tables %}<table><caption>{{ t.caption }}</caption>
<thead><tr>{% for h in t.headers %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in t.rows %}<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}
</tbody></table>{% endfor %}
{% for f in s.figures %}
<div class="figure"><img src="{{ f.src }}" alt="{{ f.title }}"></div>
{% endfor %}
{% if s.note %}<p class="muted">{{ s.note }}</p>{% endif %}
{% for m in s.methods %}<p class="muted">Computation: {{ m }}</p>{% endfor %}
{% for k in s.skipped %}<p class="skipped">Not computed ({{ k.id }}): {{ k.reason }}</p>{% endfor %}
{% for w in s.warnings %}<p class="skipped">Warning: {{ w }}</p>{% endfor %}
{% endif %}
</section>
{% endfor %}
</div>
"""


def _methods_and_warnings(section: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The section's distinct computation notes, and its warnings with the same text merged
    into one line naming every comparison it applies to."""
    methods: list[str] = []
    where: dict[str, list[str]] = {}
    for item in section["items"]:
        result = item["result"]
        if isinstance(result, dict):
            if result.get("method") and result["method"] not in methods:
                methods.append(result["method"])
            for w in result.get("warnings") or []:
                where.setdefault(w, [])
                if item["id"] not in where[w]:
                    where[w].append(item["id"])
    warnings = [f"{w} ({', '.join(ids)})" for w, ids in where.items()]
    return methods, warnings


def render_body(results: dict[str, Any], figures: dict[str, list[dict]], title: str) -> str:
    """The report's HTML fragment (headings, tables, figures), autoescaped."""
    from jinja2 import Environment

    env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    s = results["summary"]
    sections = []
    for name, section in results["analyses"].items():
        methods, warnings = _methods_and_warnings(section)
        sections.append(
            {
                "name": name,
                "title": section["title"],
                "status": section["status"],
                "reason": section["reason"],
                "tables": TABLES[name](section["items"]) if section["status"] == "done" else [],
                "figures": figures.get(name, []),
                "note": section.get("note", ""),
                "methods": methods,
                "paragraph": methods_paragraph(name, results["parameters"]),
                "warnings": warnings,
                "skipped": section["skipped"],
            }
        )
    summary = [
        ("Readers", s["n_readers"]),
        ("Cases", s["n_cases"]),
        ("Patients", s["n_patients"]),
        ("Arms", ", ".join(s["modalities"])),
        ("Reference arm", s["reference"] or "none"),
        ("Questions", s["n_questions"]),
        ("Reads (rows, first reads)", f"{s['n_rows']}, {s['n_first_reads']}"),
    ]
    return env.from_string(BODY_TEMPLATE).render(
        title=title,
        subtitle="Computed with studies.analysis; every number is reproduced by the bundle.",
        summary=summary,
        parameters=parameter_rows(results["parameters"]),
        sections=sections,
    )


def render_html(body: str, title: str) -> str:
    """A standalone HTML document around ``body`` (styles inline, figures embedded)."""
    from jinja2 import Environment
    from markupsafe import Markup

    env = Environment(autoescape=True)
    return env.from_string(REPORT_TEMPLATE).render(title=title, body=Markup(body))


def render_pdf(html: str) -> bytes:
    """The report as PDF (WeasyPrint; its per-page progress log is kept at WARNING)."""
    import logging

    from weasyprint import HTML

    logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)

    return HTML(string=html).write_pdf()


def write_report(
    csv_text: str,
    params: dict[str, Any],
    out_dir: str | Path,
    title: str,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Compute and write the whole report for the reads CSV ``csv_text`` into ``out_dir``.

    Writes reads.csv, parameters.json, results.json, report_body.html, report.html,
    report.pdf and bundle.zip; returns the results dict. ``progress(fraction, message)``
    is called as analyses finish (0-0.85 for the analyses, the rest for figures and files).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reads.csv").write_text(csv_text, encoding="utf-8")
    reads = load_reads(out / "reads.csv")
    params = normalise_parameters(params)

    def scaled(fraction: float, message: str) -> None:
        if progress:
            progress(0.85 * fraction, message)

    results = compute_results(reads, params, scaled)
    (out / "parameters.json").write_text(json.dumps(params, indent=2, sort_keys=True))
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True))
    if progress:
        progress(0.87, "Drawing the figures")
    figures = make_figures(reads, results)
    body = render_body(results, figures, title)
    html = render_html(body, title)
    (out / "report_body.html").write_text(body, encoding="utf-8")
    (out / "report.html").write_text(html, encoding="utf-8")
    if progress:
        progress(0.93, "Writing the PDF")
    (out / "report.pdf").write_bytes(render_pdf(html))
    from studies.bundle import build_bundle

    build_bundle(out, title)
    return results
