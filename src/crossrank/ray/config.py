"""Settings of crossrank on Ray (replicas, actors, resources, backpressure), declared once.

The model is a :class:`crossrank.RerankerConfig` and the HTTP behaviour a
:class:`crossrank.server.ServerConfig`; this only says how many copies run where. It imports no Ray.
"""

from __future__ import annotations

import math
import os
from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from crossrank.config import RerankerConfig, settings_from_yaml

__all__ = ["RAY_ENV_PREFIX", "RayConfig"]

#: Environment variables of these settings: ``CROSSRANK_RAY_REPLICAS`` and so on.
RAY_ENV_PREFIX = "CROSSRANK_RAY_"


class RayConfig(BaseSettings):
    """How crossrank runs on a Ray cluster: copies of the model, their resources, backpressure.

    Values come from keyword arguments / command-line options, then ``CROSSRANK_RAY_<FIELD>``,
    then a YAML file's ``ray`` section (:meth:`from_yaml`), then these defaults.

    Example:
        >>> RayConfig(replicas=2, num_cpus=0.5).deployment_options()["num_replicas"]
        2
        >>> options = RayConfig(min_replicas=1, max_replicas=4).deployment_options()
        >>> options["autoscaling_config"]["max_replicas"]
        4
    """

    model_config = SettingsConfigDict(env_prefix=RAY_ENV_PREFIX, extra="forbid", frozen=True)

    address: str | None = Field(
        None,
        description="Ray cluster to join (ray://host:10001, host:6379 or auto); default: start a local Ray.",
    )
    local_cpus: PositiveInt | None = Field(
        None, description="CPUs of the local Ray the command starts; default: the CPUs this process may use."
    )
    num_cpus: PositiveFloat = Field(
        1.0, description="CPUs Ray reserves per replica or actor (fractions allowed, e.g. 0.5)."
    )
    num_gpus: NonNegativeFloat = Field(0.0, description="GPUs per replica or actor (1 = one GPU each).")
    # ---------------------------------------------------------------- serving (Ray Serve)
    replicas: PositiveInt = Field(1, description="Serve: replicas of the rerank app (fixed count).")
    min_replicas: int | None = Field(
        None, ge=0, description="Serve: autoscale from this many replicas (with max_replicas)."
    )
    max_replicas: PositiveInt | None = Field(None, description="Serve: autoscale up to this many replicas.")
    target_ongoing_requests: PositiveFloat = Field(
        8.0, description="Serve autoscaling: requests in flight per replica to aim for."
    )
    max_ongoing_requests: PositiveInt = Field(
        64,
        description=(
            "Serve: requests one replica takes at once (its pair batcher merges them); "
            "more wait in the proxy."
        ),
    )
    max_queued_requests: int = Field(
        256,
        ge=-1,
        description="Serve: requests waiting for a replica before backpressure answers (-1: no cap).",
    )
    backpressure_status: Literal[429, 503] = Field(
        429, description="Serve: HTTP status of a request refused by backpressure (429 or 503)."
    )
    retry_after_s: NonNegativeFloat | None = Field(
        1.0, description="Serve: Retry-After header on backpressure refusals (seconds)."
    )
    # ---------------------------------------------------------------- batch (Ray Data)
    actors: PositiveInt = Field(1, description="Batch: rerankers in the Ray Data actor pool.")
    shard_pairs: PositiveInt = Field(
        2000,
        description="Batch: (query, candidate) pairs per shard, the unit of scoring, progress and resume.",
    )

    @model_validator(mode="after")
    def _autoscaling_pair(self) -> RayConfig:
        if (self.min_replicas is None) != (self.max_replicas is None):
            raise ValueError("min_replicas and max_replicas autoscale together: give both or neither")
        if self.max_replicas is not None and (self.min_replicas or 0) > self.max_replicas:
            raise ValueError(f"min_replicas={self.min_replicas} exceeds max_replicas={self.max_replicas}")
        return self

    @property
    def autoscaling(self) -> bool:
        """Whether Serve autoscales (``min_replicas``/``max_replicas`` given) instead of a fixed count."""
        return self.max_replicas is not None

    def actor_options(self) -> dict[str, float]:
        """Ray resources of one replica or actor: ``{"num_cpus": ..., "num_gpus": ...}``."""
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}

    def actor_reranker_config(self, reranker_config: RerankerConfig) -> RerankerConfig:
        """The model settings one replica or actor builds its Reranker from: ``reranker_config`` with
        Ray's defaults for what it leaves open.

        * ``threads`` (None): the CPUs reserved per actor, rounded up (Ray sets ``OMP_NUM_THREADS=1``
          in its workers, which would leave the rest of the reservation idle);
        * ``device`` (None) without GPUs (``num_gpus=0``): ``"cpu"``, as Ray gives the actor no GPU.

        What the config sets is kept. Serve replicas (:func:`crossrank.ray.serving.build_app`) and
        batch actors (:func:`crossrank.ray.batch.rerank_batch`) both take their settings from here.

        Example:
            >>> config = RayConfig(num_cpus=1.5).actor_reranker_config(RerankerConfig(model="m"))
            >>> config.threads, config.device
            (2, 'cpu')
            >>> RayConfig(num_gpus=1).actor_reranker_config(RerankerConfig(model="m", threads=4)).device
            >>> RayConfig(num_gpus=1).actor_reranker_config(RerankerConfig(model="m", threads=4)).threads
            4
        """
        update: dict[str, Any] = {}
        if reranker_config.threads is None:
            update["threads"] = max(1, math.ceil(self.num_cpus))
        if self.num_gpus == 0 and reranker_config.device is None:
            update["device"] = "cpu"
        return reranker_config.model_copy(update=update) if update else reranker_config

    def deployment_options(self) -> dict[str, Any]:
        """Keyword arguments of ``serve.deployment`` for the rerank app's replicas."""
        options: dict[str, Any] = {
            "ray_actor_options": self.actor_options(),
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "backpressure_config": {
                "status_code": self.backpressure_status,
                "retry_after_s": self.retry_after_s,
            },
        }
        if self.autoscaling:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "initial_replicas": max(self.min_replicas or 0, 1),
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
            }
        else:
            options["num_replicas"] = self.replicas
        return options

    @classmethod
    def from_yaml(
        cls, path: str | os.PathLike[str], *, section: str | None = "ray", **overrides: Any
    ) -> RayConfig:
        """Settings from a YAML file's ``section`` (default ``ray``); env and ``overrides`` win.

        A file without that section gives the defaults (and the environment).
        """
        return settings_from_yaml(cls, path, section=section, **overrides)
