"""A server's catalog (tools, resources, templates, prompts) as stored rows and back.

The database keeps one row per item with its definition and a digest of it (so a
refresh knows what changed); memory keeps the SDK models the front serves.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mcp import types

from gateway.servers.runtimes.base import Catalog

# The action whose unconditional denial hides a catalog entry of each kind.
LIST_ACTION = {
    "tool": "tools/call",
    "resource": "resources/read",
    "resource_template": "resources/read",
    "prompt": "prompts/get",
}
ALL_ENTRIES = 1_000_000  # a catalog query for everything (filtered, then paged)


def digest(definition: dict[str, Any]) -> str:
    """A stable digest of one item's definition."""
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()


def catalog_rows(catalog: Catalog) -> list[tuple[str, str, str, dict[str, Any], str]]:
    """(kind, name, description, definition, digest) for every item of ``catalog``."""
    rows = []
    for kind, items, key in (
        ("tool", catalog.tools, "name"),
        ("resource", catalog.resources, "uri"),
        ("resource_template", catalog.resource_templates, "uri_template"),
        ("prompt", catalog.prompts, "name"),
    ):
        for item in items:
            definition = item.model_dump(by_alias=True, exclude_none=True, mode="json")
            rows.append(
                (
                    kind,
                    str(getattr(item, key)),
                    item.description or "",
                    definition,
                    digest(definition),
                )
            )
    return rows


_KINDS = {
    "tool": ("tools", types.Tool),
    "resource": ("resources", types.Resource),
    "resource_template": ("resource_templates", types.ResourceTemplate),
    "prompt": ("prompts", types.Prompt),
}


def add_to_catalog(catalog: Catalog, kind: str, definition: dict[str, Any]) -> None:
    """Add one stored item (``kind`` as in the rows) to ``catalog``."""
    attribute, model = _KINDS[kind]
    getattr(catalog, attribute).append(model.model_validate(definition))
