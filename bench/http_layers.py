"""The HTTP floor under each candidate server layer: the same bare app (answer
`tools/call` with a fixed result, both protocol eras, nothing else) behind

- ``uvicorn``: uvicorn + httptools with the gateway's one-write protocol (what
  ``mcpgw serve`` runs; bench/http_floor.py),
- ``granian-asgi`` and ``granian-rsgi``: granian (Rust HTTP, one worker, uvloop), its
  ASGI interface and its own RSGI one, if granian is installed,
- ``asgi-min``: a minimal ASGI HTTP/1.1 protocol on httptools (a task per request, the
  ASGI scope, receive and send; nothing else uvicorn's does: no flow control, timeouts,
  pipelining, upgrades, header validation) running the same ASGI app under uvicorn's
  Server: what a lean protocol of the gateway's own could cost,
- ``raw``: a hand-written asyncio Protocol on httptools that speaks only what the load
  generator sends (keep-alive POSTs): no ASGI at all, the lowest a Python server gets.

Runs alternate the layers (and their order) and report the CPU per request of each
server's whole process tree (granian's workers are child processes), median of the
runs, and its ratio to uvicorn's per run.

    python -m bench.http_layers --runs 5 --calls 4000 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
from typing import Any

import httptools
import orjson

from bench.common import free_port, median, print_table, write_results
from bench.http_floor import _SESSION, INITIALIZED, RESULT, ServedProcess
from bench.loadgen import Target, run_load
from bench.proxy_overhead import _run_loop

LAYERS = ("uvicorn", "granian-asgi", "granian-rsgi", "asgi-min", "raw")


def _reply(body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, extra headers, body) the floor app answers ``body`` with."""
    request = orjson.loads(body) if body else {}
    if "id" not in request:
        return (202 if body else 200), [], b""
    result, headers = RESULT, [("content-type", "application/json")]
    if request.get("method") == "initialize":
        result = INITIALIZED
        headers.append(("mcp-session-id", _SESSION.decode()))
    reply = b'{"jsonrpc":"2.0","id":' + orjson.dumps(request["id"]) + b',"result":' + result + b"}"
    return 200, headers, reply


class RSGIApp:
    """The floor app on granian's RSGI interface."""

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        status, headers, reply = _reply(await protocol())
        protocol.response_bytes(status, headers, reply)


rsgi_app = RSGIApp()


class RawProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive POST/GET only, parsed by httptools, answered in one write."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.body = []

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        status, headers, reply = _reply(b"".join(self.body))
        head = [f"HTTP/1.1 {status} OK\r\n".encode()]
        head += [f"{k}: {v}\r\n".encode() for k, v in headers]
        head.append(b"content-length: %d\r\n\r\n" % len(reply))
        assert self.transport is not None
        self.transport.write(b"".join(head) + reply)


class MinimalAsgiProtocol(asyncio.Protocol):
    """The least an ASGI HTTP/1.1 server does per request (see the module docstring)."""

    def __init__(self, config: Any = None, server_state: Any = None, **_: Any) -> None:
        from bench.http_floor import app

        self.app = app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.headers, self.url, self.body = [], b"", []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        path, _, query = self.url.partition(b"?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": self.parser.get_method().decode("ascii"),
            "scheme": "http",
            "path": path.decode("latin-1"),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": self.headers,
            "client": None,
            "server": None,
        }
        body = b"".join(self.body)
        asyncio.get_running_loop().create_task(self.run(scope, body))

    async def run(self, scope: dict[str, Any], body: bytes) -> None:
        head: list[bytes] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                head.append(b"HTTP/1.1 %d OK\r\n" % message["status"])
                head.extend(b"%s: %s\r\n" % pair for pair in message.get("headers", ()))
            else:
                data = message.get("body", b"")
                if not any(line.startswith(b"content-length") for line in head):
                    head.append(b"content-length: %d\r\n" % len(data))
                assert self.transport is not None
                self.transport.write(b"".join(head) + b"\r\n" + data)

        await self.app(scope, receive, send)


def serve(layer: str, port: int) -> None:
    """Serve the floor app on ``port`` with ``layer`` (in this process)."""
    if layer == "uvicorn":
        sys.argv = ["http_floor", str(port)]
        from bench.http_floor import main

        main()
    elif layer == "asgi-min":
        import uvicorn

        from bench.http_floor import app

        uvicorn.run(
            app,
            host="127.0.0.1",
            port=port,
            http=MinimalAsgiProtocol,  # type: ignore[arg-type]
            log_level="warning",
            access_log=False,
        )
    elif layer == "raw":
        import uvloop

        async def run() -> None:
            loop = asyncio.get_running_loop()
            server = await loop.create_server(RawProtocol, "127.0.0.1", port)
            await server.serve_forever()

        uvloop.run(run())
    else:
        from granian.constants import Interfaces, Loops
        from granian.server import Server

        rsgi = layer == "granian-rsgi"
        Server(
            "bench.http_layers:rsgi_app" if rsgi else "bench.http_floor:app",
            address="127.0.0.1",
            port=port,
            interface=Interfaces.RSGI if rsgi else Interfaces.ASGI,
            workers=1,
            loop=Loops.uvloop,
            log_enabled=False,
        ).serve()


class LayerProcess(ServedProcess):
    """``python -m bench.http_layers --serve LAYER PORT`` while in use."""

    def __init__(self, layer: str) -> None:
        self.layer = layer
        port = free_port()
        super().__init__("bench.http_layers", "--serve", layer, str(port), port=port, what=layer)


def _measure(server: LayerProcess, era: str, concurrency: int, calls: int) -> float:
    target = Target(server.url, "echo", era)
    before = server.cpu_seconds()
    latencies, _ = _run_loop(run_load(target, concurrency, calls))
    return (server.cpu_seconds() - before) / len(latencies) * 1e6


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", nargs=2, metavar=("LAYER", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--layers", nargs="+", choices=LAYERS, default=list(LAYERS))
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return []
    layers = [
        name
        for name in args.layers
        if not name.startswith("granian") or importlib.util.find_spec("granian")
    ]
    servers = [LayerProcess(name) for name in layers]
    samples: dict[tuple[str, str], list[float]] = {}
    try:
        for run in range(args.runs):
            for era in ("modern", "handshake"):
                for server in servers if run % 2 == 0 else servers[::-1]:
                    cpu = _measure(server, era, args.concurrency, args.calls)
                    samples.setdefault((server.layer, era), []).append(cpu)
    finally:
        for server in servers:
            server.stop()
    rows = []
    for era in ("modern", "handshake"):
        base = samples.get(("uvicorn", era))
        for name in layers:
            cpu = samples[(name, era)]
            # A run too short for the CPU clock's tick measures 0: no ratio from it.
            pairs = [a / b for a, b in zip(cpu, base or [], strict=False) if b > 0]
            ratio = median(pairs) if pairs else None
            rows.append(
                {"layer": name, "era": era, "cpu_us_per_request": median(cpu), "ratio": ratio}
            )
    print_table(f"HTTP floor per layer (median of {args.runs} runs)", rows)
    write_results("http_layers", {"runs": args.runs, "rows": rows})
    return rows


if __name__ == "__main__":
    main()
