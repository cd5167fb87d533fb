"""Statistics for ReconTrial reader studies (pure pandas / numpy / scipy / statsmodels).

No Django import anywhere here: the functions run in a notebook on a tidy reads table
(``reader_id, case_id, patient_id, modality_id, value`` plus ``truth``, ``confidence`` or
``read_index`` where needed; see :mod:`studies.analysis.tidy`). Every function returns a
dataclass whose ``method`` says exactly what was computed and whose ``to_dict()`` is
JSON-friendly.
"""

from ._common import AnalysisError, Estimate, Result, holm
from .accuracy import AccuracyResult, diagnostic_accuracy, mcnemar
from .agreement import (
    FleissKappaResult,
    IntraReaderResult,
    KappaResult,
    cohen_kappa,
    cohen_kappa_table,
    fleiss_kappa,
    gwet_ac1,
    icc,
    intra_reader_agreement,
)
from .bland_altman import BlandAltmanResult, bland_altman
from .concordance import (
    KrippendorffResult,
    friedman_test,
    hodges_lehmann,
    kendall_w,
    krippendorff_alpha,
)
from .image_quality import (
    ScanTimeResult,
    SNRResult,
    acquisition_time,
    cnr,
    g_factor_map,
    magnitude_noise_factors,
    noise_sigma,
    pseudo_replica_sigma,
    scan_time_reduction,
    snr,
)
from .interchangeability import InterchangeabilityResult, interchangeability
from .likert import LikertResult, likert_comparison, rank_biserial
from .mrmc import MRMCResult, mrmc_or
from .noninferiority import NonInferiorityResult, clustered_mcnemar, noninferiority_gee
from .ordinal_mixed import OrdinalMixedResult, cumulative_logit_mixed, ordinal_mixed
from .planning import (
    VAN_DYKE_COMPONENTS,
    InterchangeabilityPlan,
    KappaSampleSize,
    ORVarianceComponents,
    PowerResult,
    SampleSizeResult,
    interchangeability_sample_size,
    kappa_sample_size,
    mrmc_power,
    mrmc_power_table,
    mrmc_sample_size,
    or_components_from_pilot,
)
from .preference import PreferenceResult, preference_analysis, preference_scores
from .tidy import READ_COLUMNS, ratings_matrix, require_columns, validate_reads

__all__ = [
    "READ_COLUMNS",
    "VAN_DYKE_COMPONENTS",
    "InterchangeabilityPlan",
    "KrippendorffResult",
    "NonInferiorityResult",
    "OrdinalMixedResult",
    "cumulative_logit_mixed",
    "ordinal_mixed",
    "clustered_mcnemar",
    "noninferiority_gee",
    "friedman_test",
    "hodges_lehmann",
    "kendall_w",
    "krippendorff_alpha",
    "KappaSampleSize",
    "ORVarianceComponents",
    "PowerResult",
    "SampleSizeResult",
    "interchangeability_sample_size",
    "kappa_sample_size",
    "mrmc_power",
    "mrmc_power_table",
    "mrmc_sample_size",
    "or_components_from_pilot",
    "AccuracyResult",
    "AnalysisError",
    "BlandAltmanResult",
    "Estimate",
    "FleissKappaResult",
    "InterchangeabilityResult",
    "IntraReaderResult",
    "KappaResult",
    "LikertResult",
    "MRMCResult",
    "PreferenceResult",
    "Result",
    "SNRResult",
    "ScanTimeResult",
    "acquisition_time",
    "bland_altman",
    "cnr",
    "cohen_kappa",
    "cohen_kappa_table",
    "diagnostic_accuracy",
    "fleiss_kappa",
    "g_factor_map",
    "gwet_ac1",
    "holm",
    "icc",
    "interchangeability",
    "intra_reader_agreement",
    "likert_comparison",
    "magnitude_noise_factors",
    "mcnemar",
    "mrmc_or",
    "noise_sigma",
    "preference_analysis",
    "preference_scores",
    "pseudo_replica_sigma",
    "rank_biserial",
    "ratings_matrix",
    "require_columns",
    "scan_time_reduction",
    "snr",
    "validate_reads",
]
