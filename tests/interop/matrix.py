"""The interop matrix: every backend x agent era x path (x client), every feature a cell.

Shared by tests/interop/test_matrix.py (which asserts the cells) and
`python -m bench.interop` (which prints the table and writes JSON). A row connects one
agent to one place: the backend itself (`direct`, the baseline), the gateway's unified
`/mcp` (names `{server}__tool`, URIs `mcpgw://server/...`) or `/mcp/servers/{name}`.

A cell is `pass`, `fail` (with the reason) or `n/a` (with the reason): n/a when the
backend has nothing for the column, when the client does not drive it, or when the
backend fails the same cell directly in the same era (what the backend itself cannot
do, the gateway need not do). For every `tools/call` the row records the gateway's
route (`direct` = fast path, `sdk` = SDK path, from the `mcpgw-route` header), and
`/metrics` gives `mcpgw_tool_calls_total` by route per backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from tests.interop.agents import (
    ERAS,
    Agent,
    FastMcpAgent,
    InspectorAgent,
    NotApplicable,
    SdkAgent,
    TsAgent,
    bridge,
    node24,
)
from tests.interop.backends import Backend, make
from tests.interop.dialects import FEATURES, TOOL_FEATURES, Ctx, Naming

CELL_TIMEOUT = 10.0
PATHS = ["/mcp", "/mcp/servers/{name}"]
# Other agent-side clients, each against these backends, on both paths.
CLIENTS = ["fastmcp", "ts-sdk-new", "ts-sdk-old", "inspector", "mcpgw connect"]
CLIENT_BACKENDS = ["py2-sf-sse", "fm4-sf-sse", "ts32-sf-sse", "ts2-sf-sse"]
CLIENT_ERAS: dict[str, list[str | None]] = {  # client -> eras it is asked for (None: its own)
    "fastmcp": list(ERAS),
    "ts-sdk-new": [None],
    "ts-sdk-old": [None],
    "inspector": [None],
    "mcpgw connect": list(ERAS),
}
METRIC = re.compile(r"^mcpgw_tool_calls_total\{([^}]*)\} ([0-9.e+]+)$", re.M)


@dataclass
class Cell:
    status: str  # "pass" | "fail" | "n/a"
    reason: str = ""
    route: str = ""  # the gateway routes of this cell's tools/call requests ("direct+sdk")
    retried: str = ""  # why its first try failed, when it passed on the second


@dataclass
class Row:
    backend: str
    sdk: str
    client: str
    era: str  # what the agent asked for ("2025-11-25" / "2026-07-28" / "client's choice")
    path: str
    protocol: str | None = None  # what was negotiated
    # this row's tools/call by gateway route (from /metrics, before and after the row)
    calls: dict[str, float] = field(default_factory=dict)
    cells: dict[str, Cell] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.backend} {self.client} {self.era} {self.path}"

    def failures(self) -> dict[str, str]:
        return {f: c.reason for f, c in self.cells.items() if c.status == "fail"}


@dataclass
class Gateway:
    """A running gateway: base URL, admin key, and where its logs go."""

    url: str
    key: str
    logs: Path
    inspector: Path | None = None  # the Inspector CLI launcher (tests/conformance)
    node: str | None = None  # Node 24 for it

    def register(self, backend: Backend) -> str | None:
        """Register ``backend``; None when healthy, else why not."""
        r = httpx.post(
            f"{self.url}/api/v1/servers",
            params={"wait": True},
            json=backend.registration(),
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=300,
        )
        if r.status_code != 201:
            return f"registration answered {r.status_code}: {r.text[:300]}"
        health = r.json().get("health") or {}
        return None if health.get("status") == "healthy" else f"unhealthy: {health}"

    def routes(self) -> dict[str, dict[str, float]]:
        """`mcpgw_tool_calls_total` summed by server and route."""
        r = httpx.get(f"{self.url}/metrics", headers={"Authorization": f"Bearer {self.key}"})
        totals: dict[str, dict[str, float]] = {}
        for labels, value in METRIC.findall(r.text):
            found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            by_route = totals.setdefault(found.get("server", "?"), {})
            by_route[found.get("route", "?")] = by_route.get(found.get("route", "?"), 0) + float(
                value
            )
        return totals


_TIMED_OUT = f"no answer within {CELL_TIMEOUT:.0f} s"


async def _cell(ctx: Ctx, feature: str) -> Cell:
    dialect_unsupported = ctx.memo["dialect"].unsupported
    if feature in dialect_unsupported:
        return Cell("n/a", dialect_unsupported[feature])
    before = len(ctx.agent.routes)
    reason: str | None
    try:
        with anyio.fail_after(CELL_TIMEOUT):
            reason = await ctx.memo["dialect"].check(feature)(ctx)
    except NotApplicable as exc:
        return Cell("n/a", str(exc))
    except TimeoutError:
        reason = _TIMED_OUT
    except Exception as exc:
        reason = _describe(exc)
    route = "+".join(sorted(set(ctx.agent.routes[before:])))
    return Cell("pass" if reason is None else "fail", reason or "", route)


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:400]


async def run_row(
    row: Row, backend: Backend, agent: Any, features: list[str], direct: bool = False
) -> Row:
    """Connect ``agent`` and run ``features``; a failed connection fails every cell.

    Each cell has its own deadline (a hung cell fails alone, the row goes on).
    """
    names = Naming(backend.name if row.path == "/mcp" else None)
    stack = AsyncExitStack()
    try:
        # no deadline around this: the agent's task groups must not outlive a cancel
        # scope; each client has its own (read timeouts, subprocess timeouts)
        connected = await stack.enter_async_context(agent)
        row.protocol = connected.protocol
        ctx = Ctx(connected, names, direct, memo={"dialect": backend.dialect})
        for feature in features:
            row.cells[feature] = await _cell(ctx, feature)
    except Exception as exc:
        reason = f"connection: {_describe(exc)}"
        for feature in features:
            row.cells.setdefault(feature, Cell("fail", reason))
    finally:
        # a client that fails to close is not a cell (and no cancel scope may wrap
        # this: the client's task groups close in the scope they were opened in)
        with contextlib.suppress(Exception):
            await stack.aclose()
    return row


async def counted(gateway: Gateway, backend: Backend, running: Awaitable[Row]) -> Row:
    """Run a row and note how many of its tools/call took each gateway route."""
    before = (await asyncio.to_thread(gateway.routes)).get(backend.name, {})
    row = await running
    after = (await asyncio.to_thread(gateway.routes)).get(backend.name, {})
    row.calls = {r: n - before.get(r, 0) for r, n in after.items() if n - before.get(r, 0)}
    return row


def _gateway_url(gateway: Gateway, backend: Backend, path: str) -> str:
    return gateway.url + path.format(name=backend.name)


def sdk_agent(url: str, mode: str, key: str | None = None, sse: bool = False) -> SdkAgent:
    """The `mcp` SDK client over HTTP; with a key it talks to the gateway."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return SdkAgent(url=url, mode=mode, headers=headers, sse=sse, gateway=key is not None)


