"""Starting Ray the way every deploylab command does: a local instance on this machine (loopback,
no dashboard, no usage statistics), or an existing cluster given by its address.

On a cluster the same code runs unchanged: ``ray_session(address="ray://head:10001")`` (or the
``RAY_ADDRESS`` variable) instead of a local start is the one-line change.
"""

from __future__ import annotations

import contextlib
import os

from deploylab.errors import DeployLabError, require

#: Ray's own switches deploylab sets before starting it (a user's values win): no usage
#: statistics sent home, no token prompt for a loopback-only instance.
RAY_ENVIRONMENT = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


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
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise DeployLabError(f"could not start {where} ({exc}); check the address, or unset RAY_ADDRESS "
                             "to start one on this machine") from exc
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
