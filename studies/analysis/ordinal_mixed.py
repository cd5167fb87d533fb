"""Cumulative-link (proportional-odds) mixed model with crossed random intercepts.

``logit P(Y <= j | b) = theta_j - x'beta - sum_g b_g[i]``, ``b_g ~ N(0, sigma_g^2)``
independently for each grouping factor g (for reader studies: readers and cases, crossed).
The marginal likelihood is approximated by Laplace's method, as R's ``ordinal::clmm``
(Christensen 2019) does by default: for given parameters the random effects' conditional
mode is found by Newton-Raphson on the penalised log-likelihood, and

    l_LA = log p(y | b^) - sum_g [ |b^_g|^2 / (2 sigma_g^2) + n_g log sigma_g ] - log|H| / 2

with ``H`` the Hessian of the negative penalised log-likelihood in b. The outer
maximisation (thresholds as the first one plus log increments, beta, log sigma_g) uses
L-BFGS-B; standard errors come from the numerical Hessian of ``l_LA`` (as clmm's). Fixed
effects' Wald CIs use the normal quantile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from ._common import AnalysisError, Estimate, Result, check_alpha, small_n_warning
from .tidy import require_modalities, validate_reads


@dataclass
class OrdinalMixedResult(Result):
    """Fixed effects (log odds ratios of a higher score), thresholds, random-effect SDs."""

    fixed: list[Estimate]
    thresholds: list[float]
    random_sd: dict[str, float]
    log_likelihood: float
    n: int
    n_groups: dict[str, int]
    converged: bool
    method: str
    warnings: list[str] = field(default_factory=list)


def _category_terms(
    eta: np.ndarray, y: np.ndarray, cuts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log p_i, d log p_i / d eta_i and d^2 log p_i / d eta_i^2 (logistic link)."""
    upper = np.append(cuts, np.inf)[y] - eta
    lower = np.insert(cuts, 0, -np.inf)[y] - eta
    fu, fl = special.expit(upper), special.expit(lower)
    du, dl = fu * (1 - fu), fl * (1 - fl)
    ddu, ddl = du * (1 - 2 * fu), dl * (1 - 2 * fl)
    # log(F(u) - F(l)) computed stably: F(u) - F(l) = (e^u - e^l) / ((1 + e^u)(1 + e^l)).
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        p = np.where(np.isinf(lower), fu, np.where(np.isinf(upper), 1 - fl, fu - fl))
        p = np.maximum(p, 1e-300)
        logp = np.log(p)
        g = -(du - dl) / p
        h = (ddu - ddl) / p - g**2
    return logp, g, h


def _laplace(
    params: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    codes: list[np.ndarray],
    sizes: list[int],
    n_cut: int,
    start: np.ndarray,
) -> tuple[float, np.ndarray]:
    """(Laplace log-likelihood, conditional modes) for one parameter vector."""
    cuts = np.cumsum(np.concatenate([params[:1], np.exp(params[1:n_cut])]))
    beta = params[n_cut : n_cut + x.shape[1]]
    log_sd = params[n_cut + x.shape[1] :]
    if np.any(np.abs(log_sd) > 15):
        return -np.inf, start
    prec = np.concatenate([np.full(s, math.exp(-2 * ls)) for s, ls in zip(sizes, log_sd)])
    offsets = np.cumsum([0, *sizes])[:-1]
    index = np.column_stack([c + o for c, o in zip(codes, offsets)])
    q = int(sum(sizes))
    xb = x @ beta
    b = start.copy()
    for _ in range(100):
        eta = xb + b[index].sum(1)
        _, g, h = _category_terms(eta, y, cuts)
        grad = np.zeros(q)
        np.add.at(grad, index, g[:, None])
        grad -= prec * b
        hess = np.diag(prec).astype(float)
        for a in range(index.shape[1]):
            for c in range(index.shape[1]):
                np.add.at(hess, (index[:, a], index[:, c]), -h)
        step = np.linalg.solve(hess, grad)
        b = b + step
        if np.max(np.abs(step)) < 1e-10:
            break
    eta = xb + b[index].sum(1)
    logp, _, h = _category_terms(eta, y, cuts)
    hess = np.diag(prec).astype(float)
    for a in range(index.shape[1]):
        for c in range(index.shape[1]):
            np.add.at(hess, (index[:, a], index[:, c]), -h)
    sign, logdet = np.linalg.slogdet(hess)
    if sign <= 0:
        return -np.inf, start
    penalty = 0.5 * float((prec * b**2).sum()) + float(np.dot(sizes, log_sd))
    return float(logp.sum()) - penalty - 0.5 * logdet, b


