"""Figures of the report (matplotlib, Agg backend, embedded as SVG data URIs)."""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np
import pandas as pd

from .compute import (
    PAIRED_ANALYSES,
    _categories,
    _first_reads,
    _measurement_pairs,
    _modalities,
    _numeric_value,
    finding_calls,
    image_quality_table,
    roc_ratings,
    single_arm_reads,
)

# ---------------------------------------------------------------------------- figures


def _svg(fig) -> str:
    """The figure as an SVG data URI (text kept as text: smaller, selectable)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "recontrial", "font.size": 9})
    return plt


def _forest(rows: list[tuple[str, float, float, float]], title: str, xlabel: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(rows) + 1.2))
    y = np.arange(len(rows))[::-1]
    for yi, (_label, est, lo, hi) in zip(y, rows, strict=True):
        if np.isfinite(lo) and np.isfinite(hi):
            ax.plot([lo, hi], [yi, yi], color="#1f4e9c", lw=1.5)
        ax.plot([est], [yi], "s", color="#1f4e9c")
    ax.set_yticks(y)
    ax.set_yticklabels([r[0] for r in rows])
    ax.axvline(0, color="#888", lw=0.8, ls=":")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _svg(fig)


def _ci(est: dict[str, Any]) -> tuple[float, float]:
    ci = est.get("ci") or [None, None]
    return tuple(math.nan if v is None else float(v) for v in ci)  # type: ignore[return-value]


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def _fig_inter_reader(section: dict[str, Any], reads, params) -> list[dict[str, str]]:
    rows = []
    for item in section["items"]:
        lo, hi = _ci(item["result"])
        rows.append(
            (
                f"{item['label']} [{item['modality']}] {item['coefficient']}",
                _num(item["result"]["estimate"]),
                lo,
                hi,
            )
        )
    if not rows:
        return []
    return [
        {
            "title": "Inter-reader agreement (forest plot)",
            "src": _forest(rows, "Inter-reader agreement", "coefficient (95% CI)"),
        }
    ]


def _fig_intra_reader(section: dict[str, Any], reads, params) -> list[dict[str, str]]:
    rows = []
    for item in section["items"]:
        for est in item["result"]["pooled"]:
            lo, hi = _ci(est)
            mod = est["details"].get("modality_id")
            rows.append((f"{item['label']} [{mod}]", _num(est["estimate"]), lo, hi))
    if not rows:
        return []
    return [
        {
            "title": "Intra-reader agreement (forest plot)",
            "src": _forest(rows, "Pooled intra-reader kappa", "kappa (95% CI)"),
        }
    ]


def _fig_likert(section: dict[str, Any], reads: pd.DataFrame, params) -> list[dict[str, str]]:
    plt = _plt()
    first = _first_reads(reads)
    figures = []
    keys = list(dict.fromkeys(item["question"] for item in section["items"]))
    for key in keys:
        q = first[first["question"] == key]
        label = next(i["label"] for i in section["items"] if i["question"] == key)
        values = _numeric_value(q)
        cats = _categories(q, key, "likert", params)
        mods = _modalities(q)
        fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(mods) + 1.3))
        left = np.zeros(len(mods))
        cmap = plt.get_cmap("RdYlGn", max(len(cats), 2))
        for ci, cat in enumerate(cats):
            share = np.array(
                [
                    float((values[q["modality_id"] == m] == cat).mean() * 100)
                    if (q["modality_id"] == m).any()
                    else 0.0
                    for m in mods
                ]
            )
            ax.barh(mods, share, left=left, color=cmap(ci), label=str(cat), edgecolor="white")
            left += share
        ax.set_xlim(0, 100)
        ax.set_xlabel("% of reads")
        ax.invert_yaxis()
        ax.set_title(f"{label}: scores per arm")
        ax.legend(
            title="score",
            ncol=len(cats),
            loc="upper center",
            bbox_to_anchor=(0.5, -0.35),
            frameon=False,
        )
        figures.append({"title": f"Likert scores: {label}", "src": _svg(fig)})
    return figures


def _fig_interchangeability(section: dict[str, Any], reads, params) -> list[dict[str, str]]:
    if not section["items"]:
        return []
    plt = _plt()
    items = section["items"]
    fig, ax = plt.subplots(figsize=(6.5, 0.4 * len(items) + 1.3))
    y = np.arange(len(items))[::-1]
    for yi, item in zip(y, items, strict=True):
        r = item["result"]
        lo, hi = _ci(r)
        color = "#17803d" if r["interchangeable"] else "#b42318"
        ax.plot([lo, hi], [yi, yi], color=color, lw=1.5)
        ax.plot([_num(r["gamma"])], [yi], "o", color=color)
    margin = items[0]["result"]["margin"]
    ax.axvline(margin, color="#b42318", ls="--", lw=1, label=f"margin {margin:g}")
    ax.axvline(0, color="#888", ls=":", lw=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{i['label']} [{i['modality']} vs {i['reference']}]" for i in items])
    ax.set_xlabel("gamma = A_CC - A_NC (95% CI)")
    ax.set_title("Interchangeability: CI against the margin")
    ax.legend(loc="lower right", frameon=False)
    return [{"title": "Interchangeability", "src": _svg(fig)}]


def empirical_roc(ratings: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) of the empirical ROC curve over every distinct rating threshold."""
    thresholds = np.unique(ratings)[::-1]
    pos, neg = truth == 1, truth == 0
    tpr = [0.0] + [float((ratings[pos] >= t).mean()) for t in thresholds]
    fpr = [0.0] + [float((ratings[neg] >= t).mean()) for t in thresholds]
    return np.array(fpr), np.array(tpr)


