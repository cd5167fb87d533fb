"""Methods paragraphs of the report: one per analysis, written so that a statistician can
paste it into a manuscript (which test, which interval and how it is kept inside the
parameter's range, which margin, with references). Pure text from the parameters."""

from __future__ import annotations

from typing import Any

PARAMETER_LABELS: dict[str, str] = {
    "reference": "Reference arm",
    "alpha": "Significance level (two-sided)",
    "n_boot": "Bootstrap resamples",
    "seed": "Random seed",
    "margin": "Interchangeability margin",
    "noninferiority_margin": "Non-inferiority margin (proportion correct)",
    "likert_threshold": "Likert score counted as diagnostic",
    "kappa_weights": "Kappa weights (Likert)",
    "roc_rating": "ROC rating",
    "mrmc_covariance": "MRMC AUC covariance",
    "n_coils": "Receive coils (noise correction)",
    "scales": "Likert scales",
    "categories": "Categories",
    "scan_times_s": "Acquisition times (s)",
    "reconstruction_families": "Reconstruction families",
}


def parameter_rows(params: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of the analysis parameters, for a table instead of a JSON blob."""
    rows = []
    for key, label in PARAMETER_LABELS.items():
        value = params.get(key)
        if isinstance(value, dict):
            text = "; ".join(f"{k}: {_plain(v)}" for k, v in sorted(value.items())) or "none"
        else:
            text = _plain(value)
        rows.append((label, text))
    return rows


def _plain(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _level(params: dict[str, Any]) -> str:
    return f"{100 * (1 - float(params['alpha'])):g}%"


def methods_paragraph(name: str, params: dict[str, Any]) -> str:
    """The paragraph for analysis ``name`` under ``params`` (normalised parameters)."""
    level, n_boot, seed = _level(params), params["n_boot"], params["seed"]
    weights = params["kappa_weights"]
    boot = f"{n_boot} resamples, seed {seed}"
    text = {
        "inter_reader": (
            "Inter-reader agreement on first reads was quantified per question and arm with "
            f"Cohen's kappa for two readers ({weights} weights for Likert scores, all scale "
            "levels kept; Fleiss-Cohen-Everitt standard error) and, for three or more "
            "readers, Fleiss' kappa (Gwet's generalisation when ratings are missing) and "
            "Gwet's AC1/AC2, which is robust to a dominant category, and Krippendorff's alpha "
            "(ordinal for Likert scores, nominal otherwise; unit-bootstrap interval). "
            f"{level} confidence intervals were computed on the Fisher-z (atanh) scale so "
            "that they stay within [-1, 1]; intervals from fewer than 10 cases are flagged. "
            "References: Cohen J, Psychol Bull 1968; Fleiss JL, Psychol Bull 1971; Fleiss JL, "
            "Cohen J, Everitt BS, Psychol Bull 1969; Gwet KL, Br J Math Stat Psychol 2008; "
            "Krippendorff K, Computing Krippendorff's alpha-reliability, 2011."
        ),
        "intra_reader": (
            "Intra-reader agreement was assessed from repeat reads after the washout: Cohen's "
            f"kappa ({weights} weights for Likert scores) between each reader's first and "
            "second read, per reader (Fisher-z intervals) and pooled over readers with a "
            f"case-level cluster bootstrap percentile interval ({boot}). Per-reader kappas "
            "from fewer than 10 repeated cases are flagged as unreliable. Reference: Cohen J, "
            "Psychol Bull 1968."
        ),
        "likert": (
            "Likert scores of each arm were compared with the reference arm by the Wilcoxon "
            "signed-rank test on per-case differences averaged over readers (cases as the "
            "independent units), with the matched-pairs rank-biserial correlation as effect "
            "size and per-reader tests Holm-adjusted; pooled p-values were Holm-adjusted "
            "across questions and arms. A proportional-odds (cumulative logit) model with arm "
            "and reader effects, fitted by Newton-Raphson, with case-clustered sandwich "
            "standard errors gives the common odds ratio of a higher score. The proportion "
            f"of reads scored >= {params['likert_threshold']:g} (diagnostic) is reported per "
            f"arm with case-cluster bootstrap percentile intervals ({boot}). References: "
            "Wilcoxon F, Biometrics Bull 1945; Holm S, Scand J Stat 1979; McCullagh P, "
            "J R Stat Soc B 1980; Kerby DS, Compr Psychol 2014."
        ),
        "interchangeability": (
            "Interchangeability of each arm with the reference was tested with Obuchowski's "
            "individual equivalence index, the excess disagreement gamma = A_CC - A_NC of "
            "ordered reader pairs, with a patient-level percentile bootstrap interval "
            f"({boot}; all of a patient's findings resampled together). An arm was deemed "
            f"interchangeable when the upper {level} bound of gamma lay below the margin of "
            f"{float(params['margin']):g}. References: Obuchowski NA, Subhas N, Schoenhagen P, "
            "Acad Radiol 2014; Almansour H et al., Radiology 2023."
        ),
        "accuracy": (
            "Sensitivity, specificity and accuracy against the reference standard were "
            "computed per reader and pooled over readers, with patient-level cluster "
            f"bootstrap percentile intervals ({boot}); Wilson score and Clopper-Pearson exact "
            "intervals are given for single readers in the results. Paired arms were compared "
            "per reader with McNemar's test (exact below 25 discordant pairs), Holm-adjusted "
            "across readers. Areas under the empirical ROC curve of the confidence ratings "
            "were compared with the Obuchowski-Rockette method with "
            f"{params['mrmc_covariance']} covariance and Hillis' denominator degrees of "
            "freedom, treating readers and cases as random; single-arm AUC intervals are on "
            "the logit scale and stay within [0, 1]. Non-inferiority of each arm's correct "
            "calls was tested with a marginal logistic model fitted by generalised estimating "
            "equations (exchangeable working correlation within patients, robust standard "
            "errors); an arm was non-inferior when the lower bound of the "
            f"{_level(params)} interval of the difference in proportions lay above "
            f"-{float(params['noninferiority_margin']):g}. "
            "References: Liang KY, Zeger SL, Biometrika 1986; Obuchowski NA, Rockette HE, "
            "Commun Stat Simul 1995; Hillis SL, Stat Med 2007; Wilson EB, JASA 1927; Clopper "
            "CJ, Pearson ES, Biometrika 1934; McNemar Q, Psychometrika 1947."
        ),
        "image_quality": (
            "SNR (mean signal / sigma) and CNR (absolute difference of two tissue means / "
            "sigma) were computed per read from the viewer's ROI summaries, sigma from a "
            f"background ROI corrected for {params['n_coils']}-coil magnitude noise (with "
            "several coils from the background's second moment, which stays exact under "
            "inter-coil noise correlation). Arms were compared on per-case means by the "
            "Wilcoxon signed-rank test with the Hodges-Lehmann shift. Background-noise values "
            "of parallel-imaging, compressed-sensing or deep-learning reconstructions are "
            "flagged (spatially varying noise). References: Constantinides CD et al., Magn "
            "Reson Med 1997; Dietrich O et al., J Magn Reson Imaging 2007."
        ),
        "bland_altman": (
            "Agreement of measurements between each arm and the reference was assessed with "
            "Bland-Altman bias and limits of agreement for repeated measurements per case "
            "(one-way ANOVA on the differences, case as the cluster), with approximate "
            f"{level} intervals of the bias and of both limits; proportional bias was tested "
            "by regressing the difference on the pair mean. References: Bland JM, Altman DG, "
            "Stat Methods Med Res 1999 and 2007."
        ),
        "preference": (
            "Side-by-side preferences were analysed per question and pair of arms with the "
            "two-sided exact sign test among decided reads (ties excluded) per reader and "
            "pooled, the pooled proportion preferring arm A with a case-cluster bootstrap "
            f"percentile interval ({boot})."
        ),
        "scan_time": (
            "Acquisition time was computed from each arm's protocol as TA = phase-encoding "
            "steps x TR x averages / acceleration, and the reduction as 1 - TA_new / "
            "TA_reference."
        ),
    }
    return text[name]
