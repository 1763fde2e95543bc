"""A small client of the skills.sh catalog (``GET {base}/api/search?q=``).

The response shape is the one ``npx skills find`` reads (``searchSkillsAPI`` in the
``skills`` package, 1.7.4)::

    {"query": "react", "searchType": "...", "count": 1, "duration_ms": 12,
     "skills": [{"id": "vercel-labs/agent-skills/vercel-react-best-practices",
                 "skillId": "vercel-react-best-practices",
                 "name": "vercel-react-best-practices",
                 "installs": 205992, "source": "vercel-labs/agent-skills"}]}

``source`` is itself an ``npx skills`` source (usually ``owner/repo``), so an entry is
imported as ``{source}@{name}``, exactly what the tool installs; ``catalog:<id>`` names
one entry as a source of its own. The base URL is ``MCPGW_SKILLS_CATALOG_URL``; it
passes the SSRF guard like every URL the gateway fetches (``MCPGW_ALLOW_PRIVATE_URLS``
for a catalog on a private network), and the request goes to the address it approved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.backend_errors import BackendError
from gateway.config import Settings
from gateway.pinned_http import httpx_client
from gateway.ssrf import HostPins, check_url
from skills.sources.errors import SourceError, SourceNotFound, SourceUnavailable

DEFAULT_LIMIT = 20  # the tool's SEARCH_RESULT_LIMIT
MAX_LIMIT = 100
LOOKUP_LIMIT = 50
CATALOG_TIMEOUT_SECONDS = 20.0
MAX_QUERY_CHARS = 200
_OWNER = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38})$", re.I)  # the tool's GITHUB_OWNER_PATTERN
_ESCAPES = re.compile(r"\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]|[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class CatalogEntry:
    """One skill listed by the catalog."""

    id: str
    skill_id: str
    name: str
    source: str
    installs: int = 0

    @property
    def import_source(self) -> str:
        """The ``npx skills`` source that installs this entry (``owner/repo@name``)."""
        return f"{self.source or self.id}@{self.name}"

    @property
    def catalog_source(self) -> str:
        """The source text that names this entry through the catalog."""
        return f"catalog:{self.id}"


def _clean(value: object) -> str:
    return _ESCAPES.sub("", value).strip() if isinstance(value, str) else ""


def _entry(raw: Any) -> CatalogEntry | None:
    if not isinstance(raw, dict):
        return None
    entry_id, name = _clean(raw.get("id")), _clean(raw.get("name"))
    if not entry_id or not name:
        return None
    installs = raw.get("installs")
    return CatalogEntry(
        id=entry_id,
        skill_id=_clean(raw.get("skillId")) or entry_id.rsplit("/", 1)[-1],
        name=name,
        source=_clean(raw.get("source")),
        installs=installs if isinstance(installs, int) and installs > 0 else 0,
    )


async def search_catalog(
    query: str,
    settings: Settings,
    *,
    limit: int = DEFAULT_LIMIT,
    owner: str | None = None,
    client: httpx.AsyncClient | None = None,
) -> list[CatalogEntry]:
    """Search the catalog; entries sorted by installs, most first (as the tool shows them).

    ``owner`` narrows the search to one GitHub owner (the tool's ``--owner``). Raises
    :class:`SourceError` for a bad query and :class:`SourceUnavailable` when the catalog
    cannot be reached or answers with something that is not a search result.
    """
    query = query.strip()
    if not query:
        raise SourceError("the catalog search needs a query", code="invalid_query")
    if len(query) > MAX_QUERY_CHARS:
        raise SourceError(f"the query is longer than {MAX_QUERY_CHARS} characters")
    params = {"q": query, "limit": str(max(1, min(limit, MAX_LIMIT)))}
    if owner is not None:
        if not _OWNER.match(owner.strip()):
            raise SourceError(f"{owner!r} is not a GitHub owner", code="invalid_query")
        params["owner"] = owner.strip().lower()
    base = settings.skills_catalog_url.rstrip("/")
    url = f"{base}/api/search"
    try:
        pins = HostPins.of(await check_url(url, settings.allow_private_urls))
    except BackendError as exc:
        unresolved = str(exc).startswith("cannot resolve")
        raise SourceUnavailable(
            f"the skills catalog at {base} {'cannot be reached' if unresolved else 'is refused'}: "
            f"{exc}",
            code="catalog_unavailable",
        ) from None
    try:
        if client is None:
            async with httpx_client(url, pins, timeout=CATALOG_TIMEOUT_SECONDS) as own:
                response = await own.get(url, params=params)
        else:
            response = await client.get(url, params=params, timeout=CATALOG_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        raise SourceUnavailable(
            f"the skills catalog at {base} cannot be reached: {exc.__class__.__name__}",
            code="catalog_unavailable",
        ) from None
    if response.status_code != 200:
        raise SourceUnavailable(
            f"the skills catalog at {base} answered HTTP {response.status_code}",
            code="catalog_unavailable",
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    skills = body.get("skills") if isinstance(body, dict) else None
    if not isinstance(skills, list):
        raise SourceUnavailable(
            f"the skills catalog at {base} did not answer with a search result",
            code="catalog_unavailable",
        )
    entries = [e for e in (_entry(raw) for raw in skills) if e is not None]
    return sorted(entries, key=lambda e: e.installs, reverse=True)


async def lookup_catalog(entry_id: str, settings: Settings) -> CatalogEntry:
    """The entry whose id is ``entry_id`` (found by searching for its last segment)."""
    wanted = entry_id.strip().strip("/")
    term = wanted.rsplit("/", 1)[-1]
    for entry in await search_catalog(term, settings, limit=LOOKUP_LIMIT):
        if entry.id.lower() == wanted.lower():
            return entry
    raise SourceNotFound(
        f"the skills catalog has no skill with id {wanted!r}", code="catalog_entry_not_found"
    )
