"""The REST catalog's pages (`GET /api/v1/tools`, `/servers/{name}/tools`): the
entries a caller may see, with what the policy hides left out and the servers'
transforms applied (renames and hidden tools) before the query filter and paging."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from gateway.auth.principal import Principal
from gateway.servers.calls import qualified
from gateway.servers.catalog import ALL_ENTRIES, LIST_ACTION
from gateway.servers.models import CatalogEntry
from gateway.servers.repository import ServerRepository
from gateway.servers.transforming import transform_entries

if TYPE_CHECKING:
    from gateway.servers.service import ServerService


async def catalog_page(
    service: ServerService,
    principal: Principal,
    server: str | None,
    kind: str | None,
    query: str | None,
    limit: int,
    offset: int,
) -> tuple[list[tuple[CatalogEntry, str]], int]:
    """A page of (entry, server name) and the total, for ``principal``."""
    principal.require("tools:read")
    async with service.db.session() as session:
        repo = ServerRepository(session)
        if server is not None:
            ids: Sequence[str] | None = [(await service._get_row(session, principal, server)).id]
        elif principal.is_admin:
            ids = None
        else:
            rows, _ = await repo.list_servers(team_ids=list(principal.team_ids))
            ids = [r.id for r in rows]
        policy, transforms = service.policy_for(principal), service.transforms
        if policy is None and not transforms:
            entries, total = await repo.catalog(
                server_ids=ids, kind=kind, query=query, limit=limit, offset=offset
            )
            return list(entries), total
        # What the policy hides is not listed, and transforms rename and hide: both
        # before the query filter (transforms) and paging.
        entries, _ = await repo.catalog(
            server_ids=ids,
            kind=kind,
            query=None if transforms else query,
            limit=ALL_ENTRIES,
            offset=0,
        )
    if transforms:
        entries = transform_entries(entries, transforms, query)
    shown = [
        (entry, name)
        for entry, name in entries
        if policy is None
        or policy.listable(principal, LIST_ACTION[entry.kind], qualified(name, entry.name))
    ]
    return shown[offset : offset + limit], len(shown)
