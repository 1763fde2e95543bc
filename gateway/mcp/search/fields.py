"""What a tool says about itself, split into the fields search weighs apart.

Pure Python (no numpy): the front imports it at start-up. Analysed fields are
cached by the tool's text, so rebuilding a view after one server's catalog
changed analyses only that server's tools again.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from mcp import types

from gateway.mcp.search.text import analyze, tokenize
from gateway.mcp.search.vocabulary import STOPWORDS

SEPARATOR = "__"  # aggregated tools are named {server}__{tool}
# Words every server name may carry that name no product.
_GENERIC_SERVER_WORDS = frozenset({"mcp", "server"})


class Fields(NamedTuple):
    """A tool's analysed terms, field by field."""

    name: tuple[str, ...]
    server: tuple[str, ...]
    description: tuple[str, ...]
    params: tuple[str, ...]
    param_descriptions: tuple[str, ...]
    keywords: tuple[str, ...] = ()  # an admin's search keywords for the tool


def split_name(qualified: str) -> tuple[str, str]:
    """(server, tool) of an aggregated name; pillar tools have no server."""
    server, sep, tool = qualified.partition(SEPARATOR)
    return (server, tool) if sep else ("", qualified)


def _properties(tool: types.Tool) -> dict[str, Any]:
    properties = (tool.input_schema or {}).get("properties") or {}
    return properties if isinstance(properties, dict) else {}


def raw_text(tool: types.Tool) -> tuple[str, ...]:
    """The tool's searchable text, as a cache key: name, title, description, params."""
    properties = _properties(tool)
    described = [str(p.get("description", "")) for p in properties.values() if isinstance(p, dict)]
    return (
        tool.name,
        tool.title or "",
        tool.description or "",
        " ".join(properties),
        " ".join(described),
    )


def server_terms(server: str) -> tuple[str, ...]:
    """The words of a server's name that can name a product in a query."""
    return tuple(t for t in analyze(server) if t not in _GENERIC_SERVER_WORDS)


# Static embeddings average their tokens: past the opening (what the tool is for),
# prose (parameter notes, caveats, examples) only dilutes. On the tuning split of
# bench/search_quality, 200 characters ranked best alone and in the blend (dense
# R@5 0.801 against 0.747 at 1,000; 175 to 250 alike); MCPGW_SEARCH_DENSE_TEXT_CHARS.
DENSE_TEXT_LIMIT = 200
# Bounds the analysis time of tools with page-long descriptions (600 and 300
# characters ranked slightly worse on the tuning split).
LEXICAL_TEXT_LIMIT = 1500

_CACHE: dict[tuple[str, ...], Fields] = {}
_CACHE_MAX = 200_000


def fields_of(tool: types.Tool, keywords: tuple[str, ...] = ()) -> Fields:
    """The analysed fields of ``tool`` and its admin-given ``keywords`` (cached by
    their text)."""
    key = (*raw_text(tool), " ".join(keywords))
    cached = _CACHE.get(key)
    if cached is None:
        name, title, description, params, param_descriptions, extra = key
        server, bare = split_name(name)
        cached = Fields(
            name=tuple(analyze(f"{bare} {title}")),
            server=server_terms(server),
            description=tuple(analyze(description[:LEXICAL_TEXT_LIMIT])),
            params=tuple(analyze(params)),
            param_descriptions=tuple(analyze(param_descriptions)),
            keywords=tuple(analyze(extra)),
        )
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[key] = cached
    return cached


def plain_words(text: str) -> str:
    """``text`` as lower-case words without stop words, for the embedding model: a
    static model averages its tokens, so "the", "of" and punctuation only blur."""
    return " ".join(word for word in tokenize(text) if word not in STOPWORDS)


def dense_text(
    tool: types.Tool, limit: int = DENSE_TEXT_LIMIT, keywords: tuple[str, ...] = ()
) -> str:
    """What the embedding model reads: server, name words, an admin's keywords and the
    opening of the description, ``limit`` characters in all."""
    server, bare = split_name(tool.name)
    said = "".join(f"{word} " for word in keywords)
    text = f"{server} {bare} {tool.title or ''} {said}{tool.description or ''}"
    return plain_words(text[:limit])
