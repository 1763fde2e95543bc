"""The built-in ``essentials`` bundle: calculator, git and documents, all in-process.

Registered (enabled) on a fresh install by migration 0002, so a new gateway gives
agents working tools with no network; an admin may disable or remove it.
"""

from __future__ import annotations

from typing import Any

ESSENTIALS_NAME = "essentials"

ESSENTIALS_CONFIG: dict[str, Any] = {
    "members": [
        {
            "name": name,
            "type": "generated",
            "config": {
                "module": f"gateway.servers.essentials.{name}:server",
                "attribute": "server",
            },
        }
        for name in ("calculator", "git", "documents")
    ]
}

ESSENTIALS_DESCRIPTION = (
    "Built-in tools that need no network: exact calculator (arithmetic, statistics, unit "
    "conversion), read-only git over MCPGW_GIT_ROOTS, and deterministic HTML/PDF/DOCX documents."
)
