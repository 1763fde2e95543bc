"""The small JSON path language of result transforms (gateway/servers/transforms.py).

A path starts at the root ``$`` (a tool result as the agent gets it: ``content``,
``structuredContent``, ``_meta``) and takes steps: ``.name`` or ``['name']`` (a
member), ``[2]`` or ``[-1]`` (an array element), ``[*]`` or ``.*`` (every member or
element) and ``..name`` (a member named so at any depth below). That covers what
results need dropped or redacted (``$.structuredContent.token``,
``$.content[*]._meta``, ``$..password``); filters and slices are left out on purpose.
Paths are parsed once, when a server's transforms are registered or loaded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

# One parsed step: ("key", name), ("index", n), ("all", None) or ("deep", name).
Step = tuple[str, Any]
Path = tuple[Step, ...]

_NAME = r"[A-Za-z_$][\w$-]*"
_STEP = re.compile(
    rf"""
    \.\.(?P<deep>{_NAME})                      # ..name
  | \.(?P<key>{_NAME})                         # .name
  | \.\*(?P<dotall>)                           # .*
  | \[\s*(?P<index>-?\d+)\s*\]                 # [2]
  | \[\s*\*\s*\](?P<all>)                      # [*]
  | \[\s*'(?P<sq>(?:[^'\\]|\\.)*)'\s*\]        # ['name']
  | \[\s*"(?P<dq>(?:[^"\\]|\\.)*)"\s*\]        # ["name"]
    """,
    re.VERBOSE,
)
MAX_PATH = 512


class PathError(ValueError):
    """A path that is not in the language above (the message says where)."""


def parse(text: str) -> Path:
    """``text`` as steps; :class:`PathError` names what is wrong (422 on registration)."""
    if len(text) > MAX_PATH:
        raise PathError(f"a JSON path is at most {MAX_PATH} characters")
    if not text.startswith("$"):
        raise PathError("a JSON path starts with '$' (the result), like $.structuredContent.x")
    steps: list[Step] = []
    at = 1
    while at < len(text):
        match = _STEP.match(text, at)
        if match is None:
            raise PathError(f"cannot read the JSON path {text!r} from character {at + 1}")
        group = match.lastgroup
        value = match.group(group) if group else None
        if group == "deep":
            steps.append(("deep", value))
        elif group == "key":
            steps.append(("key", value))
        elif group in ("sq", "dq"):
            steps.append(("key", re.sub(r"\\(.)", r"\1", value or "")))
        elif group == "index":
            steps.append(("index", int(value or 0)))
        else:
            steps.append(("all", None))
        at = match.end()
    if not steps:
        raise PathError("a JSON path must name something inside the result, not '$' itself")
    return tuple(steps)


def _places(node: Any, steps: Path) -> Iterator[tuple[Any, Any]]:
    """(container, key or index) of every value ``steps`` reach from ``node``."""
    kind, arg = steps[0]
    rest = steps[1:]
    if kind == "key":
        if isinstance(node, dict) and arg in node:
            yield from _places(node[arg], rest) if rest else ((node, arg),)
    elif kind == "index":
        if isinstance(node, list) and -len(node) <= arg < len(node):
            index = arg % len(node)
            yield from _places(node[index], rest) if rest else ((node, index),)
    elif kind == "all":
        keys: Any = list(node) if isinstance(node, dict) else None
        if keys is None and isinstance(node, list):
            keys = range(len(node))
        for key in keys or ():
            if rest:
                yield from _places(node[key], rest)
            else:
                yield node, key
    else:  # deep: the member at any depth, then the rest of the path from there
        if isinstance(node, dict):
            for key, value in list(node.items()):
                if key == arg:
                    if rest:
                        yield from _places(value, rest)
                    else:
                        yield node, key
                yield from _places(value, steps)
        elif isinstance(node, list):
            for value in node:
                yield from _places(value, steps)


def drop(document: Any, path: Path) -> bool:
    """Remove what ``path`` reaches in ``document`` (in place); whether anything was."""
    places = list(_places(document, path))
    # Array elements from the last: removing one would shift the indexes of the rest.
    places.sort(key=lambda p: p[1] if isinstance(p[0], list) else 0, reverse=True)
    for container, key in places:
        del container[key]
    return bool(places)


def replace(document: Any, path: Path, change: Callable[[Any], Any]) -> bool:
    """Replace each value ``path`` reaches with ``change(value)`` (in place)."""
    places = list(_places(document, path))
    for container, key in places:
        container[key] = change(container[key])
    return bool(places)
