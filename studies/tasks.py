"""Celery tasks of reader studies: thin wrappers around the services."""

from __future__ import annotations

from celery import shared_task

from studies import analysis_service


@shared_task(
    name="studies.run_analysis",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=2 * 3600,
    time_limit=2 * 3600 + 300,
)
def run_analysis(run_id: int) -> str:
    """Compute analysis run ``run_id`` (idempotent: a succeeded run is left as it is)."""
    return analysis_service.run_analysis(run_id).status


@shared_task(
    name="studies.build_blinded_display",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=3600,
    time_limit=3600 + 300,
)
def build_blinded_display(study_id: int) -> int:
    """Blind and store every image set of study ``study_id`` (idempotent); how many."""
    from studies import display

    return display.build_study_display(study_id)


@shared_task(
    bind=True,
    name="studies.open_when_reconstructed",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
)
def open_when_reconstructed(self, study_id: int, user_id: int) -> str:
    """Open draft study ``study_id`` once its reconstructions exist (the demo study's
    jobs run on this worker too): retried every ``OPEN_RETRY_S`` seconds, at most
    ``OPEN_MAX_TRIES`` times, then given up (audited)."""
    from mriplatform.accounts.models import User
    from studies import demo
    from studies.models import Study

    study = Study.objects.filter(pk=study_id).first()
    user = User.objects.filter(pk=user_id).first()
    if study is None or user is None:
        return "gone"
    give_up = self.request.retries + 1 >= demo.OPEN_MAX_TRIES
    outcome = demo.open_when_reconstructed(study, user, give_up=give_up)
    if outcome == "waiting":
        raise self.retry(countdown=demo.OPEN_RETRY_S)
    return outcome
