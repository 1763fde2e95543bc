"""Optional boosts from outside the catalog: how often each tool is called, and skills
linked to servers.

Both are read off the request path: the composition root (``gateway/search_signals.py``)
reads tool call counts from the audit trail and the skills' server links every few
minutes and installs them here; a search only looks them up for its few dozen best
candidates. Pure Python (no numpy): the front imports it at start-up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gateway.mcp.search.text import analyze


@dataclass(frozen=True)
class SkillHint:
    """A skill's words (name and description, analysed) and the servers it is linked to."""

    terms: frozenset[str]
    servers: frozenset[str]


@dataclass(frozen=True)
class Signals:
    """What the boosts read: ``usage`` maps a qualified tool name to its calls as a share
    of the most called tool's (log-scaled, 0 to 1); ``skills`` the linked skills."""

    usage: Mapping[str, float] = field(default_factory=dict)
    skills: tuple[SkillHint, ...] = ()

    def skill_shares(self, query_terms: set[str]) -> dict[str, float]:
        """Server → the best share of the query's words a skill linked to it has (only
        skills that have at least half of them count: one shared word is chance)."""
        if not query_terms or not self.skills:
            return {}
        shares: dict[str, float] = {}
        for skill in self.skills:
            share = len(query_terms & skill.terms) / len(query_terms)
            if share >= 0.5:
                for server in skill.servers:
                    shares[server] = max(shares.get(server, 0.0), share)
        return shares


def usage_shares(counts: Mapping[str, int]) -> dict[str, float]:
    """Calls per tool → log(1 + calls) / log(1 + the most calls): a tool called a
    thousand times is not a thousand times likelier to be the one asked for."""
    top = max(counts.values(), default=0)
    if top <= 0:
        return {}
    scale = math.log1p(top)
    return {name: math.log1p(n) / scale for name, n in counts.items() if n > 0}


def skill_hints(links: Iterable[tuple[str, str, Iterable[str]]]) -> tuple[SkillHint, ...]:
    """(skill name, description, linked server names) → hints for the skill boost."""
    return tuple(
        SkillHint(frozenset(analyze(f"{name} {description}")), frozenset(servers))
        for name, description, servers in links
        if servers
    )


_installed: list[Signals] = [Signals()]


def install(signals: Signals) -> None:
    """Use ``signals`` from the next search on (one reference swap: searches running on
    other threads see the old or the new, never half of each)."""
    _installed[0] = signals


def installed() -> Signals:
    """The signals searches use now."""
    return _installed[0]
