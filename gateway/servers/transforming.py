"""A server's transforms at run time: the catalog agents see, and each call's way there
and back (the registered shape and its checks: gateway/servers/transforms.py).

- **Listing** (`tools/list` in both eras, `/mcp/servers/{name}`, SEARCH_TOOLS and REST
  ``tools/search``, REST ``/api/v1/tools``): :meth:`ServerTransforms.tools` is applied
  where the in-memory catalog becomes a caller's view (servers/mcp/view.py) and to the
  REST catalog, so every listing shows the same names, descriptions and schemas.
- **Resolution** (gateway/servers/calls.py): :meth:`ServerTransforms.resolve` maps the
  name an agent called to the backend's own, or refuses a hidden (or renamed-away) one;
  the :class:`CallTarget` carries both names and the tool's :class:`ToolTransform`.
  Policies, rate limits, metrics and the audit trail use the name the agent called (the
  audit row's detail names the backend's when it differs); per-tool request limits and
  search keywords stay keyed by the backend's name, as admins registered them.
- **Arguments**: the pipeline's ``transform`` stage (:class:`TransformArguments`, entered
  before policy) fills defaults and forces fixed values in place, so policy conditions,
  the audit trail and the backend all see the arguments that are sent.
- **Results**: the backend stages (reach.py; the fast path's fastcall.py) apply
  :meth:`ResultFilter.apply` to the result as a dict before the agent gets it; its
  size in the audit row is measured after.

A server without transforms has no entry in ``ServerService.transforms``: resolving one
of its calls costs one dict lookup more, and nothing else changes.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mcp import types

from gateway.servers import jsonpath
from gateway.servers.models import CatalogEntry, McpServer
from gateway.servers.pipeline import Call, Pipeline, StageDefaults
from gateway.servers.transforms import REDACTED, split_config

log = logging.getLogger("gateway.servers")


@dataclass(frozen=True, slots=True)
class Redaction:
    path: jsonpath.Path | None
    pattern: re.Pattern[str] | None
    replacement: str

    def value(self, value: Any) -> Any:
        """The replacement of one value a path reached."""
        if self.pattern is None:
            return self.replacement
        return _substitute(value, self.pattern, self.replacement)


def _substitute(value: Any, pattern: re.Pattern[str], replacement: str) -> Any:
    """``value`` with ``pattern`` replaced in every string in it."""
    if isinstance(value, str):
        return pattern.sub(lambda _: replacement, value)
    if isinstance(value, dict):
        return {k: _substitute(v, pattern, replacement) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, pattern, replacement) for v in value]
    return value


class ResultFilter:
    """Drops and redactions of one tool's results (the server's, then the tool's own)."""

    __slots__ = ("drops", "redactions")

    def __init__(self, specs: list[Mapping[str, Any]]) -> None:
        self.drops: list[jsonpath.Path] = []
        self.redactions: list[Redaction] = []
        for spec in specs:
            self.drops += [jsonpath.parse(p) for p in spec.get("drop") or ()]
            for rule in spec.get("redact") or ():
                path, pattern = rule.get("path"), rule.get("pattern")
                self.redactions.append(
                    Redaction(
                        jsonpath.parse(path) if path else None,
                        re.compile(pattern) if pattern else None,
                        str(rule.get("replacement", REDACTED)),
                    )
                )

    def apply(self, result: dict[str, Any]) -> None:
        """Change a tool result (the wire dict: ``content``, ``structuredContent``) in place.

        A text block that carries the structured content as JSON (what SDK servers send
        for clients that read only text) is written again from the changed structured
        content, so a dropped field is gone from both."""
        structured = result.get("structuredContent")
        content = result.get("content")
        blocks = content if isinstance(content, list) else []
        mirrors = _mirrors(blocks, structured) if isinstance(structured, dict) else ()
        for path in self.drops:
            jsonpath.drop(result, path)
        for rule in self.redactions:
            if rule.path is not None:
                jsonpath.replace(result, rule.path, rule.value)
        patterns = [r for r in self.redactions if r.path is None and r.pattern is not None]
        if patterns:
            structured = result.get("structuredContent")
            if isinstance(structured, dict):
                for rule in patterns:
                    assert rule.pattern is not None
                    structured = _substitute(structured, rule.pattern, rule.replacement)
                result["structuredContent"] = structured
            for index, block in enumerate(blocks):
                if index not in mirrors and isinstance(block, dict):
                    for rule in patterns:
                        assert rule.pattern is not None
                        _redact_block(block, rule.pattern, rule.replacement)
        structured = result.get("structuredContent")
        if mirrors and isinstance(structured, dict):
            text = json.dumps(structured, ensure_ascii=False)
            for index in mirrors:
                if index < len(blocks) and isinstance(blocks[index], dict):
                    blocks[index]["text"] = text

    def output_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        """A tool's output schema as its filtered results meet it (clients validate the
        structured content by it): dropped properties left out, path-redacted ones
        allowed any value, and string constraints lifted where patterns redact."""
        shown = copy.deepcopy(schema)
        for path in self.drops:
            for parent, key in _schema_places(shown, path):
                if key is not None:
                    parent["properties"].pop(key, None)
                    required = parent.get("required")
                    if isinstance(required, list) and key in required:
                        parent["required"] = [r for r in required if r != key]
        for rule in self.redactions:
            if rule.path is None:
                _loosen_strings(shown)
                continue
            for parent, key in _schema_places(shown, rule.path):
                if key is None:
                    parent["items"] = {}
                else:
                    parent["properties"][key] = {}
        return shown


