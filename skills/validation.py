"""The Agent Skills specification (agentskills.io/specification) as checks with line numbers.

``validate`` reads a skill's files (already safely unpacked, see ``skills.archive``)
and returns every problem at once, each with the field and the SKILL.md line it
concerns, so an author fixes them all in one round.

Deliberate differences from the reference validator ``skills-ref`` (see docs/skills.md):
names are ASCII (``a-z0-9-``: the name is a URL path segment, a file name and what
agents pick skills by, so look-alike Unicode letters are refused); an empty
``compatibility`` is an error (the spec says 1-500 characters); ``metadata`` must map
strings to strings and ``license``/``compatibility`` must be strings (the spec's
types, which skills-ref does not check); YAML flow collections (``[a, b]``) are
accepted, since they are plain YAML that every agent's parser reads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from skills import frontmatter
from skills.frontmatter import FrontmatterError

SKILL_MD = "SKILL.md"
KNOWN_FIELDS = ("name", "description", "license", "compatibility", "metadata", "allowed-tools")
MAX_NAME = 64
MAX_DESCRIPTION = 1024
MAX_COMPATIBILITY = 500
# The spec's progressive-disclosure guidance for the body (warnings, never errors).
BODY_MAX_LINES = 500
BODY_MAX_TOKENS = 5_000
NAME_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
_NAME = re.compile(NAME_PATTERN)
# Relative file references in the body: Markdown links and bare paths under the
# spec's optional directories.
_LINK = re.compile(r"\]\(\s*<?([^)\s>#?]+)")
_BARE_PATH = re.compile(r"(?<![\w/.-])((?:scripts|references|assets)/[\w./-]*[\w-])")

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One finding: which field, which SKILL.md line (when there is one), what is wrong."""

    field: str
    message: str
    line: int | None = None
    severity: Severity = "error"

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "line": self.line, "message": self.message}


Add = Callable[[Problem], None]
LineOf = Callable[[str], int]


@dataclass
class ParsedSkill:
    """What a valid SKILL.md says, ready to store."""

    name: str
    description: str
    frontmatter: dict[str, Any]
    frontmatter_raw: str
    body: str
    license: str | None = None
    compatibility: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    allowed_tools: list[str] = field(default_factory=list)
    allowed_tools_line: int | None = None
    body_line: int = 1


@dataclass
class Report:
    """The verdict: errors block storing a skill, warnings are advice."""

    problems: list[Problem] = field(default_factory=list)
    skill: ParsedSkill | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def valid(self) -> bool:
        return not self.errors and self.skill is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "name": self.skill.name if self.skill else None,
            "errors": [p.as_dict() for p in self.errors],
            "warnings": [p.as_dict() for p in self.warnings],
        }


def name_problems(name: str) -> list[str]:
    """Why ``name`` is not a valid skill name (empty list: it is)."""
    if not name:
        return ["must not be empty"]
    out = []
    if len(name) > MAX_NAME:
        out.append(f"must be at most {MAX_NAME} characters (has {len(name)})")
    if name != name.lower():
        out.append("must be lowercase")
    if name.startswith("-") or name.endswith("-"):
        out.append("must not start or end with a hyphen")
    if "--" in name:
        out.append("must not contain consecutive hyphens")
    bad = sorted({c for c in name.lower() if not (c.isascii() and (c.isalnum() or c == "-"))})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        out.append(f"may only contain letters a-z, digits and hyphens (found {shown})")
    return out


