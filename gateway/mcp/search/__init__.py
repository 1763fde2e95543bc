"""Tool search for SEARCH_TOOLS and REST ``tools/search``: hybrid retrieval.

BM25F over tool names, servers, descriptions and parameters (split identifiers,
stemming, synonyms kept as data) fused with cosine similarity of static
embeddings from a model shipped in a wheel; see ``index.py`` for the flow and
``tuning.py`` for the knobs. numpy and the model load with the first index, not
with the gateway.
"""

from gateway.mcp.search.index import Allow, Hit, ToolIndex, preload
from gateway.mcp.search.text import analyze, tokenize
from gateway.mcp.search.tuning import Tuning, configure, current

__all__ = [
    "Allow",
    "Hit",
    "ToolIndex",
    "Tuning",
    "analyze",
    "configure",
    "current",
    "preload",
    "tokenize",
]
