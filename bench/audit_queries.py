"""The audit API's filtered queries on PostgreSQL at scale: a generated table of
``--rows`` rows (default 10 million) in a throwaway database, migrated as the gateway
migrates it; for each common filter, the plan PostgreSQL picks (EXPLAIN ANALYZE) and
the p50/p95 of ``--repeats`` queries with varying values, as the API sends them
(newest first, a page of 100).

    python -m bench.audit_queries --rows 10000000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy.dialects import postgresql

from bench.common import (
    drop_pg_database,
    median,
    percentile,
    pg_database,
    print_table,
    write_results,
)
from gateway import migrate
from gateway.audit.repository import AuditFilter, AuditRepository
from gateway.db import Database

SERVERS, TOOLS, USERS, TEAMS = 50, 20, 2000, 40
DAYS = 90

# Rows spread over 90 days: 50 servers, 20 tools each, 2,000 users in 40 teams, 2 % errors.
GENERATE = """
INSERT INTO audit_events (id, ts, request_id, actor_user_id, actor_email, actor_key_prefix,
  actor_team, actor_role, auth_method, client_ip, action, route, server, target, arguments,
  outcome, error, latency_ms, bytes_out, tokens, stream, seq, prev_hash, hash)
SELECT md5(g::text), now() - (g::double precision / %(rows)s::bigint) * interval '90 days',
  md5((g * 7)::text), 'user-' || (g %% 2000), 'user' || (g %% 2000) || '@example.com',
  'mgw_live_' || lpad((g %% 2000)::text, 6, '0'), 'team-' || (g %% 40), 'developer', 'api_key',
  '10.0.' || (g %% 250) || '.1',
  CASE WHEN g %% 50 = 0 THEN 'resources/read' WHEN g %% 97 = 0 THEN 'server.update'
       ELSE 'tools/call' END,
  CASE g %% 4 WHEN 0 THEN 'rest' WHEN 1 THEN 'mcp' ELSE 'mcp-fast' END,
  'server-' || (g %% 50), 'tool_' || (g %% 20) || '_of_' || (g %% 50), '{"q":"x"}',
  CASE WHEN g %% 50 = 7 THEN 'error' ELSE 'ok' END,
  CASE WHEN g %% 50 = 7 THEN 'backend failed: connection refused #' || g ELSE NULL END,
  (g %% 1000) / 10.0, 400 + g %% 600, 100 + g %% 150,
  'bench', g, md5((g - 1)::text), md5(g::text)
FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS g
"""


def _fill(url: str, rows: int) -> float:
    """Generate the rows with the secondary indexes dropped, then build them again as the
    migration defines them (a bulk build is far faster than row-by-row upkeep)."""
    started = time.perf_counter()
    chunk = 1_000_000
    with psycopg.connect(url, autocommit=True) as conn:
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'audit_events'"
            " AND indexname LIKE 'ix_%%'"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        for start in range(1, rows + 1, chunk):
            stop = min(rows, start + chunk - 1)
            conn.execute(GENERATE, {"rows": rows, "start": start, "stop": stop})
            print(f"  {stop:,} rows", flush=True)
        conn.execute("SET maintenance_work_mem = '512MB'")
        for name, definition in indexes:
            conn.execute(definition)
            print(f"  built {name}", flush=True)
        conn.execute("VACUUM ANALYZE audit_events")
    return time.perf_counter() - started


def _filters(now: datetime) -> dict[str, Any]:
    """Per filter: a function of a random generator giving one API search."""
    return {
        "newest (no filter)": lambda r: AuditFilter(),
        "server": lambda r: AuditFilter(server=f"server-{r.randrange(SERVERS)}"),
        "actor (email)": lambda r: AuditFilter(actor=f"user{r.randrange(USERS)}@example.com"),
        "actor (user id)": lambda r: AuditFilter(actor=f"user-{r.randrange(USERS)}"),
        "team": lambda r: AuditFilter(team=f"team-{r.randrange(TEAMS)}"),
        "action (rare)": lambda r: AuditFilter(action="server.update"),
        "outcome=error": lambda r: AuditFilter(outcome="error"),
        "server + outcome=error": lambda r: AuditFilter(
            server=f"server-{7 + 50 * 0}", outcome="error"
        ),
        "one day (since/until)": lambda r: AuditFilter(
            since=now - timedelta(days=r.randrange(1, DAYS)),
            until=now - timedelta(days=r.randrange(1, DAYS)) + timedelta(days=DAYS),
        ),
        "q (text in error)": lambda r: AuditFilter(q="refused #1"),
        "old page (1 day ago, server)": lambda r: AuditFilter(
            server=f"server-{r.randrange(SERVERS)}", until=now - timedelta(days=1)
        ),
    }


async def _measure(url: str, repeats: int) -> list[dict[str, Any]]:
    db = Database(url.replace("postgresql://", "postgresql+psycopg://"))
    now = datetime.now(UTC)
    rng = random.Random(16)
    out = []
    try:
        for name, make in _filters(now).items():
            times = []
            for i in range(repeats):
                f = make(rng)
                if f.since and f.until and f.since >= f.until:
                    f = AuditFilter(since=f.until - timedelta(days=1), until=f.until)
                started = time.perf_counter()
                async with db.session() as session:
                    rows = await AuditRepository(session).page(f, 101)
                times.append((time.perf_counter() - started) * 1000)
                if i == 0:
                    found = len(rows)
                    plan = await _plan(db, f)
            out.append(
                {
                    "filter": name,
                    "rows_on_page": found,
                    "p50_ms": round(median(times), 2),
                    "p95_ms": round(percentile(times, 95), 2),
                    "plan": plan,
                }
            )
    finally:
        await db.dispose()
    return out


async def _plan(db: Database, f: AuditFilter) -> str:
    """The top of the plan PostgreSQL picks (its access path), from EXPLAIN ANALYZE."""
    from sqlalchemy import select, text

    from gateway.audit.models import AuditEvent
    from gateway.audit.repository import conditions

    e = AuditEvent
    stmt = select(e).where(*conditions(f)).order_by(e.ts.desc(), e.id.desc()).limit(101)
    sql = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    async with db.session() as session:
        lines = (await session.execute(text("EXPLAIN (ANALYZE, COSTS OFF) " + sql))).scalars()
        plan = [line.strip("-> ").strip() for line in lines]
    scans = [p for p in plan if "Scan" in p]
    return "; ".join(scans[:2]) or plan[0]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the database (prints URL)")
    args = parser.parse_args(argv)
    url = pg_database()
    try:
        asyncio.run(_migrate(url))
        print(f"generating {args.rows:,} audit rows …", flush=True)
        seconds = _fill(url, args.rows)
        rows = asyncio.run(_measure(url, args.repeats))
        with psycopg.connect(url) as conn:
            size = conn.execute(
                "SELECT pg_size_pretty(pg_total_relation_size('audit_events'))"
            ).fetchone()
        title = f"audit queries on PostgreSQL, {args.rows:,} rows (page of 100, newest first)"
        print_table(title, [{k: v for k, v in r.items() if k != "plan"} for r in rows])
        for r in rows:
            print(f"  {r['filter']}: {r['plan']}")
        print(f"generated in {seconds:.0f} s; table with indexes: {size[0] if size else '?'}")
        write_results("audit_queries", {"rows": rows, "total_rows": args.rows})
        return rows
    finally:
        if args.keep:
            print(f"kept {url}")
        else:
            drop_pg_database(url)


async def _migrate(url: str) -> None:
    db = Database(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        await migrate.upgrade(db.engine)
    finally:
        await db.dispose()


if __name__ == "__main__":
    main()
