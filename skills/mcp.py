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
caller it is filtered with the REST API's own rule (:func:`skills.service.can_see`),
so ``tools/list`` and ``skills/list`` never read the database. Contents are read
through :class:`SkillService`, which checks visibility again.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import mimetypes
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import quote, unquote

import yaml
from mcp import types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from gateway.auth.principal import Principal
from gateway.errors import Forbidden, NotFound
from gateway.mcp import pages
from skills.models import Skill, SkillFile, SkillVersion
from skills.records import can_see
from skills.service import SkillService
from skills.validation import SKILL_MD

log = logging.getLogger("skills.mcp")

SKILLS_EXTENSION = "io.modelcontextprotocol/skills"
SCHEME = "skill://"
LOAD_SKILL = "LOAD_SKILL"
READ_SKILL_FILE = "READ_SKILL_FILE"
LIST_SKILLS = "LIST_SKILLS"
TOOL_NAMES = frozenset({LOAD_SKILL, READ_SKILL_FILE, LIST_SKILLS})
INVALID_PARAMS = -32602
DIRECTORY = "inode/directory"
# Re-read the catalog at least this often, for changes made through other replicas.
CATALOG_MAX_AGE = 30.0
# LOAD_SKILL's description is in every tools/list: the catalog there stays small.
CATALOG_BUDGET = 4_000  # characters of "- name: description" lines
DESCRIPTION_CLIP = 200
LIST_PAGE = 100  # skills/list entries per page (each carries its whole manifest)
Ctx = ServerRequestContext[Any, Any]

# Python's own table, not the machine's /etc/mime.types (the same answer everywhere),
# plus what it lacks for skills.
_TYPES = mimetypes.MimeTypes(filenames=())
for _ext, _kind in (
    (".md", "text/markdown"),
    (".yaml", "application/yaml"),
    (".yml", "application/yaml"),
    (".toml", "application/toml"),
):
    _TYPES.add_type(_kind, _ext)
_ENCODED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}

LOAD_INTRO = (
    "Load a skill: instructions that teach you how to do one kind of task well, with the "
    "files they use. When a task matches a skill below, load it first and follow it; read "
    "the files it mentions with READ_SKILL_FILE."
)
READ_TOOL = types.Tool(
    name=READ_SKILL_FILE,
    description=(
        "Read one file of a skill (a path LOAD_SKILL listed, relative to the skill). Text "
        "comes back as text, anything else as an embedded resource."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "The skill's name."},
            "path": {"type": "string", "description": "e.g. references/GUIDE.md"},
        },
        "required": ["name", "path"],
    },
    annotations=types.ToolAnnotations(read_only_hint=True, open_world_hint=False),
)
LIST_TOOL = types.Tool(
    name=LIST_SKILLS,
    description="Find skills by words in their name or description (names and descriptions).",
    input_schema={
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "Words to look for; empty: all."},
            "offset": {"type": "integer", "minimum": 0, "default": 0},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
        },
    },
    annotations=types.ToolAnnotations(read_only_hint=True, open_world_hint=False),
)
SKILL_TEMPLATE = types.ResourceTemplate(
    uri_template="skill://{skill}/{+path}",
    name="skill-file",
    description="A file of a skill; paths in a SKILL.md are relative to its skill.",
)


class GetSkillParams(types.RequestParams):
    """``skills/get``: the URI of a skill's SKILL.md."""

    uri: str


class DirectoryParams(types.PaginatedRequestParams):
    """``resources/directory/read``: a directory URI (no trailing slash)."""

    uri: str


# --- URIs, types, frontmatter -----------------------------------------------------------
def skill_uri(name: str, path: str | None = None) -> str:
    """``skill://<name>/<path>`` (percent-encoded per segment); the skill's root without a path."""
    root = f"{SCHEME}{quote(name, safe='')}"
    return f"{root}/{quote(path, safe='/')}" if path else root


def parse_uri(uri: str) -> tuple[str, str | None]:
    """(skill name, file or folder path or None for the root) of a ``skill://`` URI.

    Raises -32602 for a path that could leave the skill ('.', '..', empty segments)."""
    if not uri.startswith(SCHEME) or "?" in uri or "#" in uri:
        raise MCPError(INVALID_PARAMS, f"not a skill URI: {uri}")
    name, _, rest = uri[len(SCHEME) :].partition("/")
    name = unquote(name)
    segments = [unquote(s) for s in rest.split("/")] if rest else []
    if not name or any(s in ("", ".", "..") or "/" in s or "\\" in s for s in segments):
        raise MCPError(
            INVALID_PARAMS, f"{uri}: a skill path may not be empty or contain '.' or '..'"
        )
    return name, "/".join(segments) or None


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot be a file of a skill, or None."""
    parts = path.split("/")
    if path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        return f"path {path!r} is outside the skill: give it relative to the skill, without '..'"
    return None


def mime_type(path: str, data: bytes | None = None) -> str:
    """A file's MIME type from its extension, else from its bytes (text or not)."""
    kind, encoding = _TYPES.guess_type(path, strict=False)
    if encoding:  # data.csv.gz is gzip data, not CSV
        return _ENCODED.get(encoding, "application/octet-stream")
    if kind:
        return kind
    return "text/plain" if data is not None and is_text(data) else "application/octet-stream"


def is_text(data: bytes) -> bool:
    if b"\0" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def typed_frontmatter(raw: str, stored: dict[str, Any]) -> dict[str, Any]:
    """The frontmatter as a YAML parser reads it, which is what hosts compare the entry
    with (the stored form keeps every scalar a string: ``1.0`` would be ``"1.0"``)."""
    try:
        # `raw` passed the strict loader at upload: bounded, no aliases or tags.
        data = yaml.safe_load(raw)
    except yaml.YAMLError:
        return dict(stored)
    return _json_value(data) if isinstance(data, dict) else dict(stored)


