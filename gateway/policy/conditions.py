"""Rule conditions: CEL expressions (https://cel.dev), compiled once when a policy is
loaded, evaluated per decision over the request.

The library is ``common-expression-language`` (Python bindings of the Rust ``cel``
crate): a compiled program runs in about 9 µs, against about 320 µs for the pure-
Python ``cel-python`` measured on the same expression (bench in docs/policy.md); both
speak the same language.

What an expression sees (the variables; any other name is refused when the policy is
applied):

- ``args``: the call's arguments (a map; test optional ones with ``has(args.x)``)
- ``subject``: ``{role, user, email, teams, key, key_tags, auth_method}``
- ``action``, ``target`` (``server__tool``, a URI, a name), ``server``, ``tool``
- ``annotations``: the tool's hints (``readOnlyHint``, ``destructiveHint``,
  ``idempotentHint``, ``openWorldHint``; the specification's defaults where the tool
  gives none: a tool is assumed to write, destructively)
- ``client``: ``{name, version}`` as the agent's client announced itself
- ``now``: a timestamp; ``time``: ``{hour, minute, weekday (1 = Monday), date}`` in the
  rule's ``timezone`` (UTC unless set)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import orjson

VARIABLES = frozenset(
    {
        "args",
        "subject",
        "action",
        "target",
        "server",
        "tool",
        "annotations",
        "client",
        "now",
        "time",
    }
)


# `args.<field>` in an expression, and any mention of `args` at all: when every mention
# is a field, only those fields are handed over (a call's other arguments can be large).
_ARG_FIELD = re.compile(r"\bargs\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_ARG_ANY = re.compile(r"\bargs\b")
_MEMO_MAX = 4096


class ConditionError(Exception):
    """A condition that could not be evaluated (or did not give a boolean)."""


class Condition:
    """One compiled expression."""

    __slots__ = ("arg_fields", "memo", "program", "pure", "source", "variables")

    def __init__(self, source: str) -> None:
        self.source = source
        # Imported on first use: the package's __init__ also loads its command-line
        # tool (prompt_toolkit), 0.14 s that a gateway without conditions never needs.
        import cel

        try:
            self.program = cel.compile(source)
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"not a valid CEL expression: {_first_line(exc)}") from None
        # Only what the expression names is handed to it: converting the whole request
        # into CEL values costs ~45 µs a call, the one map it reads ~4 µs.
        self.variables = tuple(sorted(set(self.program.variables())))
        unknown = sorted(set(self.variables) - VARIABLES)
        if unknown:
            raise ValueError(
                f"unknown variable {', '.join(map(repr, unknown))} "
                f"(one of {', '.join(sorted(VARIABLES))})"
            )
        fields = _ARG_FIELD.findall(source)
        whole = len(_ARG_ANY.findall(source)) != len(fields)
        self.arg_fields = None if whole else tuple(sorted(set(fields)))
        # CEL is deterministic: an expression that does not read the clock gives the same
        # answer for the same inputs, so answers are remembered by their inputs.
        self.pure = not {"now", "time"} & set(self.variables)
        self.memo: dict[bytes, bool | str] = {}

    def holds(self, activation: Mapping[str, Any]) -> bool:
        """Whether the condition is true for this request; ConditionError when it cannot
        be evaluated or is not a boolean (the caller fails closed)."""
        inputs = {name: activation[name] for name in self.variables}
        fields = self.arg_fields
        if fields is not None and "args" in inputs:
            given = inputs["args"]
            inputs["args"] = {f: given[f] for f in fields if f in given}
        key = None
        if self.pure:
            try:
                key = orjson.dumps(inputs, option=orjson.OPT_SORT_KEYS)
            except TypeError:  # not JSON (cannot come from a request, but never mind)
                key = None
            found = self.memo.get(key) if key is not None else None
            if found is not None:
                if isinstance(found, str):
                    raise ConditionError(found)
                return found
        answer = self._run(inputs)
        if key is not None:
            if len(self.memo) >= _MEMO_MAX:
                self.memo.clear()
            self.memo[key] = answer
        if isinstance(answer, str):
            raise ConditionError(answer)
        return answer

    def _run(self, inputs: dict[str, Any]) -> bool | str:
        """The expression's answer, or why it has none."""
        try:
            value = self.program.execute(inputs)
        except Exception as exc:  # the bindings raise builtins of many kinds
            return f"{type(exc).__name__}: {_first_line(exc)}"
        if not isinstance(value, bool):
            return f"gave {type(value).__name__}, not a boolean"
        return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@lru_cache(maxsize=4096)
def compiled(source: str) -> Condition:
    """The one :class:`Condition` of ``source``: rules (and policy versions) with the
    same expression share its program and its remembered answers. Large policies repeat
    a few conditions over many rules (the same check on every server); compiled once,
    a policy of 10,000 rules loads faster and a condition already answered for one rule
    is answered for all."""
    return Condition(source)
