"""Find the skills in a checked-out source the way ``npx skills`` (1.7.4) does.

The tool's ``discoverSkills``, step by step:

1. If ``<search>/SKILL.md`` is a valid skill, that one skill is the answer.
2. Otherwise walk, in order: ``<search>`` (children only), ``skills/``,
   ``skills/.curated``, ``skills/.experimental``, ``skills/.system`` and every agent's
   project folder (``.agents/skills``, ``.claude/skills``, … see
   :data:`AGENT_PROJECT_SKILL_DIRS`) up to three levels deep, then the folders a
   ``.claude-plugin/marketplace.json`` or ``.claude-plugin/plugin.json`` names (one
   level). A folder with a SKILL.md is a skill and is not descended into; ``node_modules``,
   ``.git``, ``dist``, ``build`` and ``__pycache__`` are not descended into.
3. Nothing found: every SKILL.md up to five levels below ``<search>``.

A SKILL.md counts when its YAML front matter has string ``name`` and ``description``;
the first skill of a name wins; ``metadata.internal: true`` skills are left out unless
asked for by name; skills that a ``skills-lock.json`` at the root records as installed
copies inside an agent folder are left out (they belong to another repository).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SKILL_FILE = "SKILL.md"
SKIP_DIRS = frozenset({"node_modules", ".git", "dist", "build", "__pycache__"})
AGENT_PROJECT_SKILL_DIRS = (
    ".agents/skills",
    ".claude/skills",
    ".cline/skills",
    ".codebuddy/skills",
    ".codex/skills",
    ".commandcode/skills",
    ".continue/skills",
    ".factory/skills",
    ".github/skills",
    ".goose/skills",
    ".grok/skills",
    ".iflow/skills",
    ".junie/skills",
    ".kilo/skills",
    ".kilocode/skills",
    ".kimchi/skills",
    ".kiro/skills",
    ".minimax/skills",
    ".mux/skills",
    ".neovate/skills",
    ".opencode/skills",
    ".openhands/skills",
    ".pi/skills",
    ".posit/assistant/skills",
    ".qoder/skills",
    ".roo/skills",
    ".trae/skills",
    ".windsurf/skills",
    ".zcode/skills",
    ".zencoder/skills",
)
CONTAINER_DIRS = (
    "skills",
    "skills/.curated",
    "skills/.experimental",
    "skills/.system",
    *AGENT_PROJECT_SKILL_DIRS,
)
FALLBACK_MAX_DEPTH = 5
CONTAINER_DEPTH = 3
# A SKILL.md is a page of instructions; anything this big is not one.
MAX_SKILL_MD_BYTES = 5 * 1024 * 1024

_FRONT_MATTER = re.compile(r"^\ufeff?---\r?\n(.*?)\r?\n---(?:\r?\n|$)", re.S)
_ESCAPES = re.compile(
    r"\x1b\][\s\S]*?(?:\x07|\x1b\\)|\x1b[P^_][\s\S]*?\x1b\\|\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"
    r"|\x1b[\x20-\x7e]|[\x80-\x9f]|[\x00-\x08\x0b\x0c\x0d-\x1a\x1c-\x1f\x7f]"
)


@dataclass(frozen=True)
class DiscoveredSkill:
    """One skill found in a source: ``root`` is the folder holding its SKILL.md.

    ``subpath`` is ``root`` relative to the checkout (POSIX, ``""`` for the root);
    ``plugin`` names the Claude plugin a marketplace/plugin manifest groups it under.
    """

    name: str
    root: Path
    subpath: str
    description: str = ""
    plugin: str | None = None


def _sanitize(text: str) -> str:
    """The tool's ``sanitizeMetadata``: no terminal escapes, one line."""
    return re.sub(r"[\r\n]+", " ", _ESCAPES.sub("", text)).strip()