def _json_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)], is_error=True
    )


# --- the catalog --------------------------------------------------------------------------
@dataclass(frozen=True)
class SkillEntry:
    """One skill at its current version: what the catalog keeps (no file contents)."""

    row: Skill  # detached; read for visibility only
    name: str
    description: str
    files: tuple[tuple[str, int, str], ...]  # (path, size, sha256)
    entry: dict[str, Any]  # the extension's Skill entry (uri, frontmatter, resources)

    @property
    def uri(self) -> str:
        return skill_uri(self.name, SKILL_MD)


def build_entry(skill: Skill, version: SkillVersion, files: list[SkillFile]) -> SkillEntry:
    frontmatter = typed_frontmatter(version.frontmatter_raw, dict(version.frontmatter))
    manifest = tuple((f.path, f.size, f.sha256) for f in files)
    entry = {
        "uri": skill_uri(skill.name, SKILL_MD),
        "frontmatter": frontmatter,
        "resources": [
            {"uri": skill_uri(skill.name, path), "digest": f"sha256:{sha}", "size": size}
            for path, size, sha in manifest
        ],
    }
    return SkillEntry(skill, skill.name, version.description, manifest, entry)


@dataclass
class CallerSkills:
    """The skills one caller may see, and what is built from them."""

    entries: list[SkillEntry]
    by_name: dict[str, SkillEntry] = field(default_factory=dict)
    tools: list[types.Tool] = field(default_factory=list)
    resources: list[types.Resource] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.by_name = {e.name: e for e in self.entries}
        self.tools = _tools(self.entries)
        self.resources = [
            types.Resource(
                uri=e.uri,
                name=e.name,
                description=e.description,
                mime_type="text/markdown",
                size=next((size for path, size, _ in e.files if path == SKILL_MD), None),
            )
            for e in self.entries
        ]


def _tools(entries: list[SkillEntry]) -> list[types.Tool]:
    """LOAD_SKILL with the catalog in its description, READ_SKILL_FILE, and LIST_SKILLS
    only when the catalog does not fit the description's budget."""
    if not entries:
        return []
    lines: list[str] = []
    used = 0
    for e in entries:
        line = f"- {e.name}: {_clip(e.description, DESCRIPTION_CLIP)}"
        if used + len(line) > CATALOG_BUDGET:
            break
        lines.append(line)
        used += len(line) + 1
    more = len(entries) - len(lines)
    description = f"{LOAD_INTRO}\n\nSkills:\n" + "\n".join(lines)
    if more:
        description += f"\n(and {more} more: find them with {LIST_SKILLS})"
    load = types.Tool(
        name=LOAD_SKILL,
        description=description,
        input_schema={
            "type": "object",
            "properties": {"name": {"type": "string", "description": "The skill's name."}},
            "required": ["name"],
        },
        annotations=types.ToolAnnotations(read_only_hint=True, open_world_hint=False),
    )
    return [load, READ_TOOL, LIST_TOOL] if more else [load, READ_TOOL]


_NOTHING = CallerSkills([])


class SkillsMcp:
    """The skills pillar's MCP surface; the protocol front calls it for skill tools,
    ``skill://`` resources and the extension's methods."""

    def __init__(self, service: SkillService, *, max_age: float = CATALOG_MAX_AGE) -> None:
        self.service = service
        self.max_age = max_age
        self.generation = 0  # bumped when the catalog's content changes (cursors, caches)
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
        key = (self.generation, principal.is_admin, principal.user_id, principal.team_ids)
        view = self._views.get(key)
        if view is None:
            view = CallerSkills([e for e in entries if can_see(principal, e.row)])
            if len(self._views) > 1024:
                self._views.clear()
            self._views[key] = view
        return view

    # --- tools --------------------------------------------------------------------------
    async def tools(self, principal: Principal) -> list[types.Tool]:
        """The skill tools for ``principal`` (none when it sees no skill)."""
        return (await self.visible(principal)).tools

    async def call_tool(
        self, principal: Principal, name: str, arguments: dict[str, Any]
    ) -> types.CallToolResult:
        """Run LOAD_SKILL, READ_SKILL_FILE or LIST_SKILLS; bad input is a tool error."""
        if not principal.can("skills:read"):
            return _error("this key may not read skills (needs 'skills:read')")
        if name == LIST_SKILLS:
            return await self._list_tool(principal, arguments)
        skill = arguments.get("name")
        if not isinstance(skill, str) or not skill:
            return _error(f"{name} needs 'name': a skill from LOAD_SKILL's description")
        if name == LOAD_SKILL:
            return await self._load(principal, skill)
        path = arguments.get("path")
        if not isinstance(path, str) or not path:
            return _error("READ_SKILL_FILE needs 'path': a file LOAD_SKILL listed")
        problem = path_problem(path)
        if problem:
            return _error(problem)
        try:
            _, data = await self.service.read_file(principal, skill, path)
        except (NotFound, Forbidden) as exc:
            return _error(f"{exc.message}; LOAD_SKILL lists a skill's files")
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
        except (NotFound, Forbidden):
            return _error(f"no skill named {name!r}; LOAD_SKILL's description lists yours")
        self.service.record_load(view.skill.name)
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
            return _error("'query' must be a string")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            return _error("'offset' must be a non-negative integer")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100:
            return _error("'limit' must be an integer from 1 to 100")
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
        self.service.record_load(entry.name)
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
