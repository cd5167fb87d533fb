"""Which cases a user may see: site administrators their own site's, coordinators all
(a trial's coordinator designs studies across sites), superusers all, others none."""

from __future__ import annotations

from django.db.models import QuerySet

from mriplatform.accounts.roles import Role
from mriplatform.cases.models import Case, Series


def visible_cases(user) -> QuerySet[Case]:
    if not user.is_authenticated or not user.is_active:
        return Case.objects.none()
    if user.is_superuser or user.has_role(Role.COORDINATOR):
        return Case.objects.all()
    if user.has_role(Role.SITE_ADMIN) and user.institution_id:
        return Case.objects.filter(institution_id=user.institution_id)
    return Case.objects.none()


def manageable_cases(user) -> QuerySet[Case]:
    """Cases the user may add series to and reconstruct (site administrators, own site)."""
    if not user.is_authenticated or not user.is_active:
        return Case.objects.none()
    if user.is_superuser:
        return Case.objects.all()
    if user.has_role(Role.SITE_ADMIN) and user.institution_id:
        return Case.objects.filter(institution_id=user.institution_id)
    return Case.objects.none()


def visible_series(user) -> QuerySet[Series]:
    return Series.objects.filter(case__in=visible_cases(user))