def cumulative_logit_mixed(
    y: np.ndarray,
    x: pd.DataFrame,
    groups: dict[str, np.ndarray],
    alpha: float = 0.05,
) -> OrdinalMixedResult:
    """Fit the model above: ``y`` ordinal codes 0..K-1, ``x`` fixed-effect covariates
    (no intercept), ``groups`` {name: group label per observation} of crossed random
    intercepts."""
    alpha = check_alpha(alpha)
    y = np.asarray(y, dtype=int)
    n_cat = int(y.max()) + 1
    if n_cat < 2 or np.unique(y).size != n_cat:
        raise AnalysisError("ordinal_mixed: scores must use at least 2 consecutive levels")
    xm = x.to_numpy(dtype=float)
    names = list(x.columns)
    codes, sizes = [], []
    for name, labels in groups.items():
        c, u = pd.factorize(pd.Series(labels))
        if u.size < 2:
            raise AnalysisError(f"ordinal_mixed: random effect {name!r} needs 2 or more groups")
        codes.append(c)
        sizes.append(int(u.size))
    n_cut = n_cat - 1
    cum = np.cumsum(np.bincount(y, minlength=n_cat))[:-1] / y.size
    start_cuts = np.log(cum / (1 - cum))
    start = np.concatenate(
        [start_cuts[:1], np.log(np.maximum(np.diff(start_cuts), 1e-3)), np.zeros(len(names))]
    )
    start = np.concatenate([start, np.zeros(len(sizes))])
    modes = {"b": np.zeros(int(sum(sizes)))}

    def negll(p: np.ndarray) -> float:
        ll, b = _laplace(p, y, xm, codes, sizes, n_cut, modes["b"])
        if np.isfinite(ll):
            modes["b"] = b
        return -ll if np.isfinite(ll) else 1e100

    fit = optimize.minimize(negll, start, method="L-BFGS-B", options={"maxiter": 500})
    fit = optimize.minimize(negll, fit.x, method="BFGS", options={"gtol": 1e-7, "maxiter": 500})
    from statsmodels.tools.numdiff import approx_hess3

    hess = approx_hess3(fit.x, negll)
    cov = np.linalg.pinv(hess)
    warn = [*small_n_warning(min(sizes), "groups in a random effect", "random-effect variance")]
    converged = bool(fit.success) or float(np.max(np.abs(fit.jac))) < 1e-4
    if not converged:
        warn.append(f"optimiser did not converge: {fit.message}")
    z_q = stats.norm.ppf(1 - alpha / 2)
    fixed = []
    for k, name in enumerate(names):
        i = n_cut + k
        est, se = float(fit.x[i]), math.sqrt(max(cov[i, i], 0.0))
        z = est / se if se > 0 else math.nan
        fixed.append(
            Estimate(
                name=name, estimate=est, se=se, ci=(est - z_q * se, est + z_q * se),
                statistic=z, statistic_name="z", p_value=float(2 * stats.norm.sf(abs(z))),
                alpha=alpha, n=int(y.size), method="Laplace cumulative-logit mixed model, Wald",
                details={"odds_ratio": math.exp(est),
                         "odds_ratio_ci": (math.exp(est - z_q * se), math.exp(est + z_q * se))},
            )
        )  # fmt: skip
    cuts = np.cumsum(np.concatenate([fit.x[:1], np.exp(fit.x[1:n_cut])]))
    sds = np.exp(fit.x[n_cut + len(names) :])
    return OrdinalMixedResult(
        fixed=fixed,
        thresholds=cuts.tolist(),
        random_sd={name: float(sd) for name, sd in zip(groups, sds)},
        log_likelihood=float(-fit.fun),
        n=int(y.size),
        n_groups={name: s for name, s in zip(groups, sizes)},
        converged=converged,
        method=(
            "cumulative logit mixed model (proportional odds) with crossed random intercepts "
            f"for {', '.join(groups)}; Laplace approximation (as R ordinal::clmm), SEs from "
            "the numerical Hessian, Wald CIs"
        ),
        warnings=warn,
    )


def ordinal_mixed(
    df: pd.DataFrame,
    reference: str,
    new: str,
    random: tuple[str, ...] = ("reader_id", "case_id"),
    alpha: float = 0.05,
) -> OrdinalMixedResult:
    """Likert scores of ``new`` against ``reference`` in a proportional-odds model with the
    arm as fixed effect and crossed random intercepts for ``random`` (readers and cases by
    default): the estimate is the log odds ratio of a higher score with the new arm,
    generalising to other readers and cases (clmm-like)."""
    ctx = "ordinal_mixed"
    data = validate_reads(df, ctx, columns=("reader_id", "case_id", "modality_id", "value"))
    require_modalities(data, ctx, reference, new)
    data = data[data["modality_id"].isin([reference, new])]
    levels = np.sort(data["value"].unique())
    y = np.searchsorted(levels, data["value"].to_numpy())
    x = pd.DataFrame({f"{new} vs {reference}": (data["modality_id"] == new).astype(float)})
    for col in random:
        if col not in data.columns:
            raise AnalysisError(f"{ctx}: no column {col!r} for a random effect")
    groups = {col: data[col].to_numpy() for col in random}
    return cumulative_logit_mixed(y, x.reset_index(drop=True), groups, alpha)
