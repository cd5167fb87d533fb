"""The statistician's report of a closed reader study (pure: no Django).

A package of three layers: :mod:`.compute` (numbers; numpy, pandas and
:mod:`studies.analysis` only), :mod:`.figures` (matplotlib) and :mod:`.render` (tables,
methods paragraphs, HTML, PDF). This module re-exports the public API.

Input: the tidy reads table (one row per read and question, the columns of
:func:`studies.export.tidy_reads`, loaded back from its CSV by :func:`load_reads` so that
the report and the bundle compute from byte-identical data) and the analysis parameters
(:func:`normalise_parameters`). :func:`compute_results` runs every chosen analysis with
:mod:`studies.analysis` and returns a JSON-friendly results dict; :func:`make_figures`
draws the plots (matplotlib, Agg, embedded as SVG data URIs); :func:`render_html` and
:func:`render_pdf` (WeasyPrint) turn both into the report; :func:`write_report` writes
``reads.csv``, ``parameters.json``, ``results.json``, ``report.html`` and ``report.pdf``.

Only numpy, pandas and :mod:`studies.analysis` are imported at module level, so the
bundle's ``reproduce.py`` recomputes every number without matplotlib, Jinja2, WeasyPrint
or Django.

Conventions (stated in the report):

* Agreement, comparisons and accuracy use first reads (``read_index == 1``); intra-reader
  agreement uses the repeat reads.
* Likert scales are passed in full (``parameters['scales']``), unused levels included.
* Findings are coded by the export's ``value_numeric`` / ``truth_numeric`` (1 / 0 for
  present / absent, grade index for graded findings, dichotomised at grade > 0 for
  accuracy and ROC; labels such as present/absent when no code is given). The ROC rating
  is the confidence signed by the call (``roc_rating = 'signed'``: present with confidence
  c -> 5 + c, absent -> 6 - c, higher = more likely diseased), or the confidence itself
  (``'confidence'``) when the form asks for a probability rating.
* SNR / CNR from ROI summaries (mean, SD): background method, sigma = SD(background ROI)
  / SD factor of ``n_coils``-coil magnitude noise; flagged where the reconstruction family
  has spatially varying noise.
"""

from .compute import (
    ANALYSES,
    DEFAULT_PARAMETERS,
    PAIRED_ANALYSES,
    ProgressCallback,
    ReportError,
    background_sigma,
    compare_results,
    compute_results,
    finding_calls,
    image_quality_table,
    load_reads,
    normalise_parameters,
    paired_case_comparison,
    paired_reads,
    roc_ratings,
    single_arm_reads,
)
from .figures import empirical_roc, make_figures
from .render import render_body, render_html, render_pdf, write_report

__all__ = [
    "ANALYSES",
    "DEFAULT_PARAMETERS",
    "PAIRED_ANALYSES",
    "ProgressCallback",
    "ReportError",
    "background_sigma",
    "compare_results",
    "compute_results",
    "empirical_roc",
    "finding_calls",
    "image_quality_table",
    "load_reads",
    "make_figures",
    "normalise_parameters",
    "paired_case_comparison",
    "paired_reads",
    "render_body",
    "render_html",
    "render_pdf",
    "roc_ratings",
    "single_arm_reads",
    "write_report",
]