async def direct_rows(backend: Backend) -> list[Row]:
    """The baseline: the `mcp` SDK client straight to the backend, in both eras."""

    async def one(era: str, mode: str) -> Row:
        # A server that did not even connect says nothing of what it can do; it is
        # usually a slow start (`npx` on a loaded machine): once more before that
        # failure becomes this era's baseline (and every cell of it n/a).
        def agent() -> SdkAgent:
            stdio = backend.stdio()
            if stdio is not None:
                return SdkAgent(stdio=stdio, mode=mode)
            return sdk_agent(backend.url, mode, sse=backend.transport == "sse")

        for _ in range(2):
            row = Row(backend.name, backend.sdk, "mcp-sdk", era, "direct")
            await run_row(row, backend, agent(), FEATURES, direct=True)
            if not all(c.reason.startswith("connection:") for c in row.cells.values()):
                break
        # A cell the backend fails is n/a through the gateway: one that missed its
        # deadline is tried once more first, so that load alone does not make it so.
        failing = [f for f, c in row.cells.items() if c.status == "fail" and c.reason == _TIMED_OUT]
        if failing and len(failing) < len(row.cells):
            again = Row(row.backend, row.sdk, row.client, row.era, row.path)
            await run_row(again, backend, agent(), failing, direct=True)
            _take_retried(row, again, failing)
        return row

    # One era after the other: the feature servers keep some state per process (what
    # became of the last `slow` call), so one era's cancel must not pass for the other's.
    done = [await one(era, mode) for era, mode in ERAS.items()]
    for row in done:  # what the backend fails by itself is what it cannot do
        for cell in row.cells.values():
            if cell.status == "fail":
                cell.status, cell.reason = "n/a", f"the backend itself: {cell.reason}"
    return list(done)


