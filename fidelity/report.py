"""The fidelity report: tables and figures (matplotlib SVG) of a finished run, HTML or PDF."""

from __future__ import annotations

import base64
import io
from collections import defaultdict

from django.template.loader import render_to_string

from fidelity.models import FidelityRun


def _svg_uri(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def detectability_figure(rows: list[dict], observer: str = "cho") -> str:
    """AUC against lesion size, one line per protocol (and background)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    lines = defaultdict(list)
    for row in rows:
        lines[(row["protocol"], row["background"])].append((row["size_mm"], row[f"{observer}_auc"]))
    for (protocol, background), points in sorted(lines.items()):
        points.sort()
        label = protocol if len({b for _, b in lines}) == 1 else f"{protocol} / {background}"
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.axhline(0.9, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("lesion size (mm)")
    ax.set_ylabel(f"{observer.upper()} AUC")
    ax.set_ylim(0.45, 1.02)
    ax.legend(fontsize=7)
    return _svg_uri(fig)


def instability_figure(rows: list[dict]) -> str | None:
    """Relative output change against perturbation norm: worst case (solid) vs random."""
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    by_protocol = defaultdict(list)
    for row in rows:
        by_protocol[row["protocol"]].append(row)
    for protocol, points in sorted(by_protocol.items()):
        points.sort(key=lambda r: r["epsilon"])
        eps = [p["epsilon"] for p in points]
        (line,) = ax.plot(
            eps, [p["worst_change"] for p in points], marker="o", label=f"{protocol}: worst case"
        )
        ax.plot(
            eps,
            [p["random_change"] for p in points],
            marker="x",
            linestyle=":",
            color=line.get_color(),
            label=f"{protocol}: random",
        )
    ax.set_xlabel("perturbation norm / measured k-space norm")
    ax.set_ylabel("relative image change")
    ax.legend(fontsize=7)
    return _svg_uri(fig)


def report_context(run: FidelityRun) -> dict:
    results = run.results or {}
    rows = results.get("rows", [])
    return {
        "run": run,
        "summary": results.get("summary", []),
        "rows": rows,
        "instability": results.get("instability", []),
        "skipped": results.get("skipped", []),
        "detectability_cho": detectability_figure(rows, "cho") if rows else None,
        "detectability_npw": detectability_figure(rows, "npw") if rows else None,
        "instability_plot": instability_figure(results.get("instability", [])),
    }


def render_pdf(run: FidelityRun) -> bytes:
    """The report as a standalone PDF (WeasyPrint, as the analysis report)."""
    import logging

    from weasyprint import HTML

    logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)
    html = render_to_string(
        "fidelity/report_body.html", {**report_context(run), "standalone": True}
    )
    return HTML(string=html).write_pdf()
