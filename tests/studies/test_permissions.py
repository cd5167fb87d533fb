"""Permission matrix: every role x every study endpoint (design, reference standard,
analysis, reading, study API), for GET and POST, with the status code each must get.

The endpoints are enumerated from the URL resolver, so a new endpoint without an entry in
:data:`MATRIX` fails the test until someone decides who may use it. Each request runs in a
savepoint that is rolled back, so every role meets the same study state.

Roles: anonymous, site administrator, the study's coordinator (owner), another coordinator,
the study's reader, a reader not assigned to it, a statistician of the study's site, a
reference-panel member and adjudicator of the study (reader role, not one of its readers),
and a superuser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from guardian.shortcuts import assign_perm

from studies.models import AnalysisRun, Question, ReadingSession, ReadItem, Study
from studies.planning_service import plan_study
from studies.services import add_reader, close_study, open_study
from tests.factories import (
    ArmFactory,
    ProtocolFactory,
    SeriesFactory,
    StudyCaseFactory,
    StudyFactory,
    UserFactory,
)
from tests.studies.imaging import imaged_reconstruction

ROLES = (
    "anonymous",
    "site_admin",
    "owner",
    "coordinator",
    "reader",
    "other_reader",
    "statistician",
    "panel",
    "superuser",
)
NAMESPACES = ("studies:", "reading:")
METHOD_NOT_ALLOWED = {role: 405 for role in ROLES}


def codes(default: int, anonymous: int = 302, **overrides: int) -> dict[str, int]:
    """Expected status per role: ``default`` for every signed-in role unless overridden."""
    table = {role: default for role in ROLES}
    table["anonymous"] = anonymous
    for role, code in overrides.items():
        assert role in ROLES, role
        table[role] = code
    return table


def coordinator_page(ok: int, other: int = 404) -> dict[str, int]:
    """Coordinators' pages: other roles 403, another coordinator's study 404."""
    return codes(403, owner=ok, superuser=ok, coordinator=other)


def reference_page(coordinator: int, panel: int, superuser: int | None = None) -> dict[str, int]:
    """Reference pages: 404 for anyone without a reference part on the study (its own
    readers included); its coordinator, panel member/adjudicator and superusers as given
    (superusers as the coordinator unless told)."""
    su = coordinator if superuser is None else superuser
    return codes(404, owner=coordinator, superuser=su, panel=panel)


def reader_page(ok: int) -> dict[str, int]:
    """A read of the study's reader: other roles 403; other readers (and superusers, who
    never read as a reader) 404, the same as an alias that does not exist."""
    return codes(403, reader=ok, other_reader=404, panel=404, superuser=404)


def api_export() -> dict[str, int]:
    """Reads export of a closed study: its coordinators and the site's statisticians;
    404 for everyone else; 401 with a Basic challenge for anonymous callers (DRF)."""
    return codes(404, anonymous=401, owner=200, statistician=200, superuser=200)


def plan_page(ok: int) -> dict[str, int]:
    """Sample-size planning: the study's coordinator, the site's statisticians and
    superusers; 404 for everyone else (studies/permissions.plannable_studies)."""
    return codes(404, owner=ok, statistician=ok, superuser=ok)


def analysis_page(ok: int) -> dict[str, int]:
    """Statisticians of the site (and superusers) only; 404 for everyone else."""
    return codes(404, statistician=ok, superuser=ok)


@dataclass
class Endpoint:
    """Which study an endpoint is called on and what each role gets; ``None`` for a
    method means the endpoint refuses it (405 for everyone)."""

    study: str | None
    get: dict[str, int] | None
    post: dict[str, int] | str | None
    kwargs: dict[str, str] = field(default_factory=dict)


MATRIX: dict[str, Endpoint] = {
    # --- design (studies/views/design.py) ---
    "studies:list": Endpoint(None, coordinator_page(200, other=200), None),
    "studies:create": Endpoint(
        None, coordinator_page(200, other=200), coordinator_page(200, other=200)
    ),
    "studies:detail": Endpoint("draft", coordinator_page(200), None),
    "studies:edit": Endpoint("draft", coordinator_page(200), coordinator_page(200)),
    "studies:arm-add": Endpoint("draft", None, coordinator_page(302)),
    "studies:arm-remove": Endpoint("draft", None, coordinator_page(302)),
    "studies:reference-arm": Endpoint("draft", None, coordinator_page(302)),
    "studies:case-add": Endpoint("draft", None, coordinator_page(302)),
    "studies:case-remove": Endpoint("draft", None, coordinator_page(302)),
    "studies:reader-add": Endpoint("draft", None, coordinator_page(302)),
    "studies:reader-remove": Endpoint("draft", None, coordinator_page(302)),
    "studies:panel-add": Endpoint("draft", None, coordinator_page(302)),
    "studies:panel-remove": Endpoint("draft", None, coordinator_page(302)),
    "studies:template-apply": Endpoint("draft", None, coordinator_page(302)),
    "studies:question-add": Endpoint("draft", coordinator_page(200), coordinator_page(200)),
    "studies:question-edit": Endpoint("draft", coordinator_page(200), coordinator_page(200)),
    "studies:question-delete": Endpoint("draft", None, coordinator_page(302)),
    "studies:open": Endpoint("draft", None, coordinator_page(302)),
    "studies:session-release": Endpoint("open", None, coordinator_page(302)),
    "studies:close": Endpoint("open", None, coordinator_page(302)),
    # --- reference standard (studies/views/reference.py); superusers hold every part ---
    "studies:reference_list": Endpoint(None, codes(200), None),
    "studies:reference": Endpoint("open", reference_page(200, 200), None),
    "studies:reference_import": Endpoint(
        "open", reference_page(200, 403), reference_page(400, 403)
    ),
    "studies:reference_template": Endpoint("open", reference_page(200, 403), None),
    "studies:reference_read": Endpoint(
        "open", reference_page(403, 200, 200), reference_page(403, 302, 302)
    ),
    "studies:reference_consensus": Endpoint(
        "open", reference_page(200, 200), reference_page(302, 302)
    ),
    "studies:adjudicate": Endpoint("open", reference_page(403, 200, 200), None),
    "studies:adjudicate_cell": Endpoint(
        "open", reference_page(403, 200, 200), reference_page(403, 400, 400)
    ),
    # --- reading (studies/views/reading.py), on the reader's first read of the open study ---
    "reading:worklist": Endpoint(
        None, codes(403, reader=200, other_reader=200, panel=200, superuser=200), None
    ),
    "reading:read": Endpoint("open", reader_page(200), None),
    "reading:answers": Endpoint("open", reader_page(200), reader_page(400)),
    "reading:submit": Endpoint("open", None, reader_page(409)),
    "reading:finish": Endpoint("open", None, reader_page(302)),
    "reading:image": Endpoint("open", reader_page(200), None),
    "reading:series": Endpoint("open", reader_page(200), None),
    "reading:image_error": Endpoint("open", None, reader_page(400)),
    # --- study API (studies/api.py): the closed study's tidy reads ---
    "api:study-reads": Endpoint("closed", api_export(), codes(405, anonymous=401)),
    "api:study-reads-csv": Endpoint("closed", api_export(), codes(405, anonymous=401)),
    # --- analysis (studies/views/analysis.py) ---
    "studies:analysis-index": Endpoint(None, analysis_page(200), None),
    "studies:analysis-study": Endpoint("closed", analysis_page(200), analysis_page(400)),
    "studies:analysis-run": Endpoint("closed", analysis_page(200), None, {"pk": "run"}),
    "studies:analysis-run-status": Endpoint("closed", analysis_page(200), None, {"pk": "run"}),
    # run again: only a failed run is re-queued; the world's run succeeded, so a message
    "studies:analysis-run-again": Endpoint("closed", None, analysis_page(302), {"pk": "run"}),
    "studies:analysis-run-download": Endpoint(
        "closed", analysis_page(200), None, {"pk": "run", "name": "reads.csv"}
    ),
    # --- sample-size planning (studies/views/planning.py) ---
    "studies:plan": Endpoint("draft", plan_page(200), plan_page(400)),
    "studies:plan-pdf": Endpoint("draft", plan_page(200), None, {"plan_pk": "plan"}),
}


def _params(pattern) -> set[str]:
    converters = getattr(pattern.pattern, "converters", None)
    if converters is not None:
        return set(converters)
    return set(pattern.pattern.regex.groupindex)


def _endpoints() -> dict[str, set[str]]:
    """Every named URL of the studies and reading namespaces and the study API, with the
    names of its URL parameters."""

    def walk(patterns, prefix: str, params: set[str]):
        for p in patterns:
            if isinstance(p, URLResolver):
                ns = f"{prefix}{p.namespace}:" if p.namespace else prefix
                yield from walk(p.url_patterns, ns, params | _params(p))
            elif isinstance(p, URLPattern) and p.name:
                yield f"{prefix}{p.name}", params | _params(p)

    found: dict[str, set[str]] = {}
    for name, params in walk(get_resolver().url_patterns, "", set()):
        if name.startswith(NAMESPACES) or (name.startswith("api:") and "stud" in name.lower()):
            found.setdefault(name, set()).update(params)
    return found


@pytest.fixture
def world(media_root, make_user):
    """Three studies of one coordinator (draft, open, closed), each with 2 arms, 1 case with
    imaged reconstructions, one assigned reader, a reference panel member/adjudicator and a
    finding question; a statistician of the same site; an analysis run with a report file."""
    owner = make_user("coordinator")
    users = {
        "owner": owner,
        "site_admin": make_user("site_admin", institution=owner.institution),
        "coordinator": make_user("coordinator", institution=owner.institution),
        "reader": make_user("reader", institution=owner.institution),
        "other_reader": make_user("reader", institution=owner.institution),
        "statistician": make_user("statistician", institution=owner.institution),
        "panel": make_user("reader", institution=owner.institution),
        "superuser": UserFactory(is_superuser=True, is_staff=True),
    }
    studies: dict[str, Study] = {}
    for state in ("draft", "open", "closed"):
        study = StudyFactory(coordinator=owner, title=f"{state} study")
        arms = [ArmFactory(study=study, protocol=ProtocolFactory(), label=lbl) for lbl in "AB"]
        sc = StudyCaseFactory(study=study)
        raw = SeriesFactory(case=sc.case)
        for arm in arms:
            imaged_reconstruction(raw, arm.protocol, n_slices=2, size=32)
        Question.objects.create(
            study=study, key="tear", kind="finding", label="Tear", choices=["absent", "present"]
        )
        add_reader(study, users["reader"], actor=owner)
        assign_perm("studies.reference_study", users["panel"], study)
        assign_perm("studies.adjudicate_study", users["panel"], study)
        if state != "draft":
            open_study(study, owner)
        if state == "closed":
            close_study(study, owner, "analysis")
        study.refresh_from_db()
        studies[state] = study
    closed = studies["closed"]
    run = AnalysisRun.objects.create(
        study=closed,
        requested_by=users["statistician"],
        status=AnalysisRun.Status.SUCCEEDED,
        output_dir=f"analysis/{closed.pk}",
    )
    folder = media_root / "analysis" / str(closed.pk)
    folder.mkdir(parents=True)
    (folder / "reads.csv").write_text("reader_id,case_id\n")
    plan = plan_study(
        studies["draft"], owner, source="assumptions", effect=0.05, alpha=0.05, power=0.8
    )
    return {"users": users, "studies": studies, "run": run, "plan": plan}


def _kwargs(name: str, params: set[str], spec: Endpoint, world: dict[str, Any]) -> dict:
    """URL arguments for ``name`` from the world: the spec's study and its objects."""
    study = world["studies"].get(spec.study) if spec.study else None
    reader = world["users"]["reader"]
    values: dict[str, Any] = {}
    item = (
        ReadItem.objects.filter(session__study=study, reader=reader)
        .order_by("session__index", "order_index")
        .first()
        if study is not None
        else None
    )
    for param in params:
        override = spec.kwargs.get(param)
        if override == "run":
            values[param] = world["run"].pk
        elif override == "plan":
            values[param] = world["plan"].pk
        elif override is not None:
            values[param] = override
        elif param == "pk":
            values[param] = study.pk
        elif param == "arm_pk":
            values[param] = study.arms.first().pk
        elif param == "case_pk":
            values[param] = study.study_cases.first().pk
        elif param == "user_pk":
            values[param] = reader.pk
        elif param == "part":
            values[param] = "reference"
        elif param == "question_pk":
            values[param] = study.questions.first().pk
        elif param == "key":
            values[param] = study.questions.first().key
        elif param == "session_pk":
            values[param] = ReadingSession.objects.get(study=study, reader=reader, index=1).pk
        elif param == "alias":
            values[param] = item.alias
        elif param == "token":
            from studies.reading import image_sets

            # Stored when the reading page is first rendered; the reader holds it from then.
            values[param] = image_sets(item)[0][0].token
        elif param == "index":
            values[param] = 0
        else:
            raise AssertionError(f"{name}: no value for URL parameter {param!r}")
    return values


