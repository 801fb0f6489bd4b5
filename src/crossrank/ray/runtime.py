"""Import Ray with a clear error, and join or start the cluster a command runs on."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from crossrank.errors import BackendUnavailableError
from crossrank.ray.config import RayConfig

logger = logging.getLogger(__name__)


def require_ray() -> Any:
    """The ``ray`` module, or :class:`BackendUnavailableError` naming the extra to install."""
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise BackendUnavailableError(
            f"crossrank on Ray needs Ray Data and Serve: pip install 'crossrank[ray]' ({err})"
        ) from err
    return ray


def require_serve() -> Any:
    """``ray.serve`` with the server's own dependencies, or :class:`BackendUnavailableError`."""
    require_ray()
    try:
        import fastapi  # noqa: F401
        from ray import serve
    except ImportError as err:
        raise BackendUnavailableError(
            "crossrank serve --ray needs Ray Serve and the server extra: "
            f"pip install 'crossrank[ray,server]' ({err})"
        ) from err
    return serve


@contextlib.contextmanager
def ray_cluster(config: RayConfig, *, logging_level: int = logging.INFO) -> Iterator[Any]:
    """Use the Ray this process already joined, else join ``config.address``, else start a local Ray.

    What this starts or joins, it leaves on exit (a local Ray is shut down with it); a Ray the
    caller initialised stays as it was.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    if config.address:
        ray.init(address=config.address, log_to_driver=False, logging_level=logging_level)
    else:
        from crossrank.cpus import usable_cpus

        ray.init(
            address="local",
            num_cpus=config.local_cpus or usable_cpus(),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",  # a local Ray listens on loopback only
            log_to_driver=False,
            logging_level=logging_level,
        )
    try:
        yield ray
    finally:
        ray.shutdown()