def validate(files: Mapping[str, bytes], *, folder: str | None, strict: bool = True) -> Report:
    """Check a skill given as {relative path: content}; ``folder`` is its directory name
    (None when unknown, e.g. a bare SKILL.md upload, which then takes the skill's name)."""
    report = Report()
    add = report.problems.append
    data = files.get(SKILL_MD)
    if data is None:
        lower = next((p for p in files if p.lower() == "skill.md"), None)
        if lower is None:
            add(Problem(SKILL_MD, "missing required file SKILL.md at the skill's root"))
            return report
        add(
            Problem(
                SKILL_MD,
                f"the file must be named SKILL.md, not {lower}",
                severity="error" if strict else "warning",
            )
        )
        if strict:
            return report
        data = files[lower]
    try:
        text = frontmatter.decode(data)
        if "\x00" in text:
            # Never valid in Markdown, and PostgreSQL text cannot hold it.
            at = text[: text.index("\x00")].count("\n") + 1
            add(Problem(SKILL_MD, "SKILL.md contains a NUL character", at))
            return report
        if text.startswith("\ufeff"):
            add(Problem(SKILL_MD, "starts with a byte-order mark", 1, "warning"))
            text = text[1:]
        parts = frontmatter.split(text)
        loaded = frontmatter.load(parts.raw)
    except FrontmatterError as exc:
        add(Problem(exc.field, exc.message, exc.line))
        return report
    fm, lines = loaded.data, loaded.lines

    def line(key: str) -> int:
        return lines.get(key, 1)

    for key in fm:
        if key not in KNOWN_FIELDS:
            add(
                Problem(
                    key,
                    f"unknown frontmatter field {key!r} (the spec allows {', '.join(KNOWN_FIELDS)};"
                    " put client-specific values under metadata)",
                    line(key),
                    "error" if strict else "warning",
                )
            )

    name = _required_string(fm, "name", line, add)
    if name is not None:
        for message in name_problems(name):
            add(Problem("name", f"name {name!r} {message}", line("name")))
        if folder is not None and folder != name:
            add(
                Problem(
                    "name",
                    f"name {name!r} must equal the skill's folder name {folder!r}",
                    line("name"),
                )
            )
    description = _required_string(fm, "description", line, add)
    if description is not None and len(description) > MAX_DESCRIPTION:
        add(
            Problem(
                "description",
                f"description must be at most {MAX_DESCRIPTION} characters "
                f"(has {len(description)})",
                line("description"),
            )
        )
    license_ = _optional_string(fm, "license", line, add)
    compatibility = _optional_string(fm, "compatibility", line, add)
    if compatibility is not None and not 1 <= len(compatibility) <= MAX_COMPATIBILITY:
        add(
            Problem(
                "compatibility",
                f"compatibility must be 1-{MAX_COMPATIBILITY} characters "
                f"(has {len(compatibility)})",
                line("compatibility"),
            )
        )
    metadata = _metadata(fm, line, lines, add)
    allowed = _allowed_tools(fm, line, add)
    _body_guidance(parts.body, parts.body_line, files, add)

    if report.errors or name is None or description is None:
        return report
    report.skill = ParsedSkill(
        name=name,
        description=description,
        frontmatter=fm,
        frontmatter_raw=parts.raw,
        body=parts.body,
        license=license_,
        compatibility=compatibility,
        metadata=metadata,
        allowed_tools=allowed,
        allowed_tools_line=lines.get("allowed-tools"),
        body_line=parts.body_line,
    )
    return report


def _required_string(fm: dict[str, Any], key: str, line: Any, add: Any) -> str | None:
    if key not in fm:
        add(Problem(key, f"missing required field {key!r}", 1))
        return None
    value = fm[key]
    if not isinstance(value, str):
        add(Problem(key, f"{key} must be a string", line(key)))
        return None
    if not value.strip():
        add(Problem(key, f"{key} must not be empty", line(key)))
        return None
    return value


def _optional_string(fm: dict[str, Any], key: str, line: LineOf, add: Add) -> str | None:
    if key not in fm:
        return None
    value = fm[key]
    if not isinstance(value, str):
        add(Problem(key, f"{key} must be a string", line(key)))
        return None
    return value


def _metadata(fm: dict[str, Any], line: LineOf, lines: dict[str, int], add: Add) -> dict[str, str]:
    value = fm.get("metadata")
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        add(
            Problem(
                "metadata", "metadata must be a mapping of strings to strings", line("metadata")
            )
        )
        return {}
    out = {}
    for key, item in value.items():
        if isinstance(item, str):
            out[key] = item
        else:
            add(
                Problem(
                    f"metadata.{key}",
                    f"metadata values must be strings; {key!r} is a "
                    f"{'list' if isinstance(item, list) else 'mapping'}",
                    lines.get(f"metadata.{key}", line("metadata")),
                )
            )
    return out


def _allowed_tools(fm: dict[str, Any], line: LineOf, add: Add) -> list[str]:
    value = fm.get("allowed-tools")
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        add(
            Problem(
                "allowed-tools",
                "allowed-tools should be one space-delimited string; a list is accepted",
                line("allowed-tools"),
                "warning",
            )
        )
        return [v.strip() for v in value if v.strip()]
    add(
        Problem(
            "allowed-tools",
            "allowed-tools must be a space-delimited string of tool names",
            line("allowed-tools"),
        )
    )
    return []


def _body_guidance(body: str, first: int, files: Mapping[str, bytes], add: Add) -> None:
    lines = body.splitlines()
    if not body.strip():
        add(Problem("body", "the body is empty: agents get no instructions", first, "warning"))
        return
    if len(lines) > BODY_MAX_LINES:
        add(
            Problem(
                "body",
                f"the body has {len(lines)} lines; keep SKILL.md under {BODY_MAX_LINES} and move "
                "details to references/",
                first + BODY_MAX_LINES,
                "warning",
            )
        )
    tokens = len(body) // 4  # the usual rough estimate: ~4 characters per token
    if tokens > BODY_MAX_TOKENS:
        add(
            Problem(
                "body",
                f"the body is about {tokens} tokens; the spec recommends under {BODY_MAX_TOKENS}",
                first,
                "warning",
            )
        )
    seen: set[str] = set()
    for offset, text in enumerate(lines):
        for match in (*_LINK.finditer(text), *_BARE_PATH.finditer(text)):
            ref = match.group(1).removeprefix("./")
            if ref in seen or "://" in ref or ref.startswith(("/", "mailto:", "#")):
                continue
            seen.add(ref)
            # A prefix counts: "assets/My Template.pdf" is cut at the space by the pattern.
            if any(p.startswith(ref.rstrip("/")) for p in files):
                continue
            add(
                Problem(
                    "body",
                    f"references {ref!r}, which is not a file of the skill",
                    first + offset,
                    "warning",
                )
            )
