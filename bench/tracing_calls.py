"""What tracing costs a fast-path `tools/call`, in process (``python -m bench.tracing_calls``).

The gateway app is built in this process (SQLite in a temporary directory, the raw
backend of ``bench/backend.py`` in a child process) and `tools/call` requests are
driven straight into its ASGI entry (no sockets on the agent's side: what is measured
is the gateway's code, not the HTTP parsing under it). Tracing is switched between
off, on with 0% sampling and on with 100% sampling in the same process (the exporter
discards what it is given after encoding the batch, as the real exporters do in the
batch processor's thread), each phase after a warm-up.

Two ways to read it:

- CPU per call by ``time.process_time`` (every thread of this process: the batch
  processor's included), phases alternating round by round, median of the rounds;
- instruction counts: run under ``valgrind --tool=callgrind --instr-atstart=no``
  (``.venv/bin/python -m bench.tracing_calls --callgrind``; the interpreter itself, not a
  shim that execs it): each measured phase is bracketed by ``callgrind_control``
  (instrumentation on, counts dumped per phase, named after it), so start-up is not
  counted and each phase's total, divided by its calls, is deterministic enough to
  compare builds with (``--concurrency 1`` makes the calls' interleaving fixed too).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from bench.common import BENCH_KEY, free_port, mcp_post_scope
from bench.proxy_overhead import start_backend

MODES = ("off", "0%", "100%")
ERAS = ("2026-07-28", "2025-11-25")
_ACCEPT = b"application/json, text/event-stream"
# callgrind_control takes a dump name starting with a digit for a process id.
_DUMP_NAMES = {"off": "off", "0%": "zero", "100%": "full"}


def _settings_env(data_dir: str) -> None:
    os.environ.update(
        {
            "MCPGW_DATA_DIR": data_dir,
            "MCPGW_BOOTSTRAP_API_KEY": BENCH_KEY,
            "MCPGW_LOG_LEVEL": "WARNING",
            "MCPGW_SEARCH_PRELOAD": "false",
            "MCPGW_ALLOW_PRIVATE_URLS": "true",
            "MCPGW_MCP_MAX_SESSIONS_PER_KEY": "100000",
            # No backend health pings during the phases (they would land in whichever
            # phase is running, a different number of them each run under valgrind).
            "MCPGW_HEALTH_INTERVAL_SECONDS": "3600",
        }
    )


class _Agent:
    """One agent's `tools/call` requests as ASGI scopes, sent straight into the app."""

    def __init__(self, app: Any, era: str, session: str | None) -> None:
        self.app = app
        headers = [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"accept", _ACCEPT),
            (b"authorization", f"Bearer {BENCH_KEY}".encode()),
            (b"mcp-protocol-version", era.encode()),
        ]
        params: dict[str, Any] = {"name": "fast__echo", "arguments": {"text": "ping"}}
        if era == ERAS[0]:
            headers += [(b"mcp-method", b"tools/call"), (b"mcp-name", b"fast__echo")]
            params["_meta"] = {
                "io.modelcontextprotocol/protocolVersion": era,
                "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {},
            }
        if session is not None:
            headers.append((b"mcp-session-id", session.encode()))
        self.headers = headers
        self.body = orjson.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
        )

    async def call(self) -> int:
        scope = mcp_post_scope(self.headers)
        sent = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": self.body, "more_body": False}
            await asyncio.Event().wait()  # the agent stays connected
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.app(scope, receive, send)
        return status


async def _session(client: httpx.AsyncClient) -> str:
    headers = {"Authorization": f"Bearer {BENCH_KEY}", "Accept": _ACCEPT.decode()}
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": ERAS[1],
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"},
        },
    }
    r = await client.post("/mcp", json=init, headers=headers)
    r.raise_for_status()
    session = r.headers["mcp-session-id"]
    headers.update({"Mcp-Session-Id": session, "MCP-Protocol-Version": ERAS[1]})
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    (await client.post("/mcp", json=note, headers=headers)).raise_for_status()
    return session


async def _drive(agents: Sequence[_Agent], calls: int) -> None:
    """``calls`` calls spread over the agents, all running at once."""

    async def one(agent: _Agent, n: int) -> None:
        for _ in range(n):
            status = await agent.call()
            if status != 200:
                raise RuntimeError(f"tools/call answered HTTP {status}")

    share = calls // len(agents)
    await asyncio.gather(*(one(a, share) for a in agents))


