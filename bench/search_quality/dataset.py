"""The benchmark's data: the catalog of real tools and the queries with their answers."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp import types

DATA = Path(__file__).parent / "data"
SPLITS = ("tune", "heldout")


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    relevant: frozenset[str]  # qualified names {server}__{tool}; any one answers it
    split: str


def load_tools(path: Path = DATA / "tools.json") -> list[types.Tool]:
    """Every catalogued tool, named as the gateway names it: ``{server}__{tool}``."""
    servers: list[dict[str, Any]] = json.loads(path.read_text())["servers"]
    return [
        types.Tool(
            name=f"{server['name']}__{tool['name']}",
            description=tool["description"],
            input_schema=tool["input_schema"],
        )
        for server in servers
        for tool in server["tools"]
    ]


def split_of(text: str) -> str:
    """A query's split, from a hash of its text: about 40% tuning, 60% held out,
    fixed before any tuning and never chosen by hand."""
    digest = int(hashlib.sha256(text.encode()).hexdigest(), 16)
    return "tune" if digest % 5 < 2 else "heldout"


def expand(
    relevant: list[str], names: list[str], classes: dict[str, list[str]] | None = None
) -> frozenset[str]:
    """Exact tool names, ``re:PATTERN`` for every tool that does the job
    (``re:.*__(browser_take_screenshot|puppeteer_screenshot)``, matched in full), and
    ``@class`` for a named list of either (tools that do one job on many servers)."""
    found: set[str] = set()
    for entry in relevant:
        if entry.startswith("@"):
            found |= expand((classes or {})[entry[1:]], names, classes)
            continue
        if entry.startswith("re:"):
            pattern = re.compile(entry[3:])
            matched = {n for n in names if pattern.fullmatch(n)}
            if not matched:
                raise ValueError(f"{entry!r} matches no tool")
            found |= matched
        else:
            if entry not in names:
                raise ValueError(f"{entry!r} is no tool in the catalog")
            found.add(entry)
    return frozenset(found)


def load_queries(names: list[str], path: Path = DATA / "queries.json") -> list[Query]:
    """Queries with their relevant tools (patterns expanded over ``names``) and split."""
    data = json.loads(path.read_text())
    groups: dict[str, list[list[Any]]] = data["queries"]
    classes: dict[str, list[str]] = data.get("classes", {})
    queries = []
    for topic, rows in groups.items():
        for number, (text, relevant) in enumerate(rows, start=1):
            queries.append(
                Query(f"{topic}-{number}", text, expand(relevant, names, classes), split_of(text))
            )
    return queries
