"""How a finished job's numbers are shown: rounded metrics with units, provenance as rows.

Stored values stay exact (JSON in the job row and the API); only the page rounds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

# metric key -> (label, unit, format spec); NMSE spans decades, so significant figures.
METRICS = {
    "psnr": ("PSNR", "dB", ".2f"),
    "ssim": ("SSIM", "", ".4f"),
    "nmse": ("NMSE", "", ".3g"),
}


def format_number(value, spec: str = ".4g") -> str:
    """A number with ``spec`` (4 significant figures by default); other values as text."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return format(value, spec) if math.isfinite(value) else str(value)


def metric_rows(metrics: Mapping) -> list[dict]:
    """One row per known metric in a fixed order, then any other metric except the label."""
    rows = [
        {"key": key, "label": label, "value": format_number(metrics[key], spec), "unit": unit}
        for key, (label, unit, spec) in METRICS.items()
        if key in metrics
    ]
    rows += [
        {"key": key, "label": key, "value": format_number(value), "unit": ""}
        for key, value in metrics.items()
        if key not in METRICS and key != "reference"
    ]
    return rows


def provenance_rows(provenance: Mapping, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, value) for every leaf of the provenance, numbers to 4 significant figures.

    Lists of scalars are joined with commas; nested mappings are flattened
    (``protocol.version``); an empty mapping is shown as "none".
    """
    for key, value in provenance.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if value:
                yield from provenance_rows(value, prefix=f"{name}.")
            else:
                yield name, "none"
        elif isinstance(value, (list, tuple)):
            yield name, ", ".join(format_number(v) for v in value) if value else "none"
        else:
            yield name, format_number(value) if value != "" else "–"
