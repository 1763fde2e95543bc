"""List the tools of real MCP servers into the benchmark's catalog (``data/tools.json``).

``python -m bench.search_quality.collect [NAME ...]`` starts each server of
``servers.SERVERS`` (or the named ones) with ``npx -y`` or ``uvx``, one at a time,
each in its own process group under a time limit, asks ``tools/list`` (every page)
and merges what it got into the catalog; servers already there are skipped unless
named. Schemas are trimmed to what search reads (property names, types,
descriptions) to keep the file small.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

from bench.search_quality.servers import REPO, SCRATCH, SERVERS, Server

CATALOG = Path(__file__).parent / "data" / "tools.json"
RAW = Path(SCRATCH) / "sq-raw"
TEXT_LIMIT, PARAM_TEXT_LIMIT = 1500, 300


def trim_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Only what search reads: top-level property names, types and descriptions."""
    properties = {}
    for name, prop in (schema.get("properties") or {}).items():
        prop = prop if isinstance(prop, dict) else {}
        kept = {"type": prop["type"]} if isinstance(prop.get("type"), str) else {}
        if isinstance(prop.get("description"), str):
            kept["description"] = prop["description"][:PARAM_TEXT_LIMIT]
        properties[name] = kept
    trimmed: dict[str, Any] = {"type": "object", "properties": properties}
    if isinstance(schema.get("required"), list):
        trimmed["required"] = [r for r in schema["required"] if isinstance(r, str)]
    return trimmed


async def _rpc(proc: asyncio.subprocess.Process, message: dict[str, Any]) -> dict[str, Any]:
    """Send one JSON-RPC request over stdio and read lines until its answer (servers
    may print other lines, and ask things of their own, in between)."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(message).encode() + b"\n")
    await proc.stdin.drain()
    while True:
        line = await proc.stdout.readline()
        if not line:
            raise RuntimeError("the server closed its output")
        try:
            answer = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(answer, dict)
            and answer.get("id") == message["id"]
            and ("result" in answer or "error" in answer)
        ):
            if "error" in answer:
                raise RuntimeError(f"{message['method']}: {answer['error']}")
            return dict(answer["result"])


def _uvx(server: Server) -> list[str]:
    extra = [arg for requirement in server.with_ for arg in ("--with", requirement)]
    if server.entry:
        return ["uvx", *extra, "--from", server.package, server.entry]
    return ["uvx", *extra, server.package]


async def _list_one(server: Server) -> dict[str, Any]:
    # Raw JSON-RPC, not the SDK client: it rejects listings some real servers send
    # (an input schema without "type"), which search reads all the same.
    command = ["npx", "-y", server.package] if server.launcher == "npx" else _uvx(server)
    env = {**os.environ, **dict(server.env)}
    with open(RAW / f"{server.name}.log", "w") as errlog:  # noqa: ASYNC230 - before any I/O
        proc = await asyncio.create_subprocess_exec(
            *command,
            *server.args,
            stdin=PIPE,
            stdout=PIPE,
            stderr=errlog,
            env=env,
            limit=64 << 20,
        )
        init = await _rpc(
            proc,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "search-quality-collect", "version": "1"},
                },
            },
        )
        assert proc.stdin is not None
        proc.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        tools: list[dict[str, Any]] = []
        cursor = None
        for page in itertools.count(2):
            params = {"cursor": cursor} if cursor else {}
            listed = await _rpc(
                proc, {"jsonrpc": "2.0", "id": page, "method": "tools/list", "params": params}
            )
            tools += listed.get("tools", [])
            cursor = listed.get("nextCursor")
            if not cursor:
                break
        proc.kill()
    return {
        "name": server.name,
        "package": server.package,
        "launcher": server.launcher,
        "version": str((init.get("serverInfo") or {}).get("version", "")),
        "tools": [
            {
                "name": t["name"],
                "description": (t.get("description") or "")[:TEXT_LIMIT],
                "input_schema": trim_schema(t.get("inputSchema") or {}),
            }
            for t in tools
        ],
    }


def _run_one(name: str) -> None:
    server = next(s for s in SERVERS if s.name == name)
    result = asyncio.run(_list_one(server))
    (RAW / f"{name}.json").write_text(json.dumps(result))


def _spawn(server: Server, timeout: float) -> str:
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.search_quality.collect", "--one", server.name],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=open(RAW / f"{server.name}.err", "w"),  # noqa: SIM115 - the child owns it
    )
    try:
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        return f"timed out after {timeout:.0f} s"
    # A server may leave children behind (npx → node): end the whole group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    took = time.monotonic() - started
    return f"exit {child.returncode} in {took:.0f} s"


def load_catalog(path: Path = CATALOG) -> list[dict[str, Any]]:
    """The committed catalog: one entry a server with its tools."""
    if not path.exists():
        return []
    return list(json.loads(path.read_text())["servers"])


def save_catalog(servers: list[dict[str, Any]], path: Path = CATALOG) -> None:
    """One server a line: compact, yet a diff shows which server changed."""
    servers = sorted(servers, key=lambda s: s["name"])
    lines = ",\n".join(json.dumps(s, separators=(",", ":"), ensure_ascii=False) for s in servers)
    path.write_text('{"servers":[\n' + lines + "\n]}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="servers to (re)list; default: missing ones")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=240)
    args = parser.parse_args(argv)
    RAW.mkdir(exist_ok=True)
    Path(REPO).mkdir(exist_ok=True)
    subprocess.run(["git", "init", "-q", REPO], check=False)
    if args.one:
        _run_one(args.one)
        return
    have = {s["name"]: s for s in load_catalog()}
    wanted = [
        s for s in SERVERS if (s.name in args.names) or (not args.names and s.name not in have)
    ]
    for server in wanted:
        (RAW / f"{server.name}.json").unlink(missing_ok=True)
        outcome = _spawn(server, args.timeout)
        raw = RAW / f"{server.name}.json"
        if raw.exists():
            entry = json.loads(raw.read_text())
            if entry["tools"]:
                have[server.name] = entry
                save_catalog(list(have.values()))
            outcome += f", {len(entry['tools'])} tools"
        print(f"{server.name}: {outcome}", flush=True)
    total = sum(len(s["tools"]) for s in have.values())
    print(f"catalog: {len(have)} servers, {total} tools")


if __name__ == "__main__":
    main()