def _schema_places(schema: dict[str, Any], path: jsonpath.Path) -> list[tuple[dict[str, Any], Any]]:
    """(the schema holding it, the property name or None for array items) of every part
    of an output schema a result path reaches (paths into ``structuredContent``)."""
    if path[0] == ("key", "structuredContent"):
        steps = path[1:]
    elif path[0][0] == "deep":
        steps = path
    else:
        return []  # content or _meta: not what the output schema describes
    return list(_schema_reach(schema, steps)) if steps else []


def _schema_reach(schema: Any, steps: jsonpath.Path) -> Iterator[tuple[dict[str, Any], Any]]:
    if not isinstance(schema, dict):
        return
    kind, arg = steps[0]
    rest = steps[1:]
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    items = schema.get("items")
    if kind == "key" and arg in properties:
        yield from _schema_reach(properties[arg], rest) if rest else ((schema, arg),)
    elif kind in ("index", "all"):
        if isinstance(items, dict):
            yield from _schema_reach(items, rest) if rest else ((schema, None),)
        if kind == "all":  # `.*` of an object: each of its properties
            for key in list(properties):
                yield from _schema_reach(properties[key], rest) if rest else ((schema, key),)
    elif kind == "deep":
        for key in list(properties):
            if key == arg:
                yield from _schema_reach(properties[key], rest) if rest else ((schema, key),)
            yield from _schema_reach(properties.get(key), steps)
        yield from _schema_reach(items, steps)


_STRING_CONSTRAINTS = ("pattern", "format", "enum", "const", "minLength", "maxLength")


def _loosen_strings(schema: Any) -> None:
    """Lift the constraints a redacted string may no longer meet, everywhere in it."""
    if isinstance(schema, dict):
        if schema.get("type") == "string":
            for key in _STRING_CONSTRAINTS:
                schema.pop(key, None)
        for value in schema.values():
            _loosen_strings(value)
    elif isinstance(schema, list):
        for value in schema:
            _loosen_strings(value)


def _mirrors(blocks: list[Any], structured: dict[str, Any]) -> tuple[int, ...]:
    """Indexes of the text blocks that are ``structured`` as JSON."""
    found = []
    for index, block in enumerate(blocks):
        text = block.get("text") if isinstance(block, dict) else None
        if isinstance(text, str) and text.lstrip().startswith("{"):
            try:
                if json.loads(text) == structured:
                    found.append(index)
            except ValueError:
                continue
    return tuple(found)


