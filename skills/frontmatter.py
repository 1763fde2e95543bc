"""Split a SKILL.md into YAML frontmatter and Markdown body, and load the YAML safely.

The YAML is read event by event (PyYAML's parser, never its constructor) and built
into plain ``str``/``list``/``dict`` values, the way the reference validator's
strictyaml reads it: every scalar is a string (``version: 1.0`` is ``"1.0"``).
Reading events first is what makes hostile input cheap to refuse: anchors and
aliases (the "billion laughs" expansion), explicit tags, duplicate keys, deep
nesting and oversized documents are rejected before anything is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

# Far above what a real frontmatter needs (name 64 + description 1024 + some metadata),
# far below what could hurt: parsing 64 KiB of YAML takes milliseconds.
MAX_FRONTMATTER_BYTES = 64 * 1024
MAX_EVENTS = 5_000
MAX_DEPTH = 8
# Where the frontmatter's first line sits in the file (line 1 is the opening ``---``).
FRONTMATTER_FIRST_LINE = 2


class FrontmatterError(Exception):
    """The frontmatter cannot be read; ``line`` is a 1-based line of SKILL.md or None."""

    def __init__(self, message: str, line: int | None = None, field: str = "frontmatter"):
        super().__init__(message)
        self.message = message
        self.line = line
        self.field = field


@dataclass
class SplitSkillMd:
    """SKILL.md cut in two; ``raw`` is the frontmatter text exactly as written."""

    raw: str
    body: str
    body_line: int  # line of SKILL.md where the body starts
    closing_line: int  # line of the closing ``---``


@dataclass
class Frontmatter:
    """The loaded frontmatter and the SKILL.md line of every key (``metadata.x`` too)."""

    data: dict[str, Any]
    lines: dict[str, int] = field(default_factory=dict)


def decode(data: bytes) -> str:
    """SKILL.md as text: UTF-8, strictly (a byte BOM is dropped by the caller's choice)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FrontmatterError(
            f"SKILL.md is not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}",
            line,
            "SKILL.md",
        ) from None


def split(text: str) -> SplitSkillMd:
    """Find the frontmatter between the first line ``---`` and the next ``---`` line."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip() != "---":
        raise FrontmatterError(
            "SKILL.md must start with YAML frontmatter: a first line '---', the YAML, "
            "then a line '---'",
            1,
        )
    for index in range(1, len(lines)):
        if lines[index].rstrip() == "---":
            raw = "".join(lines[1:index])
            if len(raw.encode("utf-8")) > MAX_FRONTMATTER_BYTES:
                raise FrontmatterError(
                    f"frontmatter is larger than {MAX_FRONTMATTER_BYTES // 1024} KiB", 1
                )
            return SplitSkillMd(
                raw=raw,
                body="".join(lines[index + 1 :]),
                body_line=index + 2,
                closing_line=index + 1,
            )
        if index > MAX_EVENTS:
            break  # a frontmatter this long is refused below anyway; stop scanning
    raise FrontmatterError("frontmatter is not closed: no line '---' after the first", 1)


@dataclass
class _Frame:
    container: dict[str, Any] | list[Any]
    path: str  # dotted path of this container ("" for the top level)
    key: str | None = None  # a mapping's key waiting for its value
    key_line: int = 0


def load(raw: str) -> Frontmatter:
    """Build the frontmatter from parser events, refusing anything a safe subset forbids."""
    if len(raw.encode("utf-8")) > MAX_FRONTMATTER_BYTES:
        raise FrontmatterError(f"frontmatter is larger than {MAX_FRONTMATTER_BYTES // 1024} KiB")
    stack: list[_Frame] = []
    lines: dict[str, int] = {}
    result: Any = None
    documents = 0

    def line_of(event: yaml.Event) -> int:
        mark = event.start_mark
        return (int(mark.line) if mark is not None else 0) + FRONTMATTER_FIRST_LINE

    def attach(value: Any, event: yaml.Event) -> None:
        nonlocal result
        if not stack:
            result = value
            return
        frame = stack[-1]
        if isinstance(frame.container, list):
            frame.container.append(value)
            return
        if frame.key is None:
            if not isinstance(value, str):
                raise FrontmatterError("mapping keys must be plain strings", line_of(event))
            if value in frame.container:
                where = f"{frame.path}.{value}" if frame.path else value
                raise FrontmatterError(f"duplicate key {where!r}", line_of(event), where)
            frame.key, frame.key_line = value, line_of(event)
            return
        path = f"{frame.path}.{frame.key}" if frame.path else frame.key
        frame.container[frame.key] = value
        lines.setdefault(path, frame.key_line)
        frame.key = None

    try:
        for count, event in enumerate(yaml.parse(raw, Loader=yaml.SafeLoader)):
            if count > MAX_EVENTS:
                raise FrontmatterError(f"frontmatter has more than {MAX_EVENTS} YAML nodes")
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise FrontmatterError(
                    "YAML anchors and aliases (&, *) are not allowed in frontmatter",
                    line_of(event),
                )
            if isinstance(event, yaml.NodeEvent) and getattr(event, "tag", None) is not None:
                raise FrontmatterError(
                    f"explicit YAML tags ({event.tag}) are not allowed in frontmatter",  # type: ignore[attr-defined]
                    line_of(event),
                )
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise FrontmatterError("frontmatter must be one YAML document", line_of(event))
            elif isinstance(event, yaml.ScalarEvent):
                attach(event.value, event)
            elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise FrontmatterError(
                        f"frontmatter nests deeper than {MAX_DEPTH} levels", line_of(event)
                    )
                parent = stack[-1] if stack else None
                path = ""
                if parent is not None and isinstance(parent.container, dict) and parent.key:
                    path = f"{parent.path}.{parent.key}" if parent.path else parent.key
                elif parent is not None and isinstance(parent.container, dict):
                    raise FrontmatterError("mapping keys must be plain strings", line_of(event))
                container: dict[str, Any] | list[Any] = (
                    {} if isinstance(event, yaml.MappingStartEvent) else []
                )
                stack.append(_Frame(container, path))
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                frame = stack.pop()
                attach(frame.container, event)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + FRONTMATTER_FIRST_LINE if mark is not None else None
        reason = " ".join(p for p in (exc.context, exc.problem) if p) or "syntax error"
        raise FrontmatterError(f"invalid YAML: {reason}", line) from None
    except yaml.YAMLError as exc:
        raise FrontmatterError(f"invalid YAML: {exc}") from None
    if result is None or result == "":
        return Frontmatter({}, {})
    if not isinstance(result, dict):
        raise FrontmatterError(
            "frontmatter must be a YAML mapping (key: value lines)", FRONTMATTER_FIRST_LINE
        )
    return Frontmatter(result, lines)
