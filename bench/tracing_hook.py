"""What tracing adds to one request's own code, without I/O (``python -m bench.tracing_hook``).

Per request, as the fast path does it: the request middleware
(:class:`gateway.middleware.RequestContextMiddleware`: the agent's headers read, the
request's trace state, the response's ``traceparent``), the call pipeline's
``enter``/``leave`` with the tracing hook (``Authorize`` installed, as in a gateway),
the carrier added to the backend request (`params._meta` and the headers) and, at 100%,
the spans written and queued (the exporter encodes each batch and sends nothing). No
socket, no backend: what remains is the tracing code's own cost, deterministic enough
for callgrind (``valgrind --tool=callgrind --instr-atstart=no .venv/bin/python -m
bench.tracing_hook --callgrind``: one dump per mode, instructions per request = the
dump's total / ``--requests``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import MutableMapping
from typing import Any

from bench.tracing_calls import MODES, _callgrind, _configure
from gateway.auth.principal import Principal
from gateway.middleware import RequestContextMiddleware
from gateway.observability.tracing import TRACE_STATE_KEY, Telemetry
from gateway.servers.calls import CallTarget
from gateway.servers.mcp.fastpath import _propagate
from gateway.servers.pipeline import Authorize, Call, Pipeline, TraceOrigin
from gateway.servers.tracing import install

_DUMP_NAMES = {"off": "off", "0%": "zero", "100%": "full"}
_HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"content-type", b"application/json"),
    (b"accept", b"application/json, text/event-stream"),
    (b"authorization", b"Bearer mcpgw_bench_0123456789abcdef"),
    (b"mcp-protocol-version", b"2026-07-28"),
    (b"mcp-method", b"tools/call"),
    (b"mcp-name", b"fast__echo"),
    (b"content-length", b"214"),
]
_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
_BACKEND_HEADERS = b"\r\nAccept: application/json, text/event-stream\r\nMcp-Method: tools/call"


class _Origin:
    """The fast path's view of its request (FastCall.trace_origin's shape)."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    def trace_origin(self) -> TraceOrigin:
        version = None
        for name, value in self.scope["headers"]:
            if name == b"mcp-protocol-version":
                version = value.decode("latin-1")
        return TraceOrigin(_META, self.scope["state"].get(TRACE_STATE_KEY), None, 1, version)


def _app(pipeline: Pipeline) -> Any:
    principal = Principal("u", "u@x", "u", "developer", "k", ("*",))
    target = CallTarget("fast", "echo", None)  # type: ignore[arg-type]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope.setdefault("state", {})
        call = Call(principal, target, {"text": "ping"}, "direct", origin=_Origin(scope))
        entered = await pipeline.enter(call)
        params = {"name": "echo", "arguments": {"text": "ping"}, "_meta": _META}
        trace = call.trace
        if trace is not None and trace.carrier:
            _propagate(params, _BACKEND_HEADERS, trace.carrier)
        call.outcome = "ok"
        pipeline.leave(call, entered, None)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


async def _run(args: argparse.Namespace) -> None:
    telemetry = Telemetry()
    pipeline = Pipeline({"authorize": Authorize()})
    install(pipeline, telemetry)
    entry = RequestContextMiddleware(_app(pipeline), telemetry)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        return None

    async def requests(n: int) -> None:
        for _ in range(n):
            scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": _HEADERS}
            await entry(scope, receive, send)

    spent: dict[str, list[float]] = {m: [] for m in args.modes}
    for round_ in range(args.rounds):
        turn = round_ % len(args.modes)
        for mode in args.modes[turn:] + args.modes[:turn]:
            _configure(telemetry, mode)
            await requests(args.requests // 10)  # warm
            await asyncio.to_thread(telemetry.flush)
            if args.callgrind:
                _callgrind("-i", "on")
            started = time.process_time()
            await requests(args.requests)
            await asyncio.to_thread(telemetry.flush)  # the batches' encoding counts
            spent[mode].append((time.process_time() - started) / args.requests * 1e6)
            if args.callgrind:
                _callgrind("-d", f"hook-{_DUMP_NAMES[mode]}-r{round_}")
                _callgrind("-i", "off")
    _configure(telemetry, "off")
    print(f"tracing's own code, CPU µs per request, median of {args.rounds} rounds")
    for mode in args.modes:
        print(f"  {mode:>4}: {statistics.median(spent[mode]):6.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--callgrind", action="store_true", help="one callgrind dump per mode")
    asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
