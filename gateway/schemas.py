"""Request and response shapes every pillar's REST API shares."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from gateway.errors import InvalidInput

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Request bodies reject unknown fields: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Page(BaseModel, Generic[T]):
    """One page of a list: ``items`` from ``offset``, ``limit`` at most, of ``total``."""

    items: list[T]
    total: int
    limit: int
    offset: int


def validated(model: type[M], value: Any, field: str, what: str) -> M:
    """``value`` as ``model``, or a 422 listing each error by its full field path under
    ``field`` (``config.resilience.breaker.failures``); ``what`` names it in the message."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = [
            {"field": ".".join([field, *(str(p) for p in e["loc"])]), "message": e["msg"]}
            for e in exc.errors()
        ]
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        raise InvalidInput(f"invalid {what}: {summary}", errors=errors) from None
