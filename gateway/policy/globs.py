"""Glob patterns over call targets (``server__tool``, resource URIs, prompt and skill
names): the one grammar rules and limits use, checked strictly and compiled once.

``*`` matches any run of characters (``__`` included), ``?`` one character, ``[abc]``
/ ``[!abc]`` one of (or none of) a set. :mod:`fnmatch` accepts any text as a pattern
(an unclosed ``[`` silently becomes a literal); here a malformed pattern is an error
that names what is wrong, so a typo in a policy never turns into a rule that matches
nothing.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable

_WILD = frozenset("*?[")
MAX_LENGTH = 512

# Tells whether a name matches: truthy when it does (a bound regex match: no Python
# frame of its own per test).
Matcher = Callable[[str], object]


def check(pattern: str) -> str:
    """``pattern`` if it is a well-formed glob, else ValueError saying why."""
    if not pattern:
        raise ValueError("a pattern cannot be empty")
    if len(pattern) > MAX_LENGTH:
        raise ValueError(f"a pattern is at most {MAX_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 for c in pattern):
        raise ValueError(f"pattern {pattern!r} contains white space or a control character")
    i = 0
    while i < len(pattern):
        if pattern[i] == "[":
            end = _class_end(pattern, i)
            if end < 0:
                raise ValueError(f"pattern {pattern!r}: '[' at position {i} is never closed")
            i = end
        elif pattern[i] == "]":
            raise ValueError(f"pattern {pattern!r}: ']' at position {i} closes nothing")
        i += 1
    return pattern


def _class_end(pattern: str, start: int) -> int:
    """Index of the ``]`` closing the class opened at ``start`` (-1: none)."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "!":
        i += 1
    if i < len(pattern) and pattern[i] == "]":  # a leading ']' is a member
        i += 1
    end = pattern.find("]", i)
    if end == i:
        return -1
    return end


def literal_prefix(pattern: str) -> str:
    """The part of ``pattern`` before its first wildcard (all of it when it has none)."""
    for i, c in enumerate(pattern):
        if c in _WILD:
            return pattern[:i]
    return pattern


def is_literal(pattern: str) -> bool:
    return not any(c in _WILD for c in pattern)


def compile_glob(pattern: str) -> Matcher:
    """A function telling whether a name matches ``pattern`` (case-sensitive)."""
    if is_literal(pattern):
        return pattern.__eq__
    return re.compile(fnmatch.translate(pattern), re.DOTALL).match


def compile_any(patterns: tuple[str, ...]) -> Matcher:
    """A function telling whether a name matches any of ``patterns``."""
    if not patterns:
        return lambda name: False
    if len(patterns) == 1:
        return compile_glob(patterns[0])
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns), re.DOTALL).match
