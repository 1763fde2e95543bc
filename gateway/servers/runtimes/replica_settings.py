"""A server's replicas (`config.replicas`): several copies of one backend, balanced.

Shape (docs/resilience.md#replicas)::

    replicas:
      strategy: round_robin | weighted | least_in_flight | failover   # default round_robin
      # remote servers: more endpoints beside `config.url` (which is the first, the
      # primary for `failover`, with weight `weight`)
      endpoints: [{url: "https://b.example/mcp", weight: 2}, ...]
      weight: 1
      # npx, uvx and docker servers: how many processes (containers) to run
      count: 3
      eject_seconds: 10      # how long a replica that failed stays out (a probe that
                             # answers readmits it sooner)

Checked on registration (422 naming the field); the pool builds a
:class:`~gateway.servers.runtimes.replicas.ReplicaSetRuntime` from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from gateway.errors import InvalidInput
from gateway.schemas import Strict, validated

CONFIG_KEY = "replicas"
Strategy = Literal["round_robin", "weighted", "least_in_flight", "failover"]
# Server types whose replicas are processes (or containers) the gateway runs itself.
PROCESS_TYPES = frozenset({"npx", "uvx", "docker"})
MAX_REPLICAS = 32


class EndpointIn(Strict):
    """One more endpoint of a remote server."""

    url: str = Field(min_length=1, max_length=2048)
    weight: int = Field(1, ge=1, le=1000, description="Its share under `weighted`.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from gateway.servers.schemas import remote_url

        return remote_url(value)  # the same rules as `config.url`


class ReplicasIn(Strict):
    """A server's `config.replicas`."""

    strategy: Strategy = "round_robin"
    endpoints: list[EndpointIn] = Field(default_factory=list, max_length=MAX_REPLICAS - 1)
    weight: int = Field(1, ge=1, le=1000, description="`config.url`'s share under `weighted`.")
    count: int | None = Field(None, ge=1, le=MAX_REPLICAS)
    eject_seconds: float = Field(10.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if self.endpoints and self.count is not None:
            raise ValueError("endpoints (remote servers) and count (processes) do not go together")
        return self


@dataclass(frozen=True)
class ReplicaPlan:
    """What the pool builds: each replica's config (its type's own) and weight."""

    strategy: Strategy
    configs: tuple[dict[str, Any], ...]
    weights: tuple[int, ...]
    labels: tuple[str, ...]
    eject_seconds: float


def parse_replicas(
    server_type: str, value: Any, field: str = f"config.{CONFIG_KEY}"
) -> dict[str, Any]:
    """``value`` checked for a server of ``server_type`` (422 naming the field), as stored."""
    parsed = validated(ReplicasIn, value, field, "replicas")
    if server_type not in PROCESS_TYPES | {"remote"}:
        _refuse(field, f"a {server_type} server has no replicas")
    if parsed.endpoints and server_type != "remote":
        _refuse(f"{field}.endpoints", "only remote servers have endpoints; use count")
    if parsed.count is not None and server_type not in PROCESS_TYPES:
        _refuse(f"{field}.count", f"only {sorted(PROCESS_TYPES)} servers run processes")
    return parsed.model_dump(exclude_defaults=True)


def _refuse(field: str, message: str) -> None:
    raise InvalidInput(f"{field}: {message}", errors=[{"field": field, "message": message}])


def split_replicas(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A stored config as (the rest, its replicas or None)."""
    if CONFIG_KEY not in config:
        return config, None
    return {k: v for k, v in config.items() if k != CONFIG_KEY}, config[CONFIG_KEY]


def plan(server_type: str, config: dict[str, Any]) -> ReplicaPlan | None:
    """The replicas a stored config asks for; None: one backend (no replica set)."""
    rest, raw = split_replicas(config)
    if raw is None:
        return None
    settings = ReplicasIn.model_validate(raw)
    if settings.endpoints:
        configs = (rest, *({**rest, "url": e.url} for e in settings.endpoints))
        weights = (settings.weight, *(e.weight for e in settings.endpoints))
        labels = tuple(str(c["url"]) for c in configs)
    elif settings.count is not None and settings.count > 1:
        configs = (rest,) * settings.count
        weights = (1,) * settings.count
        labels = tuple(f"process {i + 1}" for i in range(settings.count))
    else:
        return None  # one endpoint, one process: nothing to balance
    return ReplicaPlan(settings.strategy, configs, weights, labels, settings.eject_seconds)
