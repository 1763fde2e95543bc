"""Streamed model text as job events: deltas are gathered into ``token`` events of a
few dozen characters, so a long answer is tens of events, not thousands of rows."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

Emit = Callable[[str, Any], Awaitable[None]]


class TokenBatcher:
    """Collects text deltas and emits them as ``{"text": …}`` events of ``type`` once
    ``size`` characters or ``interval`` seconds have gathered (and at :meth:`flush`)."""

    def __init__(
        self, emit: Emit, *, type: str = "token", size: int = 64, interval: float = 0.25
    ) -> None:
        self.emit = emit
        self.type = type
        self.size = size
        self.interval = interval
        self._parts: list[str] = []
        self._length = 0
        self._since = time.monotonic()

    async def __call__(self, text: str) -> None:
        """Take one delta (a :data:`gateway.llm.client.TokenSink`)."""
        self._parts.append(text)
        self._length += len(text)
        if self._length >= self.size or time.monotonic() - self._since >= self.interval:
            await self.flush()

    async def flush(self) -> None:
        """Emit what has gathered, if anything."""
        if self._parts:
            text, self._parts, self._length = "".join(self._parts), [], 0
            await self.emit(self.type, {"text": text})
        self._since = time.monotonic()
