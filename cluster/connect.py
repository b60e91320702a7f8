"""Connecting to Ray: ``ray.init`` with a warning when ``address="auto"`` is ambiguous.

With ``cluster.address=auto`` Ray joins "the" Ray instance of this machine. When several run (a
``ray up`` head plus a forgotten local ``ray start``, or two users' clusters), Ray picks the one
started last, or any one, without saying so loudly. :func:`init_ray` warns then, naming the
instances found, so that the run can be pointed at one explicitly
(``cluster.address=127.0.0.1:6379``).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Optional

log = logging.getLogger(__name__)


def local_ray_instances() -> list[str]:
    """GCS addresses ("ip:port") of the Ray instances whose processes run on this machine, found
    the way Ray's own ``address="auto"`` finds them (its raylets' command lines); [] when the
    installed Ray offers no way to look."""
    try:
        from ray._private.services import find_gcs_addresses
    except ImportError:
        return []
    try:
        return sorted(find_gcs_addresses())
    except Exception as err:  # a private helper: never let it stop a run
        log.debug("could not list local Ray instances: %s", err)
        return []


def latest_ray_instance() -> Optional[str]:
    """The address of the last ``ray start`` on this machine (what ``auto`` prefers), if known."""
    try:
        from ray._private.services import find_bootstrap_address

        return find_bootstrap_address(None)
    except Exception:
        return None


def effective_address(address: Optional[str]) -> Optional[str]:
    """What ``ray.init(address=address)`` uses: ``RAY_ADDRESS`` wins when set."""
    return os.environ.get("RAY_ADDRESS") or address


def check_address(address: Optional[str]) -> list[str]:
    """Warn when ``address`` (after ``RAY_ADDRESS``) is "auto" and several Ray instances run on
    this machine. Returns the instances found (empty when the address is explicit)."""
    if effective_address(address) != "auto":
        return []
    found = local_ray_instances()
    if len(found) > 1:
        latest = latest_ray_instance()
        log.warning(
            "cluster.address=auto, but %d Ray instances run on this machine (%s); Ray joins %s. "
            "Name the one to use, e.g. cluster.address=127.0.0.1:6379 (the head of `ray up` listens "
            "on port 6379).", len(found), ", ".join(found),
            latest if latest else "one of them (no record of the latest `ray start`)")
    return found


def init_ray(address: Optional[str], **kwargs: Any) -> None:
    """``ray.init(address=address, **kwargs)`` after :func:`check_address`."""
    import ray

    check_address(address)
    ray.init(address=address, **kwargs)
