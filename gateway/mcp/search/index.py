"""ToolIndex: hybrid tool search behind SEARCH_TOOLS and REST ``tools/search``.

Built once per tool view (a catalog changes rarely) from cached per-tool parts, so
a rebuild after one server's change re-analyses and re-embeds only that server's
tools. A search: analyse the query, add synonyms, BM25F over the inverted index,
cosine over the tool vectors (once the model is loaded, in the background), fuse,
lift servers the query names, then walk the ranking keeping only tools the
caller may see (``allow``, the hook policies plug into) and folding near-duplicate
tools of other servers into the first one's alternatives.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from mcp import types

from gateway.mcp.search import rerank
from gateway.mcp.search.fields import Fields, dense_text, fields_of, plain_words, split_name
from gateway.mcp.search.signals import installed
from gateway.mcp.search.text import analyze, literals_as_kinds, stem, tokenize
from gateway.mcp.search.tuning import Tuning, current
from gateway.mcp.search.vocabulary import STOPWORDS, expand

if TYPE_CHECKING:  # numpy loads with the first index, not with the gateway
    from gateway.mcp.search.dense import Matrix
    from gateway.mcp.search.fusion import Positions
    from gateway.mcp.search.lexical import LexicalIndex, Scores

log = logging.getLogger(__name__)
Mode = Literal["hybrid", "lexical", "dense"]
Allow = Callable[[types.Tool], bool]


class Hit(NamedTuple):
    """One search result: the tool, its score, why it matched, and the names of
    near-identical tools of other servers folded into it."""

    tool: types.Tool
    score: float
    reason: str
    alternatives: tuple[str, ...] = ()


class ToolIndex:
    """Hybrid (BM25F + static embeddings) search over a fixed list of tools."""

    def __init__(
        self,
        tools: list[types.Tool],
        tuning: Tuning | None = None,
        keywords: Sequence[tuple[str, ...]] | None = None,
    ) -> None:
        """``keywords``: an admin's search keywords, one tuple a tool (aligned with
        ``tools``; none by default)."""
        from gateway.mcp.search.lexical import LexicalIndex

        self.tools = tools
        self.tuning = tuning or current()
        self._keywords = list(keywords) if keywords is not None else [()] * len(tools)
        self._docs: list[Fields] = [
            fields_of(tool, words) for tool, words in zip(tools, self._keywords, strict=True)
        ]
        self._lexical: LexicalIndex = LexicalIndex(self._docs, self.tuning)
        self._servers = self._server_positions()
        self._actions = [rerank.tool_action(doc) for doc in self._docs]
        self._own_names = [rerank.own_name_terms(doc) for doc in self._docs]
        self._server_names = [split_name(tool.name)[0] for tool in tools]
        self._vectors: Future[Matrix] | None = None
        if tools and self.tuning.dense_model != "off":
            self._vectors = self._embed_in_background()

    def _server_positions(self) -> dict[str, list[tuple[tuple[str, ...], Positions]]]:
        """Server-name word → the servers whose name has it, with their tools."""
        import numpy as np

        groups: dict[tuple[str, ...], list[int]] = {}
        for position, doc in enumerate(self._docs):
            if doc.server:
                groups.setdefault(doc.server, []).append(position)
        by_word: dict[str, list[tuple[tuple[str, ...], Positions]]] = {}
        for name, positions in groups.items():
            for word in set(name):
                by_word.setdefault(word, []).append((name, np.asarray(positions, np.int32)))
        self._specificity = self._name_specificity(by_word)
        return by_word

    def _name_specificity(self, by_word: dict[str, list[Any]]) -> dict[str, float]:
        """How surely a server-name word in a query names that server: 1 for a word
        no other server's tool uses ("gitlab"), less for a common one ("word",
        "time", "memory"), by its idf among the other servers' tools."""
        others: dict[str, int] = dict.fromkeys(by_word, 0)
        for doc in self._docs:
            own = set(doc.server)
            for term in {*doc.name, *doc.description, *doc.params}:
                if term in others and term not in own:
                    others[term] += 1
        top = math.log(len(self._docs) + 1)
        return {
            w: min(1.0, math.log((len(self._docs) + 1) / (1 + n)) / top) for w, n in others.items()
        }

    def _embed_in_background(self) -> Future[Matrix]:
        from gateway.mcp.search import dense

        name = self.tuning.dense_model
        loading = dense.model(name)
        limit = self.tuning.dense_text_chars
        texts = [
            dense_text(tool, limit, words)
            for tool, words in zip(self.tools, self._keywords, strict=True)
        ]
        return dense.background(lambda: dense.embed_cached(name, loading.result(), texts))

    def wait_dense(self, timeout: float | None = None) -> bool:
        """Block until the tool vectors exist (benchmarks, tests); False: dense off
        or failed."""
        if self._vectors is None:
            return False
        try:
            self._vectors.result(timeout)
        except Exception:
            log.exception("tool search: embedding failed; searching lexically")
            return False
        return True

    def _dense_ready(self) -> Matrix | None:
        vectors = self._vectors
        if vectors is None or not vectors.done() or vectors.exception() is not None:
            return None
        return vectors.result()

    def search(
        self, query: str, limit: int = 10, allow: Allow | None = None, mode: Mode = "hybrid"
    ) -> list[Hit]:
        """The best ``limit`` tools for ``query`` that ``allow`` lets through."""
        from gateway.mcp.search import fusion

        query = literals_as_kinds(query)
        terms = analyze(query)
        if not terms or not self.tools:
            return []
        weights = self._query_weights(terms)
        lexical = self._lexical.scores(weights) if mode != "dense" else None
        vectors = self._dense_ready() if mode != "lexical" else None
        cosines = self._cosines(query, vectors) if vectors is not None else None
        if lexical is None and cosines is None:
            return []
        ideal = self._lexical.ideal(weights) if self.tuning.lexical_scale == "ideal" else 0.0
        # Dense alone (a diagnostic mode, for the benchmark): the plain ranking.
        floor = -2.0 if mode == "dense" else None
        fused = fusion.blend(lexical, cosines, self.tuning, ideal, floor)
        named = self._named_servers(set(terms))
        if mode == "hybrid":
            if named:
                fused = fusion.boost_servers(fused, named, self.tuning)
            self._rerank(query, fused, set(weights), set(terms))
        return self._collect(query, fused, limit, allow, terms, weights, cosines)

    def _rerank(self, query: str, fused: Scores, matched: set[str], asked: set[str]) -> None:
        """Second stage (see rerank.py), in place, over the best fused candidates; plus
        the optional usage and linked-skill boosts (signals.py)."""
        from gateway.mcp.search import fusion

        tuning = self.tuning
        action = rerank.query_action(query)
        signals = installed()
        usage = signals.usage if tuning.usage_boost > 0 else {}
        skilled = signals.skill_shares(asked) if tuning.skill_boost > 0 else {}
        for position in fusion.top(fused, tuning.rerank_depth):
            bonus = tuning.coverage_weight * rerank.coverage(
                self._own_names[position], matched, action
            )
            if action & self._actions[position]:
                bonus += tuning.action_weight
            if usage:
                bonus += tuning.usage_boost * usage.get(self.tools[position].name, 0.0)
            if skilled:
                bonus += tuning.skill_boost * skilled.get(self._server_names[position], 0.0)
            fused[position] += bonus

    def _query_weights(self, terms: list[str]) -> dict[str, float]:
        """Query terms (repeats count) and their synonyms (at the synonym weight)."""
        weights: dict[str, float] = {}
        for term in terms:
            weights[term] = weights.get(term, 0.0) + 1.0
        for term, _source in expand(terms, self.tuning.synonyms):
            weights[term] = self.tuning.synonym_weight
        return weights

    def _cosines(self, query: str, vectors: Matrix) -> Scores:
        from gateway.mcp.search import dense

        embedder = dense.model(self.tuning.dense_model).result()
        import numpy as np

        # einsum, not ``@``: BLAS would spread a matrix-vector product over threads
        # that wait on each other on a busy 2-core machine (3x slower measured).
        query_vector = embedder.embed([plain_words(query)])[0]
        scores: Scores = np.einsum("ij,j->i", vectors, query_vector)
        return scores

    def _named_servers(self, terms: set[str]) -> list[tuple[float, Positions]]:
        """Servers the query names, each with the share of its name's words it has."""
        named: dict[tuple[str, ...], Positions] = {}
        for term in terms:
            for name, positions in self._servers.get(term, ()):
                named[name] = positions
        specific = self._specificity
        return [
            (sum(specific.get(word, 1.0) for word in name if word in terms) / len(name), positions)
            for name, positions in named.items()
        ]

    def _collect(
        self,
        query: str,
        fused: Scores,
        limit: int,
        allow: Allow | None,
        terms: list[str],
        weights: dict[str, float],
        cosines: Scores | None,
    ) -> list[Hit]:
        from gateway.mcp.search import fusion, reasons

        surface = {stem(word): word for word in tokenize(query) if word not in STOPWORDS}

        width = limit * 4
        while True:  # widen only when ``allow`` or de-duplication left too few
            ranked = fusion.top(fused, width)
            hits: list[tuple[int, list[int]]] = []
            by_name: dict[frozenset[str], list[tuple[int, list[int]]]] = {}
            for position in ranked:
                if allow is not None and not allow(self.tools[position]):
                    continue  # before de-duplication: a hidden tool is no alternative
                same_name = by_name.setdefault(self._own_names[position], [])
                twin = self._twin_of(position, same_name)
                if twin is None:
                    hits.append((position, []))
                    same_name.append(hits[-1])
                    if len(hits) == limit:
                        break
                else:
                    twin.append(position)
            if len(hits) == limit or len(ranked) < width:
                break
            width *= 4
        return [
            Hit(
                tool=self.tools[position],
                score=round(float(fused[position]), 4),
                reason=reasons.explain(
                    self._docs[position], terms, weights, cosines, position, surface
                ),
                alternatives=tuple(self.tools[p].name for p in folded),
            )
            for position, folded in hits
        ]

    def _twin_of(self, position: int, same_name: list[tuple[int, list[int]]]) -> list[int] | None:
        """The folded list of an earlier hit with the same name words (server words
        aside: ``playwright_click`` on server playwright and ``puppeteer_click`` on
        puppeteer) this tool nearly duplicates, if any: another server's, saying
        nearly the same (Jaccard of description and parameter words at least
        ``dedupe_similarity``)."""
        doc = self._docs[position]
        for kept, folded in same_name:
            other = self._docs[kept]
            if other.server != doc.server and _similar(doc, other, self.tuning.dedupe_similarity):
                return folded
        return None


def _similar(a: Fields, b: Fields, threshold: float) -> bool:
    words_a = {*a.description, *a.params}
    words_b = {*b.description, *b.params}
    union = len(words_a | words_b)
    return union == 0 or len(words_a & words_b) / union >= threshold


def preload(delay: float = 0.0, after: Callable[[], None] | None = None) -> threading.Thread:
    """Import numpy and load the model on a daemon thread, ``delay`` seconds from
    now (so start-up does not share the CPU with it): the first search then finds
    them ready rather than paying for them. ``after`` runs once they are loaded (a
    serving gateway moves them out of the garbage collector's way, as it did with
    everything start-up made)."""

    def load() -> None:
        time.sleep(delay)
        from gateway.mcp.search import dense, lexical  # noqa: F401 - imported to warm

        name = current().dense_model
        if name != "off":
            try:
                dense.model(name).result()
            except Exception:
                log.exception("tool search: loading model %r failed; searching lexically", name)
        if after is not None:
            after()

    thread = threading.Thread(target=load, name="search-preload", daemon=True)
    thread.start()
    return thread
