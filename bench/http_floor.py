"""The HTTP floor under the gateway's per-call figures: a bare ASGI app on uvicorn with
the gateway's own HTTP protocol (gateway/http_protocol.py), answering `tools/call` with
a fixed result in both protocol eras and doing nothing else.

What it costs per request is what any answer costs on this machine before the gateway
does anything (HTTP parsing, the ASGI cycle, the socket's system calls): the part of a
cache hit's CPU the gateway's own code cannot remove. ``bench/cache_cost.py --floor``
measures it in the same run as the hits. Run: ``python -m bench.http_floor PORT``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

RESULT = b'{"content":[{"type":"text","text":"ping"}],"isError":false}'
INITIALIZED = orjson.dumps(
    {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "serverInfo": {"name": "floor", "version": "1"},
    }
)
_SESSION = b"0123456789abcdef0123456789abcdef"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers `initialize` (a session id), notifications (202) and any other request
    with :data:`RESULT`; GET (readiness) with 200."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            done = "startup" if message["type"] == "lifespan.startup" else "shutdown"
            await send({"type": f"lifespan.{done}.complete"})
            if done == "shutdown":
                return
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    request = orjson.loads(body) if body else {}
    headers = [(b"content-type", b"application/json")]
    if "id" not in request:
        await send({"type": "http.response.start", "status": 202 if body else 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    result = RESULT
    if request.get("method") == "initialize":
        result = INITIALIZED
        headers.append((b"mcp-session-id", _SESSION))
    reply = b'{"jsonrpc":"2.0","id":' + orjson.dumps(request["id"]) + b',"result":' + result + b"}"
    headers.append((b"content-length", str(len(reply)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": reply})


class ServedProcess:
    """``python -m MODULE ARGS…`` serving HTTP on a loopback port while in use (its
    ``/mcp`` answers once it is up); its CPU time so far, its child processes' included."""

    def __init__(self, module: str, *args: str, port: int, what: str) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url, timeout=0.5)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{what} did not start")

    def cpu_seconds(self) -> float:
        """CPU time of the process and its descendants (a server's worker processes)."""
        total, todo = 0, [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


class FloorProcess(ServedProcess):
    """``python -m bench.http_floor PORT`` while in use."""

    def __init__(self, port: int) -> None:
        super().__init__("bench.http_floor", str(port), port=port, what="the HTTP floor app")


def main() -> None:
    import uvicorn

    from gateway.http_protocol import GatewayHttpProtocol

    port = int(sys.argv[1])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        http=GatewayHttpProtocol,
        log_level="warning",
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
