"""Study planning: power and sample size before a reader study opens.

MRMC ROC studies (two modalities, empirical AUC) follow Hillis, Obuchowski & Berbaum
(2011, Acad Radiol 18:129, "Power estimation for multireader ROC methods: an updated and
unified approach"), as RJafroc's ``SsPowerGivenJKOrVarCom`` implements it. The
Obuchowski-Rockette (OR) components of a pilot with ``K*`` cases (error variance ``Var``,
covariances ``Cov1..Cov3``, treatment-by-reader variance ``sigma2_TR``) are rescaled to a
pivotal study with ``J`` readers and ``K`` cases (case-sampling terms scale by ``K*/K``)::

    D      = max(sigma2_TR, 0) + K*/K (Var - Cov1 + (J - 1) max(Cov2 - Cov3, 0))
    lambda = J delta^2 / 2 / D                      (non-centrality, delta = AUC difference)
    ddf_H  = D^2 (J - 1) / (max(sigma2_TR, 0) + K*/K (Var - Cov1 - max(Cov2 - Cov3, 0)))^2
    power  = P(F(1, ddf_H; lambda) > F_(1-alpha)(1, ddf_H))

Fixed readers use the chi-square limit (ddf = infinity, D without sigma2_TR) and fixed
cases ``ddf = J - 1``. ``sigma2_TR = MS(T*R) - Var + Cov1 + max(Cov2 - Cov3, 0)``.

Interchangeability studies (Obuchowski's individual equivalence index) and kappa studies
have no closed form that covers readers, findings and prevalence together, so
:func:`interchangeability_sample_size` simulates the planned study; the kappa sample size
uses Cantor's (1996) normal approximation with the Fleiss-Cohen-Everitt variance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ._common import AnalysisError, Result, check_alpha
from .mrmc import mrmc_or

ANALYSES = ("RRRC", "FRRC", "RRFC")


@dataclass
class ORVarianceComponents(Result):
    """Obuchowski-Rockette variance components of a pilot study with ``n_cases`` cases."""

    var_error: float
    cov1: float
    cov2: float
    cov3: float
    var_tr: float
    n_cases: int
    observed_effect: float = math.nan
    source: str = ""


# Published defaults for stated-assumption planning: the Van Dyke et al. (1993) cine vs
# spin-echo MRI study (5 readers x 114 cases), OR components as printed by OR-DBM MRMC 2.51
# (trapezoidal AUC, jackknife); sigma2_TR = MS(T*R) 0.00055103 - Var + Cov1 + (Cov2 - Cov3).
VAN_DYKE_COMPONENTS = ORVarianceComponents(
    var_error=0.00080229,
    cov1=0.00034661,
    cov2=0.00034407,
    cov3=0.00023903,
    var_tr=0.00055103 - 0.00080229 + 0.00034661 + (0.00034407 - 0.00023903),
    n_cases=114,
    observed_effect=-0.04380032,
    source="published defaults: Van Dyke et al. (1993), 5 readers x 114 cases (OR-DBM MRMC)",
)


def or_components_from_pilot(pilot: pd.DataFrame, **mrmc_kwargs: Any) -> ORVarianceComponents:
    """OR components of a pilot reads table (the input of :func:`mrmc_or`, 2 modalities).

    ``sigma2_TR = MS(T*R) - Var + Cov1 + max(Cov2 - Cov3, 0)`` (Hillis et al. 2011);
    ``observed_effect`` is the first pairwise AUC difference of the pilot.
    """
    res = mrmc_or(pilot, **mrmc_kwargs)
    if len(res.modalities) != 2:
        raise AnalysisError(
            f"planning: the pilot must compare 2 modalities, it has {len(res.modalities)}"
        )
    var_tr = res.ms_tr - res.var_error + res.cov1 + max(res.cov2 - res.cov3, 0.0)
    diff = res.random_readers_random_cases.differences[0].estimate
    return ORVarianceComponents(
        var_error=res.var_error,
        cov1=res.cov1,
        cov2=res.cov2,
        cov3=res.cov3,
        var_tr=float(var_tr),
        n_cases=res.n_normal + res.n_abnormal,
        observed_effect=float(diff),
        source=(
            f"pilot: {len(res.readers)} readers x {res.n_normal + res.n_abnormal} cases "
            f"({res.n_abnormal} diseased), {res.covariance} covariance"
        ),
    )


def _components(
    components: ORVarianceComponents | dict[str, float] | None, pilot: pd.DataFrame | None
) -> ORVarianceComponents:
    if (components is None) == (pilot is None):
        raise AnalysisError("planning: give either variance components or a pilot table")
    if pilot is not None:
        return or_components_from_pilot(pilot)
    if isinstance(components, dict):
        needed = ("var_error", "cov1", "cov2", "cov3", "var_tr", "n_cases")
        missing = [k for k in needed if k not in components]
        if missing:
            raise AnalysisError(f"planning: variance components lack {missing}")
        try:
            components = ORVarianceComponents(
                **{k: float(components[k]) for k in needed[:-1]},
                n_cases=int(components["n_cases"]),
                source=str(components.get("source", "stated assumptions")),
            )
        except (TypeError, ValueError) as exc:
            raise AnalysisError(f"planning: variance components must be numbers ({exc})") from exc
    assert isinstance(components, ORVarianceComponents)
    values = [components.var_error, components.cov1, components.cov2, components.cov3]
    if not all(math.isfinite(v) for v in [*values, components.var_tr]):
        raise AnalysisError("planning: variance components must be finite")
    if components.var_error <= 0 or components.n_cases < 2:
        raise AnalysisError("planning: Var must be positive and the pilot needs >= 2 cases")
    return components


@dataclass
class PowerResult(Result):
    """Power of one planned MRMC study (``readers`` x ``cases``) for one analysis."""

    analysis: str
    readers: int
    cases: int
    effect: float
    alpha: float
    power: float
    noncentrality: float
    ddf: float
    f_critical: float
    method: str
    components: ORVarianceComponents | None = None
    warnings: list[str] = field(default_factory=list)


def _power(
    j: int, k: int, effect: float, comp: ORVarianceComponents, alpha: float, analysis: str
) -> tuple[float, float, float, float]:
    """(power, non-centrality, ddf, critical value) for J readers and K cases."""
    scale = comp.n_cases / k
    c23 = max(comp.cov2 - comp.cov3, 0.0)
    var_tr = max(comp.var_tr, 0.0)
    if analysis == "RRRC":
        den = var_tr + scale * (comp.var_error - comp.cov1 + (j - 1) * c23)
        ddf = den**2 * (j - 1) / (var_tr + scale * (comp.var_error - comp.cov1 - c23)) ** 2
    elif analysis == "FRRC":
        den = scale * (comp.var_error - comp.cov1 + (j - 1) * c23)
        ddf = math.inf
    else:
        den = var_tr + scale * (comp.var_error - comp.cov1 - c23)
        ddf = float(j - 1)
    if not den > 0:
        raise AnalysisError(f"planning: the {analysis} error term is not positive ({den:.3g})")
    ncp = j * effect**2 / 2 / den
    if math.isinf(ddf):
        crit = float(stats.chi2.ppf(1 - alpha, 1))
        power = float(stats.ncx2.sf(crit, 1, ncp))
    else:
        crit = float(stats.f.ppf(1 - alpha, 1, ddf))
        power = float(stats.ncf.sf(crit, 1, ddf, ncp))
    return power, float(ncp), float(ddf), crit


def _check_design(readers: int, cases: int | None, analysis: str) -> None:
    if analysis not in ANALYSES:
        raise AnalysisError(f"planning: analysis must be one of {ANALYSES}, got {analysis!r}")
    if int(readers) != readers or readers < 2:
        raise AnalysisError(f"planning: need at least 2 readers, got {readers}")
    if cases is not None and (int(cases) != cases or cases < 2):
        raise AnalysisError(f"planning: need at least 2 cases, got {cases}")


def mrmc_power(
    readers: int,
    cases: int,
    effect: float | None = None,
    components: ORVarianceComponents | dict[str, float] | None = None,
    pilot: pd.DataFrame | None = None,
    alpha: float = 0.05,
    analysis: str = "RRRC",
) -> PowerResult:
    """Power of a two-modality MRMC ROC study with ``readers`` x ``cases`` (fully crossed).

    Variance components come from ``pilot`` (a reads table for :func:`mrmc_or`) or
    ``components`` (:class:`ORVarianceComponents` or a dict with var_error, cov1, cov2,
    cov3, var_tr, n_cases). ``effect`` is the AUC difference to detect (default: the
    pilot's observed difference). ``analysis``: RRRC (random readers and cases, the
    default), FRRC or RRFC. Hillis, Obuchowski & Berbaum (2011); matches RJafroc
    ``SsPowerGivenJK(method = "OR")``.
    """
    alpha = check_alpha(alpha)
    _check_design(readers, cases, analysis)
    comp = _components(components, pilot)
    effect = _effect(effect, comp)
    power, ncp, ddf, crit = _power(int(readers), int(cases), effect, comp, alpha, analysis)
    return PowerResult(
        analysis=analysis,
        readers=int(readers),
        cases=int(cases),
        effect=effect,
        alpha=alpha,
        power=power,
        noncentrality=ncp,
        ddf=ddf,
        f_critical=crit,
        method=_method(analysis, comp),
        components=comp,
        warnings=_planning_warnings(comp, int(readers)),
    )


def _effect(effect: float | None, comp: ORVarianceComponents) -> float:
    if effect is None:
        effect = comp.observed_effect
        if not math.isfinite(effect):
            raise AnalysisError("planning: state the AUC difference (effect) to detect")
    effect = float(effect)
    if not math.isfinite(effect) or effect == 0 or abs(effect) >= 1:
        raise AnalysisError(
            f"planning: the AUC difference to detect must be non-zero and below 1, got {effect}"
        )
    return effect


def _method(analysis: str, comp: ORVarianceComponents) -> str:
    test = {
        "RRRC": "F-test with Hillis ddf_H (random readers and cases)",
        "FRRC": "chi-square test (fixed readers, random cases)",
        "RRFC": "F-test with J-1 df (random readers, fixed cases)",
    }[analysis]
    return (
        "power of the Obuchowski-Rockette test of equal AUCs, Hillis, Obuchowski & Berbaum "
        f"(2011) non-central {test}; OR variance components from {comp.source or 'input'}, "
        f"case terms rescaled by K*/K with K* = {comp.n_cases}"
    )


def _planning_warnings(comp: ORVarianceComponents, readers: int) -> list[str]:
    warn = []
    if comp.var_tr < 0:
        warn.append(
            "the pilot's treatment-by-reader variance estimate is negative and was set to 0; "
            "reader variability may be underestimated"
        )
    if readers < 4:
        warn.append(f"{readers} readers: random-reader results hardly generalise below 4")
    if comp.n_cases < 50:
        warn.append(
            f"the variance components rest on only {comp.n_cases} cases: they are very "
            "uncertain, so read the sample sizes as a rough guide"
        )
    return warn


@dataclass
class SampleSizeResult(Result):
    """Smallest number of cases reaching ``target_power`` for ``readers`` readers."""

    analysis: str
    readers: int
    cases: int | None
    power: float
    target_power: float
    effect: float
    alpha: float
    method: str
    warnings: list[str] = field(default_factory=list)


def mrmc_sample_size(
    readers: int,
    power: float = 0.8,
    effect: float | None = None,
    components: ORVarianceComponents | dict[str, float] | None = None,
    pilot: pd.DataFrame | None = None,
    alpha: float = 0.05,
    analysis: str = "RRRC",
    max_cases: int = 20_000,
) -> SampleSizeResult:
    """Smallest number of cases K with power >= ``power`` for ``readers`` readers.

    Power increases with K, so K is found by doubling and bisection (RJafroc
    ``SsSampleSizeKGivenJ`` steps K by one, with the same answer). ``cases`` is None, with
    a warning, when even ``max_cases`` cases do not reach the power (for random readers
    the power is bounded by the reader variance: add readers instead).
    """
    alpha = check_alpha(alpha)
    _check_design(readers, None, analysis)
    if not 0 < power < 1:
        raise AnalysisError(f"planning: power must lie in (0, 1), got {power}")
    comp = _components(components, pilot)
    effect = _effect(effect, comp)
    j = int(readers)

    def pw(k: int) -> float:
        return _power(j, k, effect, comp, alpha, analysis)[0]

    warn = _planning_warnings(comp, j)
    if pw(max_cases) < power:
        warn.append(
            f"{j} readers cannot reach power {power:g} with up to {max_cases} cases: add readers"
        )
        return SampleSizeResult(
            analysis, j, None, pw(max_cases), power, effect, alpha, _method(analysis, comp), warn
        )
    lo, hi = 1, 2
    while pw(hi) < power:
        lo, hi = hi, min(2 * hi, max_cases)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if pw(mid) < power else (lo, mid)
    k = max(hi, 2)
    return SampleSizeResult(
        analysis, j, k, pw(k), power, effect, alpha, _method(analysis, comp), warn
    )


def mrmc_power_table(
    readers: list[int] | range = range(3, 16),
    power: float = 0.8,
    effect: float | None = None,
    components: ORVarianceComponents | dict[str, float] | None = None,
    pilot: pd.DataFrame | None = None,
    alpha: float = 0.05,
    analysis: str = "RRRC",
) -> list[SampleSizeResult]:
    """:func:`mrmc_sample_size` for each number of readers (RJafroc ``SsPowerTable``)."""
    comp = _components(components, pilot)
    return [mrmc_sample_size(j, power, effect, comp, None, alpha, analysis) for j in readers]


# ------------------------------------------------------------------- interchangeability


@dataclass
class InterchangeabilityPlan(Result):
    """Simulated power of an interchangeability study per number of patients."""

    readers: int
    margin: float
    alpha: float
    rows: list[dict[str, float]]
    patients: int | None
    target_power: float
    n_simulations: int
    seed: int
    method: str
    warnings: list[str] = field(default_factory=list)


def _simulate_gamma_upper(
    rng: np.random.Generator,
    n_sim: int,
    patients: int,
    readers: int,
    prevalence: float,
    accuracy_reference: float,
    accuracy_new: float,
    reader_sd: float,
    z: float,
) -> np.ndarray:
    """Upper confidence bounds of gamma for ``n_sim`` simulated studies (vectorised).

    Every patient has one binary finding with the given prevalence; reader j calls it
    correctly with probability ``expit(logit(accuracy) + u_j)``, u_j ~ N(0, reader_sd^2)
    shared by both arms. The bound is gamma + z SE with the patient-level linearised SE
    of the ratio estimator (the bootstrap of :func:`interchangeability` approximates the
    same quantity).
    """
    truth = rng.random((n_sim, patients, 1)) < prevalence
    u = rng.normal(0.0, reader_sd, (n_sim, 1, readers))

    def reads(acc: float) -> np.ndarray:
        p = 1 / (1 + np.exp(-(math.log(acc / (1 - acc)) + u)))
        correct = rng.random((n_sim, patients, readers)) < p
        return np.where(correct, truth, ~truth)

    yc, yn = reads(accuracy_reference), reads(accuracy_new)
    sc = yc.sum(2)
    agree_cc = sc**2 + (readers - sc) ** 2 - readers
    pairs = readers * (readers - 1)
    sn = yn.sum(2)
    same = (yn == yc).sum(2)
    agree_nc = sn * sc + (readers - sn) * (readers - sc) - same
    g = (agree_cc - agree_nc) / pairs
    gamma = g.mean(1)
    se = g.std(1, ddof=1) / math.sqrt(patients)
    return gamma + z * se


def interchangeability_sample_size(
    readers: int,
    prevalence: float,
    accuracy_reference: float,
    accuracy_new: float | None = None,
    margin: float = 0.05,
    power: float = 0.8,
    alpha: float = 0.05,
    patients: list[int] | range = range(20, 401, 20),
    reader_sd: float = 0.3,
    n_simulations: int = 1000,
    seed: int = 0,
) -> InterchangeabilityPlan:
    """Power to show interchangeability (upper CI bound of gamma < ``margin``) by simulation.

    The planned study: ``readers`` readers read every patient's binary finding under both
    arms; ``accuracy_*`` is each arm's probability of a correct call (the new arm equal to
    the reference by default: true interchangeability), readers vary by ``reader_sd`` on
    the logit scale. For each number of patients, ``n_simulations`` studies are simulated
    and the power is the fraction whose two-sided ``1 - alpha`` upper bound of gamma lies
    below the margin (Obuchowski, Subhas & Schoenhagen 2014). ``patients`` in the result
    is the smallest number reaching ``power`` (None if none does).
    """
    alpha = check_alpha(alpha)
    if int(readers) != readers or readers < 2:
        raise AnalysisError(f"planning: need at least 2 readers, got {readers}")
    for name, p in (("prevalence", prevalence), ("accuracy_reference", accuracy_reference)):
        if not 0 < p < 1:
            raise AnalysisError(f"planning: {name} must lie in (0, 1), got {p}")
    accuracy_new = accuracy_reference if accuracy_new is None else accuracy_new
    if not 0 < accuracy_new < 1:
        raise AnalysisError(f"planning: accuracy_new must lie in (0, 1), got {accuracy_new}")
    if not 0 < margin < 1 or not 0 < power < 1:
        raise AnalysisError("planning: margin and power must lie in (0, 1)")
    sizes = sorted({int(n) for n in patients})
    if not sizes or sizes[0] < 5:
        raise AnalysisError("planning: simulate at least 5 patients per study")
    if n_simulations < 100:
        raise AnalysisError("planning: n_simulations must be at least 100")
    rng = np.random.default_rng(seed)
    z = float(stats.norm.ppf(1 - alpha / 2))
    rows = []
    needed = None
    for n in sizes:
        upper = _simulate_gamma_upper(
            rng, n_simulations, n, int(readers), prevalence, accuracy_reference,
            accuracy_new, reader_sd, z,
        )  # fmt: skip
        pw = float(np.mean(upper < margin))
        rows.append({"patients": n, "power": pw, "mc_se": math.sqrt(pw * (1 - pw) / n_simulations)})
        if needed is None and pw >= power:
            needed = n
    warn = []
    if needed is None:
        warn.append(f"no simulated size up to {sizes[-1]} patients reaches power {power:g}")
    return InterchangeabilityPlan(
        readers=int(readers),
        margin=float(margin),
        alpha=alpha,
        rows=rows,
        patients=needed,
        target_power=float(power),
        n_simulations=int(n_simulations),
        seed=int(seed),
        method=(
            f"simulation ({n_simulations} studies per size, seed {seed}) of {readers} readers "
            f"x N patients, one binary finding each (prevalence {prevalence:g}), accuracy "
            f"{accuracy_reference:g} (reference) / {accuracy_new:g} (new), reader logit SD "
            f"{reader_sd:g}; power = P(upper {100 * (1 - alpha):g}% bound of gamma < "
            f"{margin:g}) (Obuchowski, Subhas & Schoenhagen 2014)"
        ),
        warnings=warn,
    )


# ------------------------------------------------------------------------------ kappa


def kappa_variance_binary(kappa: float, prevalence: float) -> float:
    """n x Var(kappa-hat) for two raters, binary ratings, both with marginal ``prevalence``.

    The 2 x 2 table implied by (kappa, prevalence) has p11 = pi^2 + kappa pi (1 - pi);
    the variance is Fleiss, Cohen & Everitt's (1969) large-sample formula.
    """
    pi = prevalence
    if not 0 < pi < 1:
        raise AnalysisError(f"planning: prevalence must lie in (0, 1), got {pi}")
    lower = -min(pi, 1 - pi) / max(pi, 1 - pi)
    if not lower < kappa < 1:
        raise AnalysisError(
            f"planning: kappa must lie in ({lower:.3f}, 1) for prevalence {pi:g}, got {kappa}"
        )
    pe = pi**2 + (1 - pi) ** 2
    off = pi * (1 - pi) * (1 - kappa)
    p = np.array([[pi - off, off], [off, 1 - pi - off]])
    marg = np.array([pi, 1 - pi])
    total = 0.0
    for i in range(2):
        total += p[i, i] * (1 - (marg[i] + marg[i]) * (1 - kappa)) ** 2
    total += (1 - kappa) ** 2 * sum(
        p[i, j] * (marg[i] + marg[j]) ** 2 for i in range(2) for j in range(2) if i != j
    )
    return float((total - (kappa - pe * (1 - kappa)) ** 2) / (1 - pe) ** 2)


@dataclass
class KappaSampleSize(Result):
    """Subjects needed to show kappa > ``kappa_null`` when it is ``kappa_expected``."""

    subjects: int
    kappa_expected: float
    kappa_null: float
    prevalence: float
    alpha: float
    power: float
    method: str


def kappa_sample_size(
    kappa_expected: float,
    kappa_null: float,
    prevalence: float,
    alpha: float = 0.05,
    power: float = 0.8,
) -> KappaSampleSize:
    """Subjects for a one-sided test of H0 kappa <= ``kappa_null`` (two raters, binary).

    Cantor (1996, Psychol Methods 1:150): n = [(z_(1-alpha) sqrt(Q0) + z_power sqrt(Q1)) /
    (kappa1 - kappa0)]^2 with Q = n Var(kappa-hat) from :func:`kappa_variance_binary` under
    H0 and under the alternative.
    """
    alpha = check_alpha(alpha)
    if not 0 < power < 1:
        raise AnalysisError(f"planning: power must lie in (0, 1), got {power}")
    if not kappa_expected > kappa_null:
        raise AnalysisError("planning: the expected kappa must exceed the null kappa")
    q0 = kappa_variance_binary(kappa_null, prevalence)
    q1 = kappa_variance_binary(kappa_expected, prevalence)
    za, zb = stats.norm.ppf(1 - alpha), stats.norm.ppf(power)
    n = ((za * math.sqrt(q0) + zb * math.sqrt(q1)) / (kappa_expected - kappa_null)) ** 2
    return KappaSampleSize(
        subjects=int(math.ceil(n)),
        kappa_expected=float(kappa_expected),
        kappa_null=float(kappa_null),
        prevalence=float(prevalence),
        alpha=alpha,
        power=float(power),
        method=(
            "one-sided z-test of kappa, Cantor (1996) sample size with the Fleiss-Cohen-"
            "Everitt (1969) variance, two raters, binary ratings with equal marginals"
        ),
    )
