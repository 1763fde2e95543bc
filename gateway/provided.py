"""How a router gets the per-process services the composition root made.

`gateway/app.py` builds every service once and puts each on ``app.state`` under its
name; a pillar's router declares ``Annotated[TheService, Depends(...)]`` with a getter
that reads it here. Routers so depend on the service type they use, not on the
composition root (which imports every pillar): `make lint`'s import contracts hold.
"""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request

T = TypeVar("T")


def provided(request: Request, name: str, kind: type[T]) -> T:
    """The ``kind`` the app holds as ``app.state.<name>``."""
    found = getattr(request.app.state, name, None)
    if not isinstance(found, kind):
        raise RuntimeError(f"the app provides no {kind.__name__} as {name!r}")
    return found
