"""A remote-control command every worker answers, even while its pool is busy.

Celery runs remote-control commands in the worker's consumer, not in its task pool, so a
worker whose only slot is reconstructing still answers at once. The earlier design sent a
probe *task* to each worker's direct queue; under load it waited behind the running job
and the Workers page stayed on "probing…".
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import threading

from celery.signals import worker_ready
from celery.worker import state as worker_state
from celery.worker.control import control_command

PROBE_COMMAND = "recontrial_probe"


_DESCRIBE = (
    "import json, platform, socket, recon_engine\n"
    "from recon_engine.device import describe_device\n"
    "print(json.dumps([describe_device(), {'python': platform.python_version(),"
    " 'engine': recon_engine.__version__, 'host': socket.gethostname()}]))"
)


@functools.cache
def _device_and_software() -> tuple[dict, dict]:
    """The compute device and software of this worker (they don't change while it runs).

    Asked of a short-lived child process: the command runs in the worker's main process,
    which forks the pool, and initialising CUDA there would make every child forked later
    fail with "Cannot re-initialize CUDA in forked subprocess".
    """
    done = subprocess.run(
        [sys.executable, "-c", _DESCRIBE], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        return {"device": "unknown", "error": done.stderr.strip()[-300:]}, {}
    device, software = json.loads(done.stdout.strip().splitlines()[-1])
    return device, software


_learning = threading.Lock()


def _learn_in_background() -> None:
    if _learning.acquire(blocking=False):  # one child process at a time; cached after
        threading.Thread(target=_learn_then_release, daemon=True).start()


def _learn_then_release() -> None:
    try:
        _device_and_software()
    finally:
        _learning.release()


@worker_ready.connect(dispatch_uid="workers.describe_device_early")
def _describe_early(**kwargs) -> None:
    """Learn the device in the background as the worker starts, so the first probe is fast."""
    _learn_in_background()


@control_command(name=PROBE_COMMAND)
def recontrial_probe(state) -> dict:
    """This worker's queues, compute device, software and number of tasks running now."""
    if _device_and_software.cache_info().currsize:
        device, software = _device_and_software()
    else:  # still being learnt: answer now (the page says "unknown" until the next probe)
        _learn_in_background()
        device, software = {}, {}
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
