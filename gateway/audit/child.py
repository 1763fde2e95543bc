"""The audit writer process: ``python -m gateway.audit.child``, started by a serving
gateway (sink.ProcessSink; the protocol is described there).

It reads frames from stdin until it closes, stores each batch with an
:class:`~gateway.audit.store.AuditStore` and acknowledges it once stored or spilled;
it ignores SIGINT and SIGTERM (the gateway closes its stdin when it has handed over
everything), so a Ctrl-C or a stop signal to the whole group cannot cut a batch off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson

from gateway.audit.frames import FRAME
from gateway.audit.store import AuditStore
from gateway.db import Database
from gateway.observability.logging import configure_logging

log = logging.getLogger("gateway.audit")


_OUT = [1]  # the gateway's end of the protocol (fd 1 itself goes to stderr: see main)


def _say(message: dict[str, Any]) -> None:
    os.write(_OUT[0], orjson.dumps(message) + b"\n")


class _Forward:
    """The store's metrics, said to the gateway (which owns /metrics)."""

    def audit_batch(self, rows: int, seconds: float) -> None:
        _say({"t": "m", "k": "batch", "rows": rows, "s": seconds})

    def audit_rows(self, result: str, rows: int) -> None:
        _say({"t": "m", "k": "rows", "result": result, "rows": rows})

    def audit_write_failed(self) -> None:
        _say({"t": "m", "k": "failed"})


async def _frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    try:
        size = FRAME.unpack(await reader.readexactly(FRAME.size))[0]
        message: dict[str, Any] = orjson.loads(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        return None  # the gateway closed our stdin (or died): finish and exit
    return message


class _Held:
    """Batch numbers whose rows the store holds in memory, acknowledged once stored."""

    def __init__(self, store: AuditStore) -> None:
        self.store, self.batches = store, list[int]()

    def settle(self, n: int | None, safe: bool) -> None:
        if not safe and n is not None:
            self.batches.append(n)
            return
        done = [] if n is None else [n]
        if not self.store.held:
            done, self.batches = self.batches + done, []
        if done:
            _say({"t": "ack", "n": done})

    async def retry(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if self.store.held:
                await self.store.retry_held()
                self.settle(None, True)


async def serve(reader: asyncio.StreamReader) -> None:
    """Store batches from ``reader`` until it ends."""
    config = await _frame(reader)
    if config is None or config.get("t") != "config":
        raise SystemExit("the audit writer process expects a config frame first")
    configure_logging(config["log_level"], config["log_format"])
    db = Database(config["database_url"])
    store = AuditStore(
        db,
        Path(config["spill_dir"]),
        retries=config["retries"],
        reingest_batch=config["batch_size"],
        metrics=_Forward(),
    )
    try:
        await store.reingest()
    except Exception:  # the spill stays for the next try
        log.exception("could not read back spilled audit rows")
    _say({"t": "ready", "stream": store.stream, "pid": os.getpid()})
    held = _Held(store)
    retrying = asyncio.create_task(held.retry(config["interval"]))
    last = 0
    try:
        while (message := await _frame(reader)) is not None:
            if message["t"] == "batch":
                n = message["n"]
                if n <= last:  # sent again while a new process of ours started
                    continue
                last = n
                safe = await store.put(message["rows"], message["masks"], resend=message["resend"])
                held.settle(n, safe)
            elif message["t"] == "flush":
                if store.held:
                    await store.retry_held()
                    held.settle(None, True)
                _say({"t": "flushed", "n": message["n"], "held": store.held})
    finally:
        retrying.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await retrying
        if store.held:
            await store.retry_held()
            if store.held:
                log.critical("%d audit rows could be neither written nor spilled", store.held)
        await db.dispose()


async def _main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 30)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    await serve(reader)


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    # Only protocol lines reach the gateway: anything a library prints goes to stderr.
    _OUT[0] = os.dup(1)
    os.dup2(2, 1)
    asyncio.run(_main())


if __name__ == "__main__":
    main()
