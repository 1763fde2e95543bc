"""What pillar 2 exposes to agents over MCP: skills, with progressive disclosure.

Two ways in, over one in-memory catalog:

- the Skills extension ``io.modelcontextprotocol/skills`` (SEP-2640): ``skills/list``
  and ``skills/get`` return each skill's frontmatter and a manifest of its files with
  ``sha256:`` digests; every file is a resource ``skill://<name>/<path>`` read with
  ``resources/read``; ``resources/directory/read`` lists a folder of a skill;
- tools, for clients without the extension: ``LOAD_SKILL`` (its description is the
  catalog: names and descriptions), ``READ_SKILL_FILE`` and, only when the catalog is
  too long for one description, ``LIST_SKILLS``.

The catalog (every skill's current frontmatter and file manifest, no contents) is
read from the database after a change (``SkillService.version``) and at most every
``CATALOG_MAX_AGE`` seconds otherwise (changes made through another replica). Per
caller it is filtered with the REST API's own rule (:func:`skills.records.can_see`),
so ``tools/list`` and ``skills/list`` never read the database. Contents are read
through :class:`SkillService`, which checks visibility again.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mcp import types
from mcp.server.context import CallNext, HandlerResult
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INVALID_PARAMS
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from gateway.auth.principal import Principal
from gateway.errors import Forbidden, NotFound
from gateway.mcp import pages
from gateway.mcp.results import tool_error
from gateway.mcp.surface import SurfaceDefaults
from gateway.observability.tracing import operation
from gateway.policy.service import PolicyDenied
from skills.catalog import (
    CATALOG_MAX_AGE,
    DIRECTORY,
    LIST_PAGE,
    LIST_SKILLS,
    LOAD_SKILL,
    SCHEME,
    SKILL_TEMPLATE,
    SKILLS_EXTENSION,
    TOOL_NAMES,
    CallerSkills,
    Ctx,
    DirectoryParams,
    GetSkillParams,
    SkillEntry,
    build_entry,
    is_text,
    mime_type,
    parse_uri,
    path_problem,
    skill_uri,
    typed_frontmatter,
)
from skills.records import can_see
from skills.service import SkillService
from skills.validation import SKILL_MD

log = logging.getLogger("skills.mcp")

_NOTHING = CallerSkills([])


class SkillsMcp(SurfaceDefaults):
    """The skills pillar's MCP surface (:class:`gateway.mcp.surface.Surface`): skill
    tools, ``skill://`` resources and the Skills extension's methods."""

    def __init__(self, service: SkillService, *, max_age: float = CATALOG_MAX_AGE) -> None:
        self.service = service
        self.max_age = max_age
        self.generation = 0  # bumped when the catalog's content changes (cursors, caches)
        self.listed_in_search_mode = True  # LOAD_SKILL's description is the catalog
        self._entries: list[SkillEntry] = []
        self._fingerprint: tuple[Any, ...] | None = None
        self._built_version = -1
        self._built_at = 0.0
        self._lock = asyncio.Lock()
        self._views: dict[tuple[Any, ...], CallerSkills] = {}

    def add_change_listener(self, listener: Callable[[], Awaitable[None]]) -> None:
        """Call ``listener`` after every change to the skills (to announce list changes)."""
        self.service.change_listeners.append(listener)

    @staticmethod
    def handles_tool(name: str) -> bool:
        return name in TOOL_NAMES

    @staticmethod
    def owns_uri(uri: str) -> bool:
        return uri.startswith(SCHEME)

    # --- catalog ------------------------------------------------------------------------
    def _fresh(self) -> bool:
        return (
            self._built_version == self.service.version
            and time.monotonic() - self._built_at < self.max_age
        )

    async def _catalog(self) -> list[SkillEntry]:
        if self._fresh():
            return self._entries
        async with self._lock:  # one rebuild at a time; the others wait for it
            if self._fresh():
                return self._entries
            version = self.service.version  # read first: a change during the read rebuilds
            try:
                rows = await self.service.catalog()
            except Exception:
                # Serve what we have (maybe nothing) rather than fail tools/list.
                log.warning("could not read the skills catalog", exc_info=True)
                self._built_at = time.monotonic()
                return self._entries
            entries = [build_entry(*row) for row in rows]
            fingerprint = tuple(
                (e.name, e.row.version, e.row.visibility, e.row.owner_id, e.row.team_id)
                for e in entries
            )
            if fingerprint != self._fingerprint:
                self._entries, self._fingerprint = entries, fingerprint
                self.generation += 1
                self._views.clear()
            self._built_version, self._built_at = version, time.monotonic()
            return self._entries

    async def visible(self, principal: Principal) -> CallerSkills:
        """What ``principal`` may see: the REST API's rule (``skills:read``, then
        private/team/public), cached per catalog generation and visibility inputs."""
        if not principal.can("skills:read"):
            return _NOTHING
        entries = await self._catalog()
        policies = self.service.policies
        policy = policies.policy_for(principal) if policies is not None else None
        key = (
            self.generation,
            principal.is_admin,
            principal.user_id,
            principal.team_ids,
            policy.signature(principal) if policy is not None else None,
        )
        view = self._views.get(key)
        if view is None:
            view = CallerSkills(
                [
                    e
                    for e in entries
                    if can_see(principal, e.row)
                    and (policy is None or policy.listable(principal, "skills/load", e.name))
                ]
            )
            if len(self._views) > 1024:
                self._views.clear()
            self._views[key] = view
        return view

    # --- tools --------------------------------------------------------------------------
    async def tools(self, principal: Principal) -> list[types.Tool]:
        """The skill tools for ``principal`` (none when it sees no skill)."""
        return (await self.visible(principal)).tools

    async def call_tool(
        self,
        principal: Principal,
        name: str,
        arguments: dict[str, Any],
        session_key: str | None = None,
    ) -> types.CallToolResult:
        """Run LOAD_SKILL, READ_SKILL_FILE or LIST_SKILLS; bad input is a tool error."""
        if not principal.can("skills:read"):
            return tool_error("this key may not read skills (needs 'skills:read')")
        if name == LIST_SKILLS:
            return await self._list_tool(principal, arguments)
        skill = arguments.get("name")
        if not isinstance(skill, str) or not skill:
            return tool_error(f"{name} needs 'name': a skill from LOAD_SKILL's description")
        if name == LOAD_SKILL:
            return await self._load(principal, skill)
        path = arguments.get("path")
        if not isinstance(path, str) or not path:
            return tool_error("READ_SKILL_FILE needs 'path': a file LOAD_SKILL listed")
        problem = path_problem(path)
        if problem:
            return tool_error(problem)
        try:
            _, data = await self.service.read_file(principal, skill, path)
        except (NotFound, Forbidden) as exc:
            return tool_error(f"{exc.message}; LOAD_SKILL lists a skill's files")
        if is_text(data):
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=data.decode())]
            )
        blob = types.BlobResourceContents(
            uri=skill_uri(skill, path),
            mime_type=mime_type(path, data),
            blob=base64.b64encode(data).decode(),
        )
        return types.CallToolResult(
            content=[types.EmbeddedResource(type="resource", resource=blob)]
        )

    async def _load(self, principal: Principal, name: str) -> types.CallToolResult:
        try:
            view = await self.service.get(principal, name)
        except PolicyDenied as exc:
            return tool_error(exc.message)
        except (NotFound, Forbidden):
            return tool_error(f"no skill named {name!r}; LOAD_SKILL's description lists yours")
        self.service.record_load(view.skill.name, principal)
        files = [
            {"path": f.path, "size": f.size, "digest": f"sha256:{f.sha256}"} for f in view.files
        ]
        others = "\n".join(f"- {f.path} ({f.size} bytes)" for f in view.files if f.path != SKILL_MD)
        listing = (
            f"Files of skill {name!r}, paths relative to the skill (read one with "
            f"READ_SKILL_FILE {{name, path}}):\n{others}"
            if others
            else f"Skill {name!r} has no files besides SKILL.md."
        )
        version = view.version
        structured = {
            "name": view.skill.name,
            "version": version.version,
            "uri": skill_uri(view.skill.name, SKILL_MD),
            "frontmatter": typed_frontmatter(version.frontmatter_raw, dict(version.frontmatter)),
            "files": files,
        }
        return types.CallToolResult(
            content=[
                types.TextContent(type="text", text=version.body),
                types.TextContent(type="text", text=listing),
            ],
            structured_content=structured,
        )

    async def _list_tool(
        self, principal: Principal, arguments: dict[str, Any]
    ) -> types.CallToolResult:
        query = arguments.get("query", "")
        offset = arguments.get("offset", 0)
        limit = arguments.get("limit", 50)
        if not isinstance(query, str):
            return tool_error("'query' must be a string")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            return tool_error("'offset' must be a non-negative integer")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100:
            return tool_error("'limit' must be an integer from 1 to 100")
        words = query.lower().split()
        found = [
            {"name": e.name, "description": e.description}
            for e in (await self.visible(principal)).entries
            if all(w in f"{e.name} {e.description}".lower() for w in words)
        ]
        payload = {"skills": found[offset : offset + limit], "total": len(found)}
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=json.dumps(payload))],
            structured_content=payload,
        )

    # --- resources ----------------------------------------------------------------------
    async def resources(self, principal: Principal) -> list[types.Resource]:
        """One resource per visible skill: its SKILL.md (the other files are read by URI)."""
        return (await self.visible(principal)).resources

    async def templates(self, principal: Principal) -> list[types.ResourceTemplate]:
        return [SKILL_TEMPLATE] if (await self.visible(principal)).entries else []

    async def read_resource(self, principal: Principal, uri: str) -> types.ReadResourceResult:
        """One file of a skill the caller may see; -32602 for anything else."""
        name, path = parse_uri(uri)
        entry = (await self.visible(principal)).by_name.get(name)
        if entry is not None and (path is None or _is_directory(entry, path)):
            raise MCPError(
                INVALID_PARAMS, f"{uri} is a directory: list it with resources/directory/read"
            )
        if path is None:
            raise MCPError(INVALID_PARAMS, f"no skill file is served at {uri}")
        try:
            _, data = await self.service.read_file(principal, name, path)
        except (NotFound, Forbidden):
            raise MCPError(INVALID_PARAMS, f"no skill file is served at {uri}") from None
        canonical, mime = skill_uri(name, path), mime_type(path, data)
        contents: types.TextResourceContents | types.BlobResourceContents
        if is_text(data):
            contents = types.TextResourceContents(uri=canonical, mime_type=mime, text=data.decode())
        else:
            encoded = base64.b64encode(data).decode()
            contents = types.BlobResourceContents(uri=canonical, mime_type=mime, blob=encoded)
        return types.ReadResourceResult(contents=[contents])

    # --- the extension's methods --------------------------------------------------------
    async def list_skills(
        self, principal: Principal, cursor: str | None, modern: bool
    ) -> dict[str, Any]:
        """``skills/list``: complete entries, paginated (an entry is never split)."""
        entries = (await self.visible(principal)).entries
        chunk, following = pages.page(entries, cursor, self.generation, LIST_PAGE)
        result: dict[str, Any] = {"skills": [e.entry for e in chunk]}
        if following:
            result["nextCursor"] = following
        return _cacheable(result, modern)

    async def get_skill(self, principal: Principal, uri: str, modern: bool) -> dict[str, Any]:
        """``skills/get``: one entry by its SKILL.md URI; counts a load."""
        name, path = parse_uri(uri)
        entry = (await self.visible(principal)).by_name.get(name)
        if entry is None or path != SKILL_MD:
            raise MCPError(INVALID_PARAMS, f"No skill is served at {uri}")
        with operation("skills.load", {"mcpgw.skill.name": entry.name, "mcpgw.skill.file": path}):
            self.service.record_load(entry.name, principal)
        return _cacheable({"skill": entry.entry}, modern)

    async def read_directory(
        self, principal: Principal, uri: str, cursor: str | None
    ) -> dict[str, Any]:
        """``resources/directory/read``: the direct children of a folder of a skill."""
        name, path = parse_uri(uri)
        entry = (await self.visible(principal)).by_name.get(name)
        if entry is None or (path is not None and not _is_directory(entry, path)):
            raise MCPError(INVALID_PARAMS, f"{uri} is not a directory resource")
        prefix = f"{path}/" if path else ""
        children: dict[str, types.Resource] = {}
        for file_path, size, _ in entry.files:
            if not file_path.startswith(prefix):
                continue
            head, sub, _ = file_path[len(prefix) :].partition("/")
            if sub:
                children.setdefault(
                    head,
                    types.Resource(
                        uri=skill_uri(name, prefix + head), name=head, mime_type=DIRECTORY
                    ),
                )
            else:
                children[head] = types.Resource(
                    uri=skill_uri(name, file_path),
                    name=head,
                    mime_type=mime_type(file_path),
                    size=size,
                )
        items = sorted(children.values(), key=lambda r: r.uri)
        chunk, following = pages.page(items, cursor, self.generation)
        result: dict[str, Any] = {
            "resources": [
                r.model_dump(by_alias=True, exclude_none=True, mode="json") for r in chunk
            ]
        }
        if following:
            result["nextCursor"] = following
        return result

    def install(self, server: Server[Any], caller: Callable[[Ctx], Principal]) -> None:
        """Serve the extension on ``server``: declare it and register its methods.

        ``caller`` gives the authenticated principal of a request. The declaration goes in
        ``capabilities.extensions`` in both eras: the SDK drops that field from a
        2025-11-25 ``initialize`` result (it came in 2026-07-28), so a middleware puts it
        back, as other SDKs send it to 2025-11-25 clients.
        """
        settings: dict[str, Any] = {"directoryRead": True}
        server.extensions = {**server.extensions, SKILLS_EXTENSION: settings}

        def modern(ctx: Ctx) -> bool:
            return ctx.protocol_version not in HANDSHAKE_PROTOCOL_VERSIONS

        async def on_list(ctx: Ctx, params: types.PaginatedRequestParams) -> HandlerResult:
            return await self.list_skills(caller(ctx), params.cursor, modern(ctx))

        async def on_get(ctx: Ctx, params: GetSkillParams) -> HandlerResult:
            return await self.get_skill(caller(ctx), params.uri, modern(ctx))

        async def on_directory(ctx: Ctx, params: DirectoryParams) -> HandlerResult:
            return await self.read_directory(caller(ctx), params.uri, params.cursor)

        async def declare(ctx: Ctx, call_next: CallNext) -> HandlerResult:
            result = await call_next(ctx)
            if ctx.method == "initialize" and isinstance(result, dict):
                capabilities = result.get("capabilities")
                if isinstance(capabilities, dict):
                    declared = capabilities.get("extensions") or {}
                    capabilities["extensions"] = {**declared, SKILLS_EXTENSION: settings}
            return result

        server.add_request_handler("skills/list", types.PaginatedRequestParams, on_list)
        server.add_request_handler("skills/get", GetSkillParams, on_get)
        server.add_request_handler("resources/directory/read", DirectoryParams, on_directory)
        server.middleware.append(declare)  # innermost: sees the serialized result


def _is_directory(entry: SkillEntry, path: str) -> bool:
    return any(p.startswith(f"{path}/") for p, _, _ in entry.files)


def _cacheable(result: dict[str, Any], modern: bool) -> dict[str, Any]:
    # 2026-07-28 results carry ttlMs/cacheScope (CacheableResult); 2025-11-25 has neither.
    # Entries differ per caller and change with any upload: private, immediately stale,
    # like the gateway's other lists.
    return {**result, "ttlMs": 0, "cacheScope": "private"} if modern else result
