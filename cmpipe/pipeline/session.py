"""The Ray session every pipeline stage shares: connect to a cluster or start a local Ray."""

from __future__ import annotations

import os


def start_ray(address: str | None) -> bool:
    """Connect to (or start) Ray unless it is initialised; True if this call started it.

    ``address`` (``auto``, ``host:6379``, ``ray://host:10001``), else ``$RAY_ADDRESS``, else a
    local instance without dashboard. An initialised Ray is used as is (and left running).
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address)
    else:
        ray.init(address="local", include_dashboard=False)
    return True
