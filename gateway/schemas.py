"""Request and response shapes every pillar's REST API shares."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class Strict(BaseModel):
    """Request bodies reject unknown fields: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Page(BaseModel, Generic[T]):
    """One page of a list: ``items`` from ``offset``, ``limit`` at most, of ``total``."""

    items: list[T]
    total: int
    limit: int
    offset: int
