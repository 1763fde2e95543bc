"""A short, human reason for a search hit: which query words matched where.

Shown with each SEARCH_TOOLS result (and in the portal) to debug a ranking:
``name: create, issue · description: repo · synonym: ticket→issue · meaning 0.62``.
Computed only for the few hits returned, from the tool's cached analysed fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.mcp.search.fields import Fields

if TYPE_CHECKING:
    from gateway.mcp.search.lexical import Scores

_FIELDS = ("name", "keywords", "server", "description", "params", "param_descriptions")
_LABELS = {"params": "parameters", "param_descriptions": "parameter text"}


def explain(
    doc: Fields,
    terms: list[str],
    weights: dict[str, float],
    cosines: Scores | None,
    position: int,
    surface: dict[str, str],
) -> str:
    """Matched query words by field (as the query spelled them; ``surface``: stem →
    word), synonyms that matched (stems), and the cosine."""
    asked = set(terms)
    parts: list[str] = []
    claimed: set[str] = set()
    for field in _FIELDS:
        present = set(getattr(doc, field))
        words = [t for t in weights if t in present and t not in claimed and t in asked]
        if words:
            claimed.update(words)
            shown = ", ".join(surface.get(w, w) for w in words)
            parts.append(f"{_LABELS.get(field, field)}: {shown}")
    every = {t for field in _FIELDS for t in getattr(doc, field)}
    synonyms = [t for t in weights if t not in asked and t in every]
    if synonyms:
        parts.append(f"synonym: {', '.join(synonyms)}")
    if cosines is not None:
        parts.append(f"meaning {float(cosines[position]):.2f}")
    return " · ".join(parts)
