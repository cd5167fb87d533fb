"""Sample-size planning for a reader study, saved with the study (:class:`StudyPlan`).

The numbers come from :mod:`studies.analysis.planning` (no Django there); this module
turns a closed pilot study into the reads table that computation needs, runs it for a
range of reader counts and stores the inputs and the table. A pilot gives the
Obuchowski-Rockette variance components of one finding question's ROC ratings
(confidence signed by the call, as in the report) for the pilot's reference arm against
one other arm.
"""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
from django.db.models import QuerySet

from mriplatform.audit.services import record
from studies import analysis as sa
from studies import report
from studies.models import Study, StudyPlan
from studies.permissions import analysable_studies, managed_studies

READER_RANGE = (3, 4, 5, 6, 8, 10, 12, 15)


class PlanningError(ValueError):
    """The plan cannot be computed as asked (the message says why)."""


def pilot_studies(user) -> QuerySet[Study]:
    """Closed studies ``user`` may use as a pilot: analysable (statisticians) or managed
    (coordinators)."""
    managed = managed_studies(user).filter(status=Study.Status.CLOSED)
    return (analysable_studies(user) | managed).distinct().order_by("-closed", "title")


def _pilot_reads(pilot: Study) -> pd.DataFrame:
    from studies.export import tidy_csv

    reads = report.load_reads(io.StringIO(tidy_csv(pilot)))
    reads = report.single_arm_reads(reads)
    if "read_index" in reads.columns:
        reads = reads[reads["read_index"].fillna(1) == 1]
    return reads


def pilot_questions(pilot: Study) -> list[str]:
    """Finding questions of ``pilot`` with a reference standard and confidence ratings."""
    reads = _pilot_reads(pilot)
    if "truth" not in reads.columns or "confidence" not in reads.columns:
        return []
    kind = reads.get("question_kind", pd.Series("", index=reads.index)).fillna("")
    usable = reads[(kind == "finding") & reads["truth"].notna() & reads["confidence"].notna()]
    return sorted(usable["question"].astype(str).unique())


def pilot_roc_table(pilot: Study, question: str, new_arm: str | None = None) -> pd.DataFrame:
    """The pilot's ROC reads (reader_id, case_id, modality_id, confidence, truth) of
    ``question`` for its reference arm and ``new_arm`` (default: the other arm)."""
    reads = _pilot_reads(pilot)
    q = reads[reads["question"].astype(str) == question]
    if q.empty or "truth" not in q.columns or q["truth"].isna().all():
        raise PlanningError(f"question {question!r} has no reads with a reference standard")
    q = q[q["truth"].notna()]
    reference = pilot.reference_arm.label if pilot.reference_arm_id else None
    arms = sorted(q["modality_id"].astype(str).unique())
    if reference not in arms:
        raise PlanningError("the pilot has no reference arm with reads of this question")
    others = [a for a in arms if a != reference]
    if new_arm is None and len(others) == 1:
        new_arm = others[0]
    if new_arm not in others:
        raise PlanningError(f"choose the pilot's new arm among {others}")
    q = q[q["modality_id"].isin([reference, new_arm])]
    call, truth, _ = report.finding_calls(q)
    if call.isna().any() or truth.isna().any():
        raise PlanningError(f"question {question!r} is not a present/absent finding")
    params = report.normalise_parameters({})
    return pd.DataFrame(
        {
            "reader_id": q["reader_id"].to_numpy(),
            "case_id": q["case_id"].to_numpy(),
            "modality_id": q["modality_id"].to_numpy(),
            "confidence": report.roc_ratings(q, params).to_numpy(),
            "truth": truth.to_numpy(),
        }
    )


