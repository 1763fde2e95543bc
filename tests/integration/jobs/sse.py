"""A small SSE reader for the jobs tests (the CLI's parser, over httpx streams)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.cli_watch import parse_sse

TERMINAL = {"result", "error", "cancelled"}


@dataclass
class Seen:
    id: int
    event: str
    data: Any


async def read_events(
    client: httpx.AsyncClient,
    job_id: str,
    headers: dict[str, str],
    *,
    last_event_id: int | None = None,
    stop_after: int | None = None,
    timeout: float = 30,
) -> list[Seen]:
    """Events of the job's stream until its terminal event (or ``stop_after`` events,
    then disconnect); bounded by ``timeout``."""
    extra = dict(headers)
    if last_event_id is not None:
        extra["Last-Event-ID"] = str(last_event_id)
    seen: list[Seen] = []

    async def go() -> None:
        async with client.stream(
            "GET", f"/api/v1/jobs/{job_id}/events", headers=extra, timeout=timeout
        ) as response:
            assert response.status_code == 200, await response.aread()
            lines: list[str] = []
            async for line in response.aiter_lines():
                lines.append(line)
                if line:
                    continue
                for event in parse_sse(lines):
                    seen.append(Seen(int(event.id or 0), event.event, event.data))
                lines.clear()
                if seen and (seen[-1].event in TERMINAL or len(seen) == stop_after):
                    return

    await asyncio.wait_for(go(), timeout)
    return seen


def assert_complete(events: list[Seen], first: int = 1) -> None:
    """Numbered ``first``, first+1, … with no gap or repeat, one terminal event, last."""
    assert [e.id for e in events] == list(range(first, first + len(events))), events
    assert events[-1].event in TERMINAL, events
    assert sum(e.event in TERMINAL for e in events) == 1, events
