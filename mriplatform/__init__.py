"""ReconTrial Django project (named ``mriplatform`` so it never shadows the stdlib ``platform``)."""

from mriplatform.celery import app as celery_app

__all__ = ("celery_app",)