def _fig_accuracy(section: dict[str, Any], reads: pd.DataFrame, params) -> list[dict[str, str]]:
    plt = _plt()
    first = _first_reads(reads)
    figures = []
    for item in section["items"]:
        if item["analysis"] != "mrmc":
            continue
        key = item["question"]
        q = first[(first["question"] == key) & first["truth"].notna()]
        rating = roc_ratings(q, params).to_numpy(dtype=float)
        truth = finding_calls(q)[1].to_numpy(dtype=int)
        aucs = {
            str(e["details"].get("modality_id", e["name"])): e["estimate"]
            for e in item["result"]["random_readers_random_cases"]["modality_auc"]
        }
        fig, ax = plt.subplots(figsize=(4.8, 4.5))
        mods = q["modality_id"].to_numpy()
        for mod in _modalities(q):
            sel = mods == mod
            fpr, tpr = empirical_roc(rating[sel], truth[sel])
            auc = aucs.get(mod)
            ax.plot(fpr, tpr, marker=".", label=f"{mod}" + (f" (AUC {auc:.3f})" if auc else ""))
        ax.plot([0, 1], [0, 1], color="#888", ls=":", lw=0.8)
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("sensitivity")
        ax.set_title(f"ROC (pooled over readers): {item['label']}")
        ax.legend(loc="lower right", frameon=False)
        figures.append({"title": f"ROC curves: {item['label']}", "src": _svg(fig)})
    return figures


def _fig_image_quality(section: dict[str, Any], reads: pd.DataFrame, params) -> list[dict]:
    table = image_quality_table(reads, params)
    if table.empty:
        return []
    plt = _plt()
    figures = []
    for (measure, name), g in table.groupby(["measure", "name"], sort=True):
        mods = _modalities(g)
        fig, ax = plt.subplots(figsize=(5.5, 3.2))
        ax.boxplot([g.loc[g["modality_id"] == m, "value"].to_numpy() for m in mods])
        ax.set_xticks(range(1, len(mods) + 1))
        ax.set_xticklabels(mods)
        ax.set_ylabel(measure)
        ax.set_title(f"{measure}: {name}")
        figures.append({"title": f"{measure} box plot: {name}", "src": _svg(fig)})
    return figures