async def gateway_rows(
    gateway: Gateway, backend: Backend, makers: dict[str, Callable[[], Any]] | None = None
) -> list[Row]:
    """The `mcp` SDK client through the gateway: both eras, both paths.

    One row at a time: agents sharing the gateway's backend session concurrently make
    the relay of a server request that names no call depend on timing.
    """
    rows = []
    for era, mode in ERAS.items():
        for path in PATHS:
            row = Row(backend.name, backend.sdk, "mcp-sdk", era, path)
            url = _gateway_url(gateway, backend, path)
            remake = _maker(sdk_agent, url, mode, gateway.key)
            if makers is not None:
                makers[row.key] = remake
            rows.append(await counted(gateway, backend, run_row(row, backend, remake(), FEATURES)))
    return rows


def _maker(make_agent: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    return lambda: make_agent(*args)


def _client_agent(
    gateway: Gateway, client: str, url: str, era: str | None, server: str | None
) -> Agent:
    if client == "fastmcp":
        return FastMcpAgent(url, gateway.key, ERAS[str(era)])
    if client.startswith("ts-sdk-"):
        import shutil

        from tests.interop.backends import ts_installed

        ts_installed()
        return TsAgent(
            url, gateway.key, client.removeprefix("ts-sdk-"), shutil.which("node") or "node"
        )
    if client == "inspector":
        if gateway.inspector is None or not gateway.inspector.exists():
            raise NotApplicable("the Inspector CLI is not installed (tests/conformance: npm ci)")
        return InspectorAgent(url, gateway.key, gateway.node or node24(), gateway.inspector)
    params = bridge(gateway.url, gateway.key, server)
    return SdkAgent(stdio=params, mode=ERAS[str(era)])


async def client_rows(
    gateway: Gateway,
    backend: Backend,
    clients: list[str] | None = None,
    makers: dict[str, Callable[[], Any]] | None = None,
) -> list[Row]:
    """The other agent-side clients through the gateway, on both paths."""
    rows = []
    for client in clients or CLIENTS:
        features = FEATURES if client == "mcpgw connect" else TOOL_FEATURES
        for era in CLIENT_ERAS[client]:
            for path in PATHS:
                label = era or "client's choice"
                row = Row(backend.name, backend.sdk, client, label, path)
                server = backend.name if path != "/mcp" else None
                url = _gateway_url(gateway, backend, path)
                try:
                    agent = _client_agent(gateway, client, url, era, server)
                except NotApplicable as exc:
                    row.cells = {f: Cell("n/a", str(exc)) for f in features}
                    rows.append(row)
                    continue
                if makers is not None:
                    makers[row.key] = _maker(_client_agent, gateway, client, url, era, server)
                rows.append(await counted(gateway, backend, run_row(row, backend, agent, features)))
    return rows


async def retry_failures(
    gateway: Gateway, backend: Backend, rows: list[Row], makers: dict[str, Callable[[], Any]]
) -> None:
    """Try each failing cell once more, on a new connection, after the backend's other
    rows: the matrix runs beside the rest of the suite on a shared 2-core machine, where
    a 10 s deadline is sometimes missed by load alone. A cell that passes the second
    time is marked (`r` in the table, its first reason kept in `retried`), so a cell
    that needs it every run stands out; one that fails twice fails the row."""
    for row in rows:
        failing = [f for f, c in row.cells.items() if c.status == "fail"]
        remake = makers.get(row.key)
        if not failing or remake is None:
            continue
        again = Row(row.backend, row.sdk, row.client, row.era, row.path)
        await counted(gateway, backend, run_row(again, backend, remake(), failing))
        _take_retried(row, again, failing)


def _take_retried(row: Row, again: Row, failing: list[str]) -> None:
    """The cells of ``failing`` that passed in ``again``, into ``row`` (marked retried)."""
    for feature in failing:
        cell = again.cells.get(feature)
        if cell is not None and cell.status == "pass":
            cell.retried = row.cells[feature].reason
            row.cells[feature] = cell


def apply_baseline(rows: list[Row], baseline: list[Row]) -> None:
    """A gateway cell failing where the backend itself fails (same era) is n/a."""
    by_era = {row.era: row for row in baseline}
    for row in rows:
        era = row.era if row.era in by_era else _era_of(row.protocol)
        base = by_era.get(era)
        if base is None:
            continue
        for feature, cell in row.cells.items():
            direct = base.cells.get(feature)
            if cell.status == "fail" and direct is not None and direct.status == "n/a":
                cell.status, cell.reason = "n/a", direct.reason


def _era_of(protocol: str | None) -> str:
    return "2026-07-28" if (protocol or "") >= "2026-07-28" else "2025-11-25"


@dataclass
class Matrix:
    """All rows so far, and the gateway's route counters per backend."""

    rows: list[Row] = field(default_factory=list)
    routes: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    async def run_backend(
        self,
        gateway: Gateway,
        name: str,
        clients: list[str] | None = None,
        started: Callable[[Backend], None] | None = None,
    ) -> list[Row]:
        """Start, register and drive backend ``name``; its rows (also kept here)."""
        backend = await asyncio.to_thread(make, name)  # may install (cached venv, npm ci)
        await asyncio.to_thread(backend.start, gateway.logs)
        if started is not None:
            started(backend)
        try:
            baseline = await direct_rows(backend)
            problem = await asyncio.to_thread(gateway.register, backend)
            if problem is not None:
                self.errors[name] = problem
            makers: dict[str, Callable[[], Any]] = {}
            rows = await gateway_rows(gateway, backend, makers)
            if name in CLIENT_BACKENDS and clients != []:
                rows += await client_rows(gateway, backend, clients, makers)
            apply_baseline(rows, baseline)
            await retry_failures(gateway, backend, rows, makers)
            self.routes[name] = (await asyncio.to_thread(gateway.routes)).get(name, {})
        finally:
            backend.stop()
        self.rows += [*baseline, *rows]
        return [*baseline, *rows]

    def to_json(self) -> dict[str, Any]:
        return {
            "features": FEATURES,
            "rows": [asdict(row) for row in self.rows],
            "routes": self.routes,
            "registration_errors": self.errors,
        }


MARK = {"pass": "✓", "fail": "✗", "n/a": "·"}


def _mark(cell: Cell | None) -> str:
    if cell is None:
        return ""
    route = {"direct": "d", "sdk": "s", "direct+sdk": "ds"}.get(cell.route, "")
    return MARK[cell.status] + route + ("r" if cell.retried else "")


def table(rows: list[Row]) -> str:
    """The matrix as text: one line per row, one column per feature, then the reasons."""
    heads = ["backend", "client", "era", "path", "proto", "fast", *FEATURES]
    lines = []
    for row in rows:
        proto = row.protocol or "-"
        total = sum(row.calls.values())
        fast = f"{row.calls.get('direct', 0):.0f}/{total:.0f}" if total else "-"
        lines.append(
            [row.backend, row.client, row.era, row.path, proto, fast]
            + [_mark(row.cells.get(f)) for f in FEATURES]
        )
    widths = [
        max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
        for i, h in enumerate(heads)
    ]
    out = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))]
    out += ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in lines]
    out.append("")
    out.append(
        "✓ pass (d: every tools/call took the fast path, s: the SDK path, r: on its second"
        " try)  ✗ fail  · n/a; fast: tools/call on the fast path / all, per"
        " mcpgw_tool_calls_total"
    )
    retried = [(row, f, c.retried) for row in rows for f, c in row.cells.items() if c.retried]
    if retried:
        out.append(f"\npassed on the second try ({len(retried)}; the first failure):")
        out += [f"  {row.key} :: {f}: {reason}" for row, f, reason in retried]
    failures = [
        (row, f, c.reason) for row in rows for f, c in row.cells.items() if c.status == "fail"
    ]
    if failures:
        out.append(f"\nfailing cells ({len(failures)}):")
        out += [f"  {row.key} :: {f}: {reason}" for row, f, reason in failures]
    reasons: dict[str, tuple[set[str], set[str]]] = {}  # reason -> (features, backends)
    for row in rows:
        for f, c in row.cells.items():
            if c.status == "n/a":
                features, backends = reasons.setdefault(c.reason[:200], (set(), set()))
                features.add(f)
                backends.add(row.backend)
    if reasons:
        out.append("\nn/a reasons:")
        for reason, (features, backends) in sorted(
            reasons.items(), key=lambda kv: sorted(kv[1][1])
        ):
            where = ", ".join(sorted(backends))
            out.append(f"  {', '.join(f for f in FEATURES if f in features)} on {where}: {reason}")
    return "\n".join(out)


def route_table(routes: dict[str, dict[str, float]]) -> str:
    lines = ["backend                 tools/call by route (mcpgw_tool_calls_total)"]
    for name, by_route in routes.items():
        total = sum(by_route.values()) or 1
        parts = ", ".join(
            f"{r}={int(v)} ({100 * v / total:.0f}%)" for r, v in sorted(by_route.items())
        )
        lines.append(f"{name:<24}{parts or 'none'}")
    return "\n".join(lines)
