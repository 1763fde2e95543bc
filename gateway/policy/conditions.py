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

from collections.abc import Mapping
from typing import Any

import cel

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


class ConditionError(Exception):
    """A condition that could not be evaluated (or did not give a boolean)."""


class Condition:
    """One compiled expression."""

    __slots__ = ("program", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self.program = cel.compile(source)
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"not a valid CEL expression: {_first_line(exc)}") from None
        unknown = sorted(set(self.program.variables()) - VARIABLES)
        if unknown:
            raise ValueError(
                f"unknown variable {', '.join(map(repr, unknown))} "
                f"(one of {', '.join(sorted(VARIABLES))})"
            )

    def holds(self, activation: Mapping[str, Any]) -> bool:
        """Whether the condition is true for this request; ConditionError when it cannot
        be evaluated or is not a boolean (the caller fails closed)."""
        try:
            value = self.program.execute(dict(activation))
        except Exception as exc:  # the bindings raise builtins of many kinds
            raise ConditionError(f"{type(exc).__name__}: {_first_line(exc)}") from None
        if not isinstance(value, bool):
            raise ConditionError(f"gave {type(value).__name__}, not a boolean")
        return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