def _redact_block(block: dict[str, Any], pattern: re.Pattern[str], replacement: str) -> None:
    """A content block's text (and an embedded resource's) with ``pattern`` replaced."""
    if isinstance(block.get("text"), str):
        block["text"] = pattern.sub(lambda _: replacement, block["text"])
    resource = block.get("resource")
    if isinstance(resource, dict) and isinstance(resource.get("text"), str):
        resource["text"] = pattern.sub(lambda _: replacement, resource["text"])


@dataclass(frozen=True, slots=True)
class ToolTransform:
    """What a call of one tool needs: arguments to fill or force, results to filter."""

    defaults: Mapping[str, Any]
    fixed: Mapping[str, Any]
    results: ResultFilter | None

    @property
    def touches_arguments(self) -> bool:
        return bool(self.defaults or self.fixed)

    def arguments(self, arguments: dict[str, Any]) -> None:
        """Fill in defaults the agent left out and force fixed values, in place (the
        dict is the call's own: every path hands the backend this one)."""
        for name, value in self.defaults.items():
            if name not in arguments:
                arguments[name] = value
        arguments.update(self.fixed)

    def schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        """The input schema agents see: fixed arguments left out, defaulted ones shown
        with their default and no longer required."""
        if not self.touches_arguments:
            return schema
        properties = dict(schema.get("properties") or {})
        for name in self.fixed:
            properties.pop(name, None)
        for name, value in self.defaults.items():
            if isinstance(properties.get(name), dict):
                properties[name] = {**properties[name], "default": value}
        shown = {**schema, "properties": properties}
        required = schema.get("required")
        if isinstance(required, list):
            kept = [r for r in required if r not in self.fixed and r not in self.defaults]
            if kept:
                shown["required"] = kept
            else:
                shown.pop("required", None)
        return shown


@dataclass(frozen=True, slots=True)
class _Rule:
    backend: str
    name: str
    description: str | None
    transform: ToolTransform | None


class ServerTransforms:
    """One server's transforms, compiled from what is stored (validated when written)."""

    def __init__(self, stored: Mapping[str, Any]) -> None:
        self.signature = json.dumps(stored, sort_keys=True, default=str)
        shared = stored.get("results")
        # Tools without a rule of their own: the server's result filter, if any.
        self.default = ToolTransform({}, {}, ResultFilter([shared])) if shared else None
        self._globs = [re.compile(fnmatch.translate(g)) for g in stored.get("hide") or ()]
        self._rules: dict[str, Mapping[str, Any]] = dict(stored.get("tools") or {})
        self._hidden: dict[str, bool] = {}
        self.by_name: dict[str, _Rule] = {}  # the agent's name → its rule
        self.renamed: set[str] = set()  # backend names agents no longer see
        self.touches_arguments = False
        for backend, spec in self._rules.items():
            name = spec.get("rename") or backend
            if name != backend:
                self.renamed.add(backend)
            if self.hidden(backend):
                continue
            results = [r for r in (shared, spec.get("results")) if r]
            defaults, fixed = dict(spec.get("defaults") or {}), dict(spec.get("fixed") or {})
            transform = None
            if defaults or fixed or results:
                filtered = ResultFilter(results) if results else None
                transform = ToolTransform(defaults, fixed, filtered)
                self.touches_arguments |= transform.touches_arguments
            self.by_name[name] = _Rule(backend, name, spec.get("description"), transform)

    def hidden(self, backend: str) -> bool:
        """Whether the backend's tool ``backend`` is hidden (its rule, else a glob)."""
        verdict = self._hidden.get(backend)
        if verdict is None:
            own = self._rules.get(backend, {}).get("hidden")
            verdict = own if own is not None else any(g.match(backend) for g in self._globs)
            if len(self._hidden) > 10_000:  # names agents made up: bounded
                self._hidden.clear()
            self._hidden[backend] = bool(verdict)
        return verdict

    def resolve(self, name: str) -> tuple[str, ToolTransform | None] | None:
        """(the backend's name, the call's transform) for the tool an agent called
        ``name``; None when agents cannot call it (hidden, or renamed to another name)."""
        rule = self.by_name.get(name)
        if rule is not None:
            return rule.backend, rule.transform
        if name in self.renamed or self.hidden(name):
            return None
        return name, self.default

    def tool(self, tool: types.Tool) -> types.Tool | None:
        """``tool`` as agents see it (None: hidden)."""
        update: dict[str, Any] = {}
        rule = self._rules.get(tool.name)
        if rule is None:
            if self.hidden(tool.name) or tool.name in self.by_name:
                return None
            transform = self.default
        else:
            shown = self.by_name.get(rule.get("rename") or tool.name)
            if shown is None or shown.backend != tool.name:
                return None
            if shown.name != tool.name:
                update["name"] = shown.name
            if shown.description is not None:
                update["description"] = shown.description
            transform = shown.transform
        if transform is not None and transform.touches_arguments:
            update["input_schema"] = transform.schema(tool.input_schema)
        if transform is not None and transform.results is not None and tool.output_schema:
            update["output_schema"] = transform.results.output_schema(tool.output_schema)
        return tool.model_copy(update=update) if update else tool

    def tools(self, tools: list[types.Tool]) -> list[types.Tool]:
        """A server's tools as agents see them, in its order (hidden ones left out)."""
        return [shown for tool in tools if (shown := self.tool(tool)) is not None]

    def backend_name(self, name: str) -> str:
        """The backend's name of a tool agents call ``name``."""
        rule = self.by_name.get(name)
        return rule.backend if rule is not None else name


