"""Short tasks have their own queue that every deployment consumes, and the demo queues its
reader study's reconstructions before the others."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import yaml

from mriplatform.celery import app

ROOT = Path(__file__).resolve().parents[2]


def queue_of(task_name: str) -> str:
    return app.amqp.router.route({}, task_name)["queue"].name


def test_short_tasks_are_routed_away_from_reconstructions():
    assert queue_of("jobs.reconstruct") == "recon"
    assert queue_of("studies.run_analysis") == "short"
    assert queue_of("studies.open_when_reconstructed") == "short"
    assert queue_of("workers.echo") == "default"


def consumed_queues(commands: list[str]) -> list[set[str]]:
    """The queue sets of the ``celery worker -Q ...`` commands among ``commands``."""
    return [set(m[1].split(",")) for c in commands if (m := re.search(r"-Q\s+(\S+)", c))]


def test_every_queue_has_a_worker_in_the_demo_and_in_production():
    demo = consumed_queues((ROOT / "scripts/demo").read_text().split("celery\"")[1:])
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    production = consumed_queues(
        [" ".join(s["command"]) for s in compose.values() if "worker" in s.get("command", [])]
    )
    for workers in (demo, production):
        assert set().union(*workers) >= {"recon", "default", "short"}
        # A dedicated slot: some worker takes short tasks and no reconstructions.
        assert any("short" in queues and "recon" not in queues for queues in workers)


@pytest.mark.django_db
def test_demo_submits_its_reader_studys_jobs_first(settings, tmp_path, monkeypatch):
    from django.core.management import call_command

    from mriplatform.jobs import services
    from studies.demo import KNEE_ARMS

    settings.MEDIA_ROOT = tmp_path
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {"location": str(tmp_path)}},
    }
    sent = []
    monkeypatch.setattr(services, "enqueue", sent.append)
    call_command("setup_demo", "--slices", "1", stdout=io.StringIO(), stderr=io.StringIO())
    names = [job.protocol.name for job in sent]
    n_cases = 2
    assert len(names) > 2 * n_cases and len(names) == len(set(job.pk for job in sent))
    assert set(names[: len(KNEE_ARMS) * n_cases]) == set(KNEE_ARMS)
    assert not set(names[len(KNEE_ARMS) * n_cases :]) & set(KNEE_ARMS)