def read_front_matter(skill_md: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(front matter, None)`` or ``(None, why it cannot be read)``."""
    try:
        if skill_md.stat().st_size > MAX_SKILL_MD_BYTES:
            return None, f"larger than {MAX_SKILL_MD_BYTES} bytes"
        raw = skill_md.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read: {exc.__class__.__name__}"
    match = _FRONT_MATTER.match(raw)
    if match is None:
        return {}, None
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        return None, f"YAML error in the front matter: {str(exc).splitlines()[0]}"
    return (data if isinstance(data, dict) else {}), None


def _contained(path: Path, base: Path) -> bool:
    try:
        path.resolve().relative_to(base.resolve())
    except ValueError:
        return False
    return True


def _has_skill_md(folder: Path, checkout: Path) -> bool:
    candidate = folder / SKILL_FILE
    # A symlinked SKILL.md may point anywhere on disk; only one that stays inside counts.
    return candidate.is_file() and (not candidate.is_symlink() or _contained(candidate, checkout))


def _child_dirs(folder: Path) -> list[Path]:
    """Sub-folders, sorted for a stable order; symlinks are not followed (like the tool)."""
    try:
        with os.scandir(folder) as entries:
            names = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
    except OSError:
        return []
    return [folder / name for name in names]


def _relative(path: str, base: Path) -> str | None:
    """``./x`` paths only (the tool's ``isValidRelativePath``), resolved under ``base``."""
    if not isinstance(path, str) or not path.startswith("./"):
        return None
    return os.path.normpath(os.path.join(base, path))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _plugins(search: Path) -> Iterable[tuple[Path, list[Any], str | None]]:
    """(plugin folder, its ``skills`` list, plugin name) from the two manifests."""
    marketplace = _read_json(search / ".claude-plugin" / "marketplace.json")
    if marketplace is not None:
        metadata = marketplace.get("metadata")
        root = metadata.get("pluginRoot") if isinstance(metadata, dict) else None
        if root is None or (isinstance(root, str) and root.startswith("./")):
            plugins = marketplace.get("plugins")
            for plugin in plugins if isinstance(plugins, list) else []:
                if not isinstance(plugin, dict):
                    continue
                source = plugin.get("source")
                # Object sources point at other repositories; the tool skips them.
                if source is not None and not (isinstance(source, str) and source[:2] == "./"):
                    continue
                folder = Path(os.path.normpath(search / (root or "") / (source or "")))
                skills = plugin.get("skills")
                name = plugin.get("name")
                yield (
                    folder,
                    skills if isinstance(skills, list) else [],
                    name if isinstance(name, str) and name else None,
                )
    manifest = _read_json(search / ".claude-plugin" / "plugin.json")
    if manifest is not None:
        skills = manifest.get("skills")
        name = manifest.get("name")
        yield (
            search,
            skills if isinstance(skills, list) else [],
            name if isinstance(name, str) and name else None,
        )


def _plugin_dirs(search: Path) -> tuple[list[Path], dict[Path, str]]:
    """The tool's ``getPluginSkillPaths`` (folders to walk) and ``getPluginGroupings``."""
    walk: list[Path] = []
    groups: dict[Path, str] = {}
    for folder, skills, name in _plugins(search):
        if not _contained(folder, search):
            continue
        for entry in skills:
            skill_dir = _relative(entry, folder)
            if skill_dir is None or not _contained(Path(skill_dir), search):
                continue
            walk.append(Path(os.path.dirname(skill_dir)))
            if name:
                groups[Path(skill_dir).resolve()] = name
        walk.append(folder / "skills")
    return walk, groups


def _locked_names(checkout: Path) -> set[str]:
    lock = _read_json(checkout / "skills-lock.json")
    skills = lock.get("skills") if lock else None
    return {_normal(k) for k in skills} if isinstance(skills, dict) else set()


def _normal(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.lower())


class _Discovery:
    def __init__(self, checkout: Path, search: Path, include_internal: bool) -> None:
        self.checkout = checkout
        self.search = search
        self.include_internal = include_internal
        self.skills: list[DiscoveredSkill] = []
        self.skipped: list[str] = []
        self.seen_names: set[str] = set()
        self.parsed: set[Path] = set()
        self.locked = _locked_names(checkout)
        self.walk_dirs, self.groups = _plugin_dirs(search)

    def _rel(self, path: Path) -> str:
        rel = os.path.relpath(path, self.checkout).replace(os.sep, "/")
        return "" if rel == "." else rel

    def _installed_copy(self, name: str, folder: Path) -> bool:
        if not self.locked:
            return False
        rel = self._rel(folder)
        if not any(rel == d or rel.startswith(d + "/") for d in AGENT_PROJECT_SKILL_DIRS):
            return False
        return _normal(name) in self.locked or _normal(folder.name) in self.locked

    def parse(self, folder: Path) -> DiscoveredSkill | None:
        skill_md = (folder / SKILL_FILE).resolve()
        if skill_md in self.parsed:
            return None
        self.parsed.add(skill_md)
        data, problem = read_front_matter(folder / SKILL_FILE)
        where = self._rel(folder / SKILL_FILE)
        if data is None:
            self.skipped.append(f"{where}: {problem}")
            return None
        name, description = data.get("name"), data.get("description")
        missing = [k for k, v in (("name", name), ("description", description)) if not v]
        if missing:
            self.skipped.append(f"{where}: front matter lacks {', '.join(missing)}")
            return None
        if not isinstance(name, str) or not isinstance(description, str):
            self.skipped.append(f"{where}: front matter name and description must be strings")
            return None
        metadata = data.get("metadata")
        internal = isinstance(metadata, dict) and metadata.get("internal") is True
        if internal and not self.include_internal:
            return None
        return DiscoveredSkill(
            name=_sanitize(name),
            root=folder,
            subpath=self._rel(folder),
            description=_sanitize(description),
            plugin=self.groups.get(folder.resolve()),
        )

    def add(self, skill: DiscoveredSkill | None) -> None:
        if skill is None or skill.name in self.seen_names:
            return
        if self._installed_copy(skill.name, skill.root):
            return
        self.skills.append(skill)
        self.seen_names.add(skill.name)

    def try_add(self, folder: Path) -> bool:
        """Whether ``folder`` is a skill folder (valid or not): then it is not descended."""
        if not _has_skill_md(folder, self.checkout):
            return False
        self.add(self.parse(folder))
        return True

    def walk(self, folder: Path, max_depth: int, depth: int = 1) -> None:
        for child in _child_dirs(folder):
            if self.try_add(child) or depth >= max_depth or child.name in SKIP_DIRS:
                continue
            self.walk(child, max_depth, depth + 1)

    def find_all(self, folder: Path, depth: int = 0) -> list[Path]:
        """The tool's ``findSkillDirs``: every SKILL.md folder up to five levels down."""
        if depth > FALLBACK_MAX_DEPTH:
            return []
        found = [folder] if _has_skill_md(folder, self.checkout) else []
        for child in _child_dirs(folder):
            if child.name not in SKIP_DIRS:
                found.extend(self.find_all(child, depth + 1))
        return found


def discover_skills(
    checkout: Path,
    subpath: str | None = None,
    *,
    include_internal: bool = False,
    full_depth: bool = False,
    skipped: list[str] | None = None,
) -> list[DiscoveredSkill]:
    """The skills under ``checkout/subpath``, in the tool's order (see the module docstring).

    ``full_depth`` is the tool's ``--full-depth``: keep searching after a root SKILL.md
    and always run the deep fallback. SKILL.md files that were found but are not
    valid skills are described in ``skipped`` (when given), for error messages.
    """
    search = checkout / subpath if subpath else checkout
    if not _contained(search, checkout):
        raise ValueError(f"subpath {subpath!r} leaves the checkout")
    state = _Discovery(checkout, search, include_internal)
    try:
        if _has_skill_md(search, checkout):
            skill = state.parse(search)
            if skill is not None and not state._installed_copy(skill.name, search):
                state.add(skill)
                if not full_depth:
                    return state.skills
        state.walk(search, 1)
        for container in CONTAINER_DIRS:
            state.walk(search / container, CONTAINER_DEPTH)
        for folder in state.walk_dirs:
            state.walk(folder, 1)
        if not state.skills or full_depth:
            for folder in state.find_all(search):
                state.add(state.parse(folder))
        return state.skills
    finally:
        if skipped is not None:
            skipped.extend(state.skipped)
