"""The skills catalog as agents see it: entries with their file manifests, the
``skill://`` URI scheme, MIME types, and the fallback tools built from a caller's
entries (``LOAD_SKILL`` carries the compact catalog in its description)."""

from __future__ import annotations

import base64
import math
import mimetypes
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import quote, unquote

import yaml
from mcp import types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INVALID_PARAMS

from skills.models import Skill, SkillFile, SkillVersion
from skills.validation import SKILL_MD

SKILLS_EXTENSION = "io.modelcontextprotocol/skills"
SCHEME = "skill://"
LOAD_SKILL = "LOAD_SKILL"
READ_SKILL_FILE = "READ_SKILL_FILE"
LIST_SKILLS = "LIST_SKILLS"
TOOL_NAMES = frozenset({LOAD_SKILL, READ_SKILL_FILE, LIST_SKILLS})
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