def _configure(telemetry: Any, mode: str) -> None:
    from gateway.observability.otlp import EncodedHttpExporter

    if mode == "off":
        telemetry.configure(None)
        return

    class Discard(EncodedHttpExporter):
        """Encodes each batch as the OTLP/HTTP exporter does, sends nothing."""

        def export(self, spans: Sequence[Any]) -> Any:
            from opentelemetry.sdk.trace.export import SpanExportResult

            from gateway.observability.otlp import _request_bytes

            if self.batches is not None:
                _request_bytes(self.batches, spans)
            return SpanExportResult.SUCCESS

    exporter = Discard(endpoint="http://127.0.0.1:9/v1/traces")
    telemetry.configure(exporter, sample_ratio=0.0 if mode == "0%" else 1.0)


def _callgrind(*args: str) -> None:
    done = subprocess.run(
        ["callgrind_control", *args, str(os.getpid())], capture_output=True, text=True
    )
    if "OK." not in done.stdout:  # it exits 0 whatever happened
        raise RuntimeError(f"callgrind_control {args}: {done.stdout} {done.stderr}")


async def _main(args: argparse.Namespace, port: int) -> None:
    from gateway.app import create_app
    from gateway.observability.logging import configure_logging

    configure_logging("WARNING")  # as `mcpgw serve` with MCPGW_LOG_LEVEL=WARNING
    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        base = "http://127.0.0.1:8000"  # a host the MCP endpoint allows
        async with httpx.AsyncClient(transport=transport, base_url=base) as client:
            r = await client.post(
                "/api/v1/servers",
                params={"wait": True},
                json={
                    "name": "fast",
                    "type": "remote",
                    "config": {"url": f"http://127.0.0.1:{port}/mcp"},
                },
                headers={"Authorization": f"Bearer {BENCH_KEY}"},
                timeout=60,
            )
            r.raise_for_status()
            sessions = [await _session(client) for _ in range(args.concurrency)]
        telemetry = app.state.telemetry_settings.telemetry
        if args.callgrind:
            # Under valgrind a call takes ~50x longer: the fast path would start watching
            # for the agent going away on every call (it does after 50 ms), which a real
            # call never does, and whether it does would vary run by run.
            from gateway.servers.mcp import fastcall

            fastcall._WATCH_DISCONNECT_AFTER = 3600.0
        await _phases(app, telemetry, sessions, args)


async def _phases(app: Any, telemetry: Any, sessions: list[str], args: argparse.Namespace) -> None:
    eras = [e for e in ERAS if e in args.eras]
    agents = {
        era: [_Agent(app, era, s if era == ERAS[1] else None) for s in sessions] for era in eras
    }
    cpu: dict[tuple[str, str], list[float]] = {(m, e): [] for m in args.modes for e in eras}
    for round_ in range(args.rounds):
        turn = round_ % len(args.modes)
        order = list(args.modes[turn:] + args.modes[:turn])
        for mode in order:
            _configure(telemetry, mode)
            await asyncio.sleep(0.3)  # the previous exporter's retirement, off the clock
            for era in eras:
                await _drive(agents[era], args.warmup)
                await asyncio.to_thread(telemetry.flush)
                if args.callgrind:
                    _callgrind("-i", "on")
                started = time.process_time()
                await _drive(agents[era], args.calls)
                await asyncio.to_thread(telemetry.flush)  # the batch's encoding counts
                spent = time.process_time() - started
                if args.callgrind:
                    _callgrind("-d", f"{_DUMP_NAMES[mode]}-{era}-r{round_}")
                    _callgrind("-i", "off")
                cpu[(mode, era)].append(spent / args.calls * 1e6)
    _configure(telemetry, "off")
    print(f"gateway CPU µs per call, in process, median of {args.rounds} rounds")
    for era in eras:
        off = statistics.median(cpu[("off", era)]) if "off" in args.modes else None
        for mode in args.modes:
            value = statistics.median(cpu[(mode, era)])
            ratio = f" ({value / off:.2f})" if off else ""
            print(f"  {era:<10} {mode:>4}: {value:7.1f}{ratio}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--eras", nargs="+", default=list(ERAS), choices=ERAS)
    parser.add_argument("--callgrind", action="store_true", help="bracket phases for callgrind")
    args = parser.parse_args(argv)
    port = free_port()
    backend = start_backend(port)
    try:
        with tempfile.TemporaryDirectory(prefix="mcpgw-tracing-") as data_dir:
            _settings_env(data_dir)
            asyncio.run(_main(args, port))
    finally:
        backend.kill()
        backend.wait()


if __name__ == "__main__":
    main()
