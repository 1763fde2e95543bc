"""Transforms of a server's tools, as registered: the ``transforms`` object of a server
(REST ``/api/v1/servers``, ``mcpgw servers add --transforms FILE``) and its checks.

::

    transforms:
      tools:                       # by the backend's own tool name
        get-sum:
          rename: add              # what agents see and call
          description: Add two integers.
          defaults: {a: 1}         # filled in when the agent leaves it out
          fixed: {b: 100}          # always sent; not in the schema agents see
          hidden: false            # true: not listed, not callable
          results: {drop: [...], redact: [...]}   # this tool's own (after the server's)
      hide: ["trigger-*"]          # globs over backend tool names
      results:                     # every tool's results
        drop: ["$.structuredContent.humidity"]
        redact:
          - {path: "$.structuredContent.conditions", replacement: "[withheld]"}
          - {pattern: "\\d{3}-\\d{4}"}

What each does at run time is gateway/servers/transforming.py's. Stored with the
server (inside its JSON ``config``, under ``transforms``: no table of its own), so a
server's transforms are versioned and audited with the rest of its definition.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any, Self

from mcp import types
from pydantic import AfterValidator, Field, field_validator, model_validator

from gateway.errors import InvalidInput
from gateway.schemas import Strict
from gateway.servers import jsonpath

# The key a server's transforms are kept under in its stored config.
CONFIG_KEY = "transforms"
# What MCP allows in a tool name (SEP-986), which is what a rename may become.
TOOL_NAME = r"^[A-Za-z0-9_.-]{1,128}$"
_MAX_TOOLS = 1000
_MAX_RULES = 64
REDACTED = "[REDACTED]"


def _path(value: str) -> str:
    jsonpath.parse(value)  # PathError (a ValueError): a 422 naming the item
    return value


def _pattern(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return value


def check_glob(value: str) -> str:
    """``value`` if it is a usable tool-name glob (``*``, ``?``, ``[...]`` as in fnmatch)."""
    if not value or len(value) > 512:
        raise ValueError("a glob is 1 to 512 characters")
    depth = 0
    for char in value:
        if char == "[":
            if depth:
                raise ValueError(f"{value!r}: '[' inside a [...] set")
            depth = 1
        elif char == "]" and depth:
            depth = 0
    if depth:
        raise ValueError(f"{value!r}: a '[' set is not closed with ']'")
    return value


# Checked item by item, so a 422 names the one that is wrong (`transforms.hide.2`).
JsonPath = Annotated[str, AfterValidator(_path)]
Glob = Annotated[str, AfterValidator(check_glob)]


class RedactRule(Strict):
    """Replace a value (``path``), or what ``pattern`` matches in text (and, with a
    ``path``, only in the value there), with ``replacement``."""

    path: str | None = Field(
        None, description="A JSON path into the result, like $.structuredContent.token."
    )
    pattern: str | None = Field(
        None, max_length=1000, description="A regular expression (Python syntax)."
    )
    replacement: str = Field(REDACTED, max_length=1000)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return _path(value) if value is not None else None

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return _pattern(value) if value is not None else None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.path is None and self.pattern is None:
            raise ValueError("a redact rule needs a path, a pattern or both")
        return self


class ResultsIn(Strict):
    """What is taken out of a result before the agent (and the audit trail) gets it."""

    drop: list[JsonPath] = Field(
        default_factory=list,
        max_length=_MAX_RULES,
        description="JSON paths removed from the result: $.structuredContent.x, $..password.",
    )
    redact: list[RedactRule] = Field(default_factory=list, max_length=_MAX_RULES)


class ToolTransformIn(Strict):
    """One backend tool's transforms."""

    rename: str | None = Field(
        None, pattern=TOOL_NAME, description="The name agents see and call it by."
    )
    description: str | None = Field(
        None, max_length=8000, description="Replaces the backend's description (search reads it)."
    )
    hidden: bool | None = Field(
        None, description="true: not listed, not callable; false: shown despite a `hide` glob."
    )
    defaults: dict[str, Any] = Field(
        default_factory=dict,
        max_length=_MAX_RULES,
        description="Argument values used when the agent leaves them out.",
    )
    fixed: dict[str, Any] = Field(
        default_factory=dict,
        max_length=_MAX_RULES,
        description="Argument values always sent (an agent's own value is overridden); "
        "left out of the schema agents see.",
    )
    results: ResultsIn | None = None

    @model_validator(mode="after")
    def _not_both(self) -> Self:
        both = sorted(set(self.defaults) & set(self.fixed))
        if both:
            raise ValueError(f"{both[0]!r} is in both defaults and fixed")
        return self