def follow_transforms(pipeline: Pipeline, rows: Iterable[McpServer]) -> dict[str, ServerTransforms]:
    """The registered servers' transforms, compiled (servers without any left out), and
    the pipeline's ``transform`` stage installed while some tool has default or fixed
    arguments (removed when none has: then it costs nothing)."""
    compiled: dict[str, ServerTransforms] = {}
    for row in rows:
        stored = split_config(row.config or {})[1]
        if not stored:
            continue
        try:
            compiled[row.name] = ServerTransforms(stored)
        except Exception as exc:  # checked when written: only a hand-edited row gets here
            log.error("cannot load transforms", extra={"server": row.name, "error": str(exc)})
    argued = any(t.touches_arguments for t in compiled.values())
    if argued != ("transform" in pipeline.names):
        pipeline.install("transform", TransformArguments() if argued else None)
    return compiled


def transform_entries(
    entries: Sequence[tuple[CatalogEntry, str]],
    transforms: Mapping[str, ServerTransforms],
    query: str | None,
) -> list[tuple[CatalogEntry, str]]:
    """The REST catalog's rows as agents see the tools: hidden ones left out, renamed and
    re-described ones as such (new, unsaved rows), then the ``query`` substring filter
    (names and descriptions, any case: what the database filter does) and its order."""
    needle = query.lower() if query else None
    shown: list[tuple[CatalogEntry, str]] = []
    for entry, server in entries:
        compiled = transforms.get(server)
        if compiled is not None and entry.kind == "tool":
            tool = types.Tool.model_validate(entry.definition)
            seen = compiled.tool(tool)
            if seen is None:
                continue
            if seen is not tool:
                entry = CatalogEntry(
                    id=entry.id,
                    server_id=entry.server_id,
                    kind=entry.kind,
                    name=seen.name,
                    description=seen.description or "",
                    definition=seen.model_dump(by_alias=True, exclude_none=True, mode="json"),
                    definition_hash=entry.definition_hash,
                    keywords=entry.keywords,
                    updated_at=entry.updated_at,
                )
        if needle and needle not in entry.name.lower() and needle not in entry.description.lower():
            continue
        shown.append((entry, server))
    shown.sort(key=lambda row: (row[1], row[0].kind, row[0].name))
    return shown


class TransformArguments(StageDefaults):
    """The pipeline's ``transform`` stage: a tool's default and fixed arguments (see the
    module docstring). Installed only while some server has any."""

    async def enter(self, call: Call) -> None:
        transform = call.target.transform
        if transform is not None and transform.touches_arguments:
            transform.arguments(call.arguments)