def _fig_bland_altman(section: dict[str, Any], reads: pd.DataFrame, params) -> list[dict]:
    plt = _plt()
    figures = []
    for item in section["items"]:
        q = reads[reads["question"] == item["question"]]
        pairs = _measurement_pairs(q, item["reference"], item["modality"])
        new = pairs[item["modality"]].to_numpy(dtype=float)
        ref = pairs[item["reference"]].to_numpy(dtype=float)
        r = item["result"]
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        ax.scatter((new + ref) / 2, new - ref, s=14, color="#1f4e9c")
        ax.axhline(r["bias"], color="#1f4e9c", label=f"bias {r['bias']:.3g}")
        for limit, ci in zip(r["loa"], (r["loa_lower_ci"], r["loa_upper_ci"]), strict=True):
            ax.axhline(limit, color="#b42318", ls="--", lw=1)
            ax.axhspan(ci[0], ci[1], color="#b42318", alpha=0.08, lw=0)
        trend = r.get("proportional_bias") or {}
        if trend.get("slope") is not None and len(new):
            xs = np.linspace(float(((new + ref) / 2).min()), float(((new + ref) / 2).max()), 2)
            ax.plot(
                xs,
                trend["intercept"] + trend["slope"] * xs,
                color="#6b7280",
                lw=1,
                label=f"proportional bias: slope {trend['slope']:.3g} (p {trend['p_value']:.2g})",
            )
        ax.set_xlabel("mean of the two arms")
        ax.set_ylabel(f"{item['modality']} - {item['reference']}")
        ax.set_title(f"Bland-Altman: {item['label']}")
        ax.legend(loc="best", frameon=False)
        figures.append({"title": f"Bland-Altman: {item['label']}", "src": _svg(fig)})
    return figures


def _fig_preference(section: dict[str, Any], reads, params) -> list[dict]:
    """Stacked bars per reader (and pooled): share preferring A, equal, preferring B."""
    plt = _plt()
    figures = []
    for item in section["items"]:
        r = item["result"]
        rows = [*r["per_reader"], {"reader_id": "all", **r}]
        names = [str(row["reader_id"]) for row in rows]
        a = np.array([row["proportion_a"] for row in rows], dtype=float)
        e = np.array([row["proportion_equal"] for row in rows], dtype=float)
        b = np.array([row["proportion_b"] for row in rows], dtype=float)
        fig, ax = plt.subplots(figsize=(5.5, 0.5 + 0.35 * len(rows)))
        ax.barh(names, a, color="#1f4e9c", label=f"prefers {item['arm_a']}")
        ax.barh(names, e, left=a, color="#b8c2cc", label="equal")
        ax.barh(names, b, left=a + e, color="#b42318", label=f"prefers {item['arm_b']}")
        ax.set_xlim(0, 1)
        ax.set_xlabel("proportion of side-by-side reads")
        ax.invert_yaxis()
        ax.legend(loc="lower right", frameon=False, fontsize=7)
        title = f"Preference: {item['label']} ({item['arm_a']} vs {item['arm_b']})"
        ax.set_title(title)
        figures.append({"title": title, "src": _svg(fig)})
    return figures


FIGURES = {
    "inter_reader": _fig_inter_reader,
    "intra_reader": _fig_intra_reader,
    "likert": _fig_likert,
    "interchangeability": _fig_interchangeability,
    "accuracy": _fig_accuracy,
    "image_quality": _fig_image_quality,
    "bland_altman": _fig_bland_altman,
    "preference": _fig_preference,
}


def make_figures(reads: pd.DataFrame, results: dict[str, Any]) -> dict[str, list[dict]]:
    """{analysis: [{title, src (SVG data URI)}]} for every analysis that was run."""
    params = results["parameters"]
    single = single_arm_reads(reads)
    out: dict[str, list[dict]] = {}
    for name, section in results["analyses"].items():
        if section["status"] == "done" and name in FIGURES:
            source = reads if name in PAIRED_ANALYSES else single
            out[name] = FIGURES[name](section, source, params)
    return out