def _call(client: Client, method: str, url: str) -> int:
    """The status of one request, its effects rolled back."""
    with transaction.atomic():
        response = client.get(url) if method == "GET" else client.post(url, {})
        transaction.set_rollback(True)
    return response.status_code


def test_every_endpoint_has_an_entry():
    names = _endpoints()
    missing = [n for n in names if n not in MATRIX]
    assert not missing, f"endpoints without an expected permission entry: {missing}"
    stale = [n for n in MATRIX if n not in names]
    assert not stale, f"matrix entries for endpoints that no longer exist: {stale}"


def test_permission_matrix(world):
    clients = {"anonymous": Client(raise_request_exception=False)}
    for role, user in world["users"].items():
        clients[role] = Client(raise_request_exception=False)
        clients[role].force_login(user)
    wrong = []
    for name, params in sorted(_endpoints().items()):
        spec = MATRIX.get(name)
        if spec is None:
            wrong.append(f"{name}: no entry in MATRIX")
            continue
        url = reverse(name, kwargs=_kwargs(name, params, spec, world))
        for method, expected in (("GET", spec.get), ("POST", spec.post)):
            expected = expected or METHOD_NOT_ALLOWED
            for role in ROLES:
                got = _call(clients[role], method, url)
                if got != expected[role]:
                    wrong.append(f"{method} {name} as {role}: {got}, expected {expected[role]}")
    assert not wrong, "\n".join(wrong)
