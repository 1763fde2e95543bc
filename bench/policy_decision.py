"""What one policy decision costs in process: the engine (gateway/policy/engine.py)
with a realistic policy of N rules (default 10,000 and 100), asked about many targets.

Rules are a mix seen in real policies: per-server deny globs (``srvN__delete_*``),
literal tool names, role- and team-specific rules, conditional rules over arguments,
``except_targets``, a few catch-alls. Two figures per size:

- *cold*: the first decision for a target (rules found through the prefix index);
- *warm*: later decisions for targets already seen (the per-target cache), which is
  what the call path pays in steady state.

Each is the p50 and p99 over the decisions of one run, median over runs. Issue 17's
budget: 10,000 rules, ≤ 20 µs p50 / ≤ 50 µs p99.

    python -m bench.policy_decision --rules 10000 100 --runs 5
"""

from __future__ import annotations

import argparse
import os
import random
import time
from typing import Any

from bench.common import median, print_table, write_results
from gateway.auth.principal import Principal
from gateway.policy.document import parse
from gateway.policy.engine import CompiledPolicy, Request

ROLES = ("admin", "operator", "developer", "viewer")


def realistic(count: int, servers: int, seed: int = 17) -> dict[str, Any]:
    """A policy document of ``count`` rules over ``servers`` servers."""
    rng = random.Random(seed)
    rules: list[dict[str, Any]] = []
    for i in range(count):
        server = f"srv{rng.randrange(servers)}"
        kind = i % 10
        rule: dict[str, Any] = {"id": f"r{i}", "effect": "deny", "actions": ["tools/call"]}
        if kind < 4:
            rule["targets"] = [f"{server}__{rng.choice(['delete', 'drop', 'write', 'push'])}_*"]
        elif kind < 6:
            rule["targets"] = [f"{server}__tool{rng.randrange(50)}"]
            rule["subjects"] = {"roles": [rng.choice(ROLES)]}
        elif kind < 7:
            rule["targets"] = [f"{server}__*"]
            rule["subjects"] = {"teams": [f"team{rng.randrange(100)}"]}
            rule["except_targets"] = [f"{server}__get_*"]
        elif kind < 9:
            rule["targets"] = [f"{server}__tool{rng.randrange(50)}"]
            rule["condition"] = 'has(args.path) && args.path.startsWith("/etc")'
        else:
            rule["effect"] = "allow"
            rule["targets"] = [f"{server}__*"]
        rules.append(rule)
    return {"rules": rules}


def _subject(rng: random.Random) -> Principal:
    team = f"team{rng.randrange(100)}"
    return Principal(
        user_id=f"u{rng.randrange(1000)}",
        email="user@example.com",
        name="u",
        role=rng.choice(ROLES),
        key_id=f"k{rng.randrange(1000)}",
        scopes=("*",),
        team_ids=(team,),
        team_names=(team,),
    )


def _run(policy: CompiledPolicy, targets: list[str], rng: random.Random) -> dict[str, float]:
    """p50/p99 of cold decisions (first per target), then warm ones (the same again)."""
    subjects = [_subject(rng) for _ in range(64)]
    requests = [
        Request(arguments={"path": rng.choice(["/etc/passwd", "/srv/x"])}) for _ in range(8)
    ]
    policy._cache.clear()  # a cold start, each run
    out: dict[str, float] = {}
    for phase in ("cold", "warm"):
        times = []
        for i, target in enumerate(targets):
            subject, request = subjects[i % 64], requests[i % 8]
            started = time.perf_counter_ns()
            policy.decide(subject, "tools/call", target, request)
            times.append(time.perf_counter_ns() - started)
        times.sort()
        out[f"{phase}_p50_us"] = times[len(times) // 2] / 1000
        out[f"{phase}_p99_us"] = times[int(len(times) * 0.99)] / 1000
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rules", type=int, nargs="+", default=[10_000, 100])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--decisions", type=int, default=20_000, help="targets per run")
    args = parser.parse_args(argv)
    rows = []
    for count in args.rules:
        servers = max(10, count // 20)
        started = time.perf_counter()
        policy = CompiledPolicy(parse(realistic(count, servers)), 1)
        compile_ms = (time.perf_counter() - started) * 1000
        rng = random.Random(1)
        names = ["delete_x", "drop_y", "write_z", "get_a", "push_b"] + [
            f"tool{i}" for i in range(50)
        ]
        runs = []
        for _ in range(args.runs):
            targets = [
                f"srv{rng.randrange(servers)}__{rng.choice(names)}" for _ in range(args.decisions)
            ]
            runs.append(_run(policy, list(dict.fromkeys(targets)), rng))
        row: dict[str, Any] = {"rules": count, "servers": servers, "compile_ms": round(compile_ms)}
        for key in runs[0]:
            row[key] = median([r[key] for r in runs])
        rows.append(row)
    print_table(f"one policy decision in process (median of {args.runs} runs)", rows)
    write_results("policy_decision", {"runs": args.runs, "rows": rows, "pid": os.getpid()})
    return rows


if __name__ == "__main__":
    main()
