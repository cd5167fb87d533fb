"""Who may do what with a study. Every view goes through these; nothing else decides.

* Coordinators design and follow the studies they coordinate (or hold the object
  permission ``studies.change_study`` on: co-coordinators). They see progress, never
  answers, until the study is closed for analysis.
* Readers read only studies they were assigned to (object permission
  ``studies.read_study``) and only their own reads.
* Reference-panel members (``studies.reference_study``) and adjudicators
  (``studies.adjudicate_study``) are assigned per study by its coordinator.
* Statisticians analyse studies of their own site once they are closed for analysis.
* Superusers may do everything except read as a reader.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet
from guardian.shortcuts import get_objects_for_user

from mriplatform.accounts.roles import Role
from studies.models import Study


def _active(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active)


def managed_studies(user) -> QuerySet[Study]:
    """Studies ``user`` coordinates (or co-coordinates)."""
    if not _active(user):
        return Study.objects.none()
    if user.is_superuser:
        return Study.objects.all()
    if not user.has_role(Role.COORDINATOR):
        return Study.objects.none()
    shared = get_objects_for_user(
        user, "studies.change_study", klass=Study, accept_global_perms=False
    )
    return Study.objects.filter(Q(coordinator=user) | Q(pk__in=shared.values("pk")))


def readable_studies(user) -> QuerySet[Study]:
    """Open studies ``user`` is an assigned reader of."""
    if not _active(user) or not user.has_role(Role.READER):
        return Study.objects.none()
    assigned = get_objects_for_user(
        user, "studies.read_study", klass=Study, accept_global_perms=False
    )
    return assigned.filter(status=Study.Status.OPEN)


def reference_studies(user, permission: str = "studies.reference_study") -> QuerySet[Study]:
    """Studies where ``user`` is on the reference panel (or adjudicates, with
    ``permission="studies.adjudicate_study"``)."""
    if not _active(user):
        return Study.objects.none()
    return get_objects_for_user(user, permission, klass=Study, accept_global_perms=False)


def analysable_studies(user) -> QuerySet[Study]:
    """Closed studies a statistician may analyse: their own site's (all for superusers)."""
    if not _active(user):
        return Study.objects.none()
    closed = Study.objects.filter(status=Study.Status.CLOSED)
    if user.is_superuser:
        return closed
    if not user.has_role(Role.STATISTICIAN) or not user.institution_id:
        return Study.objects.none()
    return closed.filter(institution_id=user.institution_id)


def plannable_studies(user) -> QuerySet[Study]:
    """Studies whose sample size ``user`` may plan: the coordinator's own and, for
    statisticians, every study of their site (all for superusers)."""
    if not _active(user):
        return Study.objects.none()
    if user.is_superuser:
        return Study.objects.all()
    planned = managed_studies(user)
    if user.has_role(Role.STATISTICIAN) and user.institution_id:
        planned = planned | Study.objects.filter(institution_id=user.institution_id)
    return planned.distinct()
