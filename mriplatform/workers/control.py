"""A remote-control command every worker answers, even while its pool is busy.

Celery runs remote-control commands in the worker's consumer, not in its task pool, so a
worker whose only slot is reconstructing still answers at once. The earlier design sent a
probe *task* to each worker's direct queue; under load it waited behind the running job
and the Workers page stayed on "probing…".
"""

from __future__ import annotations

import functools
import platform as std_platform
import socket

from celery.worker import state as worker_state
from celery.worker.control import control_command

PROBE_COMMAND = "recontrial_probe"


@functools.cache
def _device_and_software() -> tuple[dict, dict]:
    """The compute device and software of this process (they don't change while it runs)."""
    import recon_engine
    from recon_engine.device import describe_device

    software = {
        "python": std_platform.python_version(),
        "engine": recon_engine.__version__,
        "host": socket.gethostname(),
    }
    return describe_device(), software


@control_command(name=PROBE_COMMAND)
def recontrial_probe(state) -> dict:
    """This worker's queues, compute device, software and number of tasks running now."""
    device, software = _device_and_software()
    queues = sorted(
        queue.name
        for queue in state.consumer.task_consumer.queues
        if not queue.name.endswith(".dq2") and "pidbox" not in queue.name
    )
    return {
        "queues": queues,
        "device": device,
        "software": software,
        "active_tasks": len(worker_state.active_requests),
    }