def compute_plan(
    components: sa.ORVarianceComponents,
    effect: float | None,
    alpha: float,
    power: float,
    readers: tuple[int, ...] = READER_RANGE,
) -> dict[str, Any]:
    """The power table (cases needed per number of readers, RRRC and FRRC) as JSON."""
    try:
        rows = []
        for j in readers:
            rrrc = sa.mrmc_sample_size(j, power, effect, components, alpha=alpha)
            frrc = sa.mrmc_sample_size(j, power, effect, components, alpha=alpha, analysis="FRRC")
            rows.append(
                {
                    "readers": j,
                    "cases_rrrc": rrrc.cases,
                    "power_rrrc": rrrc.power,
                    "cases_frrc": frrc.cases,
                    "power_frrc": frrc.power,
                }
            )
    except sa.AnalysisError as exc:
        raise PlanningError(str(exc)) from exc
    feasible = [r for r in rows if r["cases_rrrc"] is not None]
    best = min(feasible, key=lambda r: r["readers"] * r["cases_rrrc"]) if feasible else None
    return {
        "rows": rows,
        "effect": rrrc.effect,
        "alpha": alpha,
        "power": power,
        "components": components.to_dict(),
        "fewest_reads": best,
        "method": rrrc.method,
        "warnings": _plan_warnings(rows, rrrc.warnings),
    }


def _plan_warnings(rows: list[dict[str, Any]], warnings: list[str]) -> list[str]:
    """The components' warnings once, and one line for the reader counts whose power is
    out of reach (instead of one per reader count)."""
    out = [w for w in warnings if "readers:" not in w and "cannot reach" not in w]
    unreachable = [str(r["readers"]) for r in rows if r["cases_rrrc"] is None]
    if unreachable:
        out.append(
            f"with {', '.join(unreachable)} readers the power is out of reach for random "
            "readers whatever the number of cases (reader variability dominates): add readers"
        )
    return out


def plan_study(
    study: Study,
    user,
    *,
    source: str,
    effect: float | None,
    alpha: float,
    power: float,
    pilot: Study | None = None,
    question: str | None = None,
    new_arm: str | None = None,
    components: dict[str, float] | None = None,
    request=None,
) -> StudyPlan:
    """Compute a plan for ``study`` and save it (audited)."""
    parameters: dict[str, Any] = {"source": source, "effect": effect, "alpha": alpha}
    parameters["power"] = power
    if source == StudyPlan.Source.PILOT:
        if pilot is None or not question:
            raise PlanningError("choose a closed pilot study and one of its finding questions")
        table = pilot_roc_table(pilot, question, new_arm)
        try:
            comp = sa.or_components_from_pilot(table)
        except sa.AnalysisError as exc:
            raise PlanningError(f"the pilot cannot be analysed: {exc}") from exc
        comp.source = f"pilot study '{pilot.title}', question {question}; {comp.source}"
        parameters.update(
            {"pilot": f"{pilot.title} (#{pilot.pk})", "question": question, "new_arm": new_arm}
        )
        if effect is None:
            parameters["effect"] = f"observed in the pilot ({comp.observed_effect:.4f})"
    elif components is None:
        comp = sa.VAN_DYKE_COMPONENTS
        parameters["components"] = "published defaults (Van Dyke et al. 1993)"
    else:
        try:
            comp = sa.ORVarianceComponents(
                **{k: float(components[k]) for k in ("var_error", "cov1", "cov2", "cov3")},
                var_tr=float(components["var_tr"]),
                n_cases=int(components["n_cases"]),
                source="stated assumptions",
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanningError(f"variance components are incomplete: {exc}") from exc
        parameters["components"] = comp.to_dict()
    result = compute_plan(comp, effect, alpha, power)
    plan = StudyPlan.objects.create(
        study=study,
        created_by=user,
        source=source,
        pilot=pilot if source == StudyPlan.Source.PILOT else None,
        parameters=parameters,
        result=result,
    )
    record(
        user,
        "study.plan",
        study,
        request=request,
        details={"plan": plan.pk, "source": source, "fewest_reads": result["fewest_reads"]},
    )
    return plan
