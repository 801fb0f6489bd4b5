"""Settings of ``crossrank serve``, declared once (the CLI's ``--options`` derive from them)."""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, PositiveInt, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from crossrank.config import settings_from_yaml

__all__ = ["SERVER_ENV_PREFIX", "ServerConfig"]

#: Environment variables of the server's settings: ``CROSSRANK_SERVER_PORT`` and so on.
SERVER_ENV_PREFIX = "CROSSRANK_SERVER_"


class ServerConfig(BaseSettings):
    """How ``crossrank serve`` listens, batches and limits; the model is a :class:`crossrank.RerankerConfig`.

    Values come from keyword arguments / command-line options, then ``CROSSRANK_SERVER_<FIELD>``,
    then a YAML file's ``server`` section (:meth:`from_yaml`), then these defaults.

    Example:
        >>> ServerConfig(port=9000, max_wait_ms=0).max_batch_tokens
        16384
    """

    model_config = SettingsConfigDict(env_prefix=SERVER_ENV_PREFIX, extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 for every interface).")
    port: int = Field(8080, ge=0, le=65535, description="Port to listen on (0: any free port).")
    api_key: SecretStr | None = Field(
        None, description="Require 'Authorization: Bearer <key>' (health, info and metrics stay public)."
    )
    served_model_name: str | None = Field(
        None, description="Model name reported to clients; default: the model."
    )
    batching: bool | None = Field(
        None,
        description=(
            "Merge concurrent requests' pairs into shared forward passes; default: on for engines whose "
            "batches may mix requests (fp32, int8-static), off for int8 (no faster with it, measured)."
        ),
    )
    max_batch_tokens: PositiveInt = Field(
        16384, description="Most (estimated) tokens one scoring step takes from the queue."
    )
    max_wait_ms: float = Field(
        2.0, ge=0, description="How long a step waits for more pairs when the queue is short of a full step."
    )
    pipeline: PositiveInt = Field(
        2, description="Scoring steps in flight: the next is tokenised while the current one runs."
    )
    max_client_batch_size: PositiveInt = Field(
        1000, description="Most documents in one request (more is a 4xx; up to it, split internally)."
    )
    max_concurrent_requests: PositiveInt = Field(
        512, description="Requests in flight at once; more get 429 with Retry-After."
    )
    payload_limit: PositiveInt = Field(8_000_000, description="Largest request body, in bytes (else 413).")
    auto_truncate: bool = Field(
        True, description="Cut documents too long for the model (TEI's truncate=null); false: 422 instead."
    )
    graceful_shutdown_s: float = Field(
        30.0, ge=0, description="On SIGTERM, how long in-flight requests may take to finish."
    )

    @classmethod
    def from_yaml(
        cls, path: str | os.PathLike[str], *, section: str | None = "server", **overrides: Any
    ) -> ServerConfig:
        """Settings from a YAML file's ``section`` (default ``server``); env and ``overrides`` win.

        A file without that section gives the defaults (and the environment).
        """
        return settings_from_yaml(cls, path, section=section, **overrides)
