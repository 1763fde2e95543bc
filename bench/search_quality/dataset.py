"""The benchmark's data: the catalog of real tools and the queries with their answers."""

from __future__ import annotations

import json
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


def load_queries(path: Path = DATA / "queries.json") -> list[Query]:
    """Queries with their relevant tools and split."""
    rows: list[dict[str, Any]] = json.loads(path.read_text())["queries"]
    return [
        Query(row["id"], row["query"], frozenset(row["relevant"]), row["split"]) for row in rows
    ]
