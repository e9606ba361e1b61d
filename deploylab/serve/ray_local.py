"""Starting Ray the way every deploylab command does: a local instance on this machine (loopback,
no dashboard, no usage statistics), or an existing cluster given by its address.

On a cluster the same code runs unchanged: ``ray_session(address="ray://head:10001")`` (or the
``RAY_ADDRESS`` variable) instead of a local start is the one-line change.
"""

from __future__ import annotations

import contextlib
import os

from deploylab.errors import DeployLabError, require

#: Ray's own switches deploylab sets before starting it (a user's values win): no usage statistics
#: sent home, no token prompt for a loopback-only instance, and a shorter retry of Serve's router when
#: every replica is full (ray 2.60.0 ``serve/_private/constants.py``: 25 ms doubling up to 0.5 s, during
#: which a replica slot that frees up stays empty; measured here: 0.83 of 2 cores busy at 32 clients).
RAY_ENVIRONMENT = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
                   "RAY_SERVE_ROUTER_RETRY_INITIAL_BACKOFF_S": "0.005", "RAY_SERVE_ROUTER_RETRY_MAX_BACKOFF_S": "0.05"}


def ray_module():
    """``ray``, or an error naming what to install."""
    for name, value in RAY_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    return require("ray", "'ray[serve,data]'", "serving and batch inference")


def start_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to Ray: the cluster at ``address`` (or ``RAY_ADDRESS``), else a new local instance
    with ``num_cpus`` (default: every core). Returns True when this call started it (the caller
    then shuts it down); an instance already running in this process is reused."""
    ray = ray_module()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    options = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **options)
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, TimeoutError...: one line
        from deploylab.text import first_line

        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        fix = ("check the address, or unset RAY_ADDRESS to start one on this machine" if address else
               "a busy machine can time out Ray's start: try again, or free memory and cores")
        raise DeployLabError(f"could not start {where} ({type(exc).__name__}: {first_line(exc)}); {fix}") from exc
    return True


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None):
    """Ray for the duration of a block; shut down after it if the block's start created it."""
    started = start_ray(address, num_cpus)
    try:
        yield ray_module()
    finally:
        if started:
            ray_module().shutdown()