class TransformsIn(Strict):
    """A server's tool transforms (docs/resilience.md#transforms); ``{}`` removes them."""

    tools: dict[str, ToolTransformIn] = Field(
        default_factory=dict,
        max_length=_MAX_TOOLS,
        description="Per tool, by the backend's own name.",
    )
    hide: list[Glob] = Field(
        default_factory=list,
        max_length=_MAX_RULES,
        description="Globs over backend tool names: those tools are not listed, not callable.",
    )
    results: ResultsIn | None = Field(None, description="Applied to every tool's results.")

    def stored(self) -> dict[str, Any] | None:
        """The JSON kept with the server: only what is set (None: nothing is)."""
        data = self.model_dump(exclude_none=True, exclude_defaults=True)
        tools = {name: rule for name, rule in data.get("tools", {}).items() if rule}
        if tools:
            data["tools"] = tools
        else:
            data.pop("tools", None)
        if not data.get("results"):
            data.pop("results", None)
        return data or None


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", errors=[{"field": field, "message": message}])


def check_transforms(transforms: TransformsIn, tools: Iterable[types.Tool] | None) -> None:
    """What one rule cannot see: renames that collide, and (when the server's catalog is
    known) arguments its tools do not take and renames onto a tool it lists.
    :class:`InvalidInput` (422) names the field."""
    renamed: dict[str, str] = {}
    for backend, rule in transforms.tools.items():
        if rule.rename is None or rule.rename == backend:
            continue
        if rule.rename in renamed:
            raise _invalid(
                f"transforms.tools.{backend}.rename",
                f"{renamed[rule.rename]!r} is renamed {rule.rename!r} too",
            )
        renamed[rule.rename] = backend
    if tools is None:
        return
    known = {tool.name: tool for tool in tools}
    for name, backend in renamed.items():
        other = transforms.tools.get(name)
        moved = other is not None and other.rename not in (None, name)
        if name in known and not moved and not (other is not None and other.hidden):
            raise _invalid(
                f"transforms.tools.{backend}.rename",
                f"the server already has a tool named {name!r}",
            )
    for backend, rule in transforms.tools.items():
        tool = known.get(backend)
        if tool is None:
            continue
        properties = tool.input_schema.get("properties")
        if not isinstance(properties, dict) or tool.input_schema.get("additionalProperties"):
            continue  # the schema does not list its arguments: anything may go
        for kind, values in (("fixed", rule.fixed), ("defaults", rule.defaults)):
            for argument in values:
                if argument not in properties:
                    raise _invalid(
                        f"transforms.tools.{backend}.{kind}.{argument}",
                        f"tool {backend!r} takes no argument {argument!r} "
                        f"(it takes {', '.join(sorted(properties)) or 'none'})",
                    )


def split_config(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A stored config as (the type's own config, the server's transforms or None)."""
    if CONFIG_KEY not in config:
        return config, None
    rest = {k: v for k, v in config.items() if k != CONFIG_KEY}
    return rest, config[CONFIG_KEY] or None


def join_config(config: dict[str, Any], transforms: dict[str, Any] | None) -> dict[str, Any]:
    """The config stored for a server: its type's config, and its transforms if any."""
    rest = {k: v for k, v in config.items() if k != CONFIG_KEY}
    return {**rest, CONFIG_KEY: transforms} if transforms else rest


def stored_transforms(
    transforms: TransformsIn | None, tools: Iterable[types.Tool] | None
) -> dict[str, Any] | None:
    """``transforms`` as stored with a server once checked (:func:`check_transforms`
    against ``tools``, the server's catalog when known); None: none."""
    if transforms is None:
        return None
    check_transforms(transforms, tools)
    return transforms.stored()
