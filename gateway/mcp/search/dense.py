"""Dense side of tool search: static embeddings from a model shipped in a wheel.

``wordllama`` carries its 256-d token embeddings and its tokenizer inside the
package, so nothing is downloaded at run time. Its own loader (0.4.0.post1) looks
for the tokenizer under ``tokenizer/`` while the wheel ships ``tokenizers/``, and
then tries Hugging Face; pointing its cache at the package folder, with downloads
disabled, makes it read both files from the wheel.

Loading takes most of a second (numpy, tokenizers, the weights), so it runs on one
background thread, started on first need: gateway start-up does not wait for it,
and searches rank lexically until it is there. Embeddings are cached by text, so
a catalog change embeds only the tools whose text changed.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)
Matrix = npt.NDArray[np.float32]


class Embedder(Protocol):
    """Turns texts into unit vectors, one row each."""

    def embed(self, texts: list[str]) -> Matrix:
        """Unit-length float32 rows, in the order of ``texts``."""


class WordLlamaEmbedder:
    """wordllama's L2 "supercat" model, 256 dimensions, read from its wheel.

    Pooling is done here rather than by ``WordLlama.embed``, which pads every batch
    to its longest text: tool descriptions vary from a few words to a page, and the
    padding cost most of the time. Same result: the mean of the token vectors.
    """

    CHUNK = 256  # texts a step: bounds the token-vector scratch to a few tens of MB

    def __init__(self) -> None:
        import wordllama

        package = Path(wordllama.__file__).parent
        model = wordllama.WordLlama.load(cache_dir=package, disable_download=True)
        self._table: Matrix = model.embedding
        self._tokenizer: Any = model.tokenizer
        self._tokenizer.no_padding()
        self.dimensions = int(self._table.shape[1])

    def embed(self, texts: list[str]) -> Matrix:
        """Unit vectors of ``texts`` (mean of their token vectors, normalised)."""
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(texts), self.CHUNK):
            out[start : start + self.CHUNK] = self._pooled(texts[start : start + self.CHUNK])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def _pooled(self, texts: list[str]) -> Matrix:
        encoded = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encoded), dtype=np.int64, count=len(texts))
        flat = np.fromiter(itertools.chain.from_iterable(e.ids for e in encoded), dtype=np.int64)
        pooled = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if len(flat):
            np.clip(flat, 0, len(self._table) - 1, out=flat)
            filled = lengths > 0
            starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))[filled]
            sums = np.add.reduceat(self._table[flat], starts, axis=0)
            pooled[filled] = sums / lengths[filled, None]
        return pooled


LOADERS: dict[str, Callable[[], Embedder]] = {"wordllama": WordLlamaEmbedder}

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="search-embed")
_models: dict[str, Future[Embedder]] = {}
_lock = threading.Lock()


def model(name: str) -> Future[Embedder]:
    """The model called ``name``, loading on the background thread from the first ask."""
    with _lock:
        future = _models.get(name)
        if future is None:
            if name not in LOADERS:
                raise ValueError(f"unknown search model {name!r}; known: {sorted(LOADERS)}")
            future = _models[name] = _executor.submit(LOADERS[name])
        return future


def background(job: Callable[[], Matrix]) -> Future[Matrix]:
    """Run an embedding job on the search thread (after any model load)."""
    return _executor.submit(job)


_vectors: dict[tuple[str, str], npt.NDArray[np.float32]] = {}
_VECTORS_MAX = 200_000


def embed_cached(name: str, embedder: Embedder, texts: list[str]) -> Matrix:
    """Rows for ``texts``, embedding only those not seen before."""
    missing = list(dict.fromkeys(t for t in texts if (name, t) not in _vectors))
    if missing:
        if len(_vectors) + len(missing) > _VECTORS_MAX:
            _vectors.clear()
            missing = list(dict.fromkeys(texts))
        for text, row in zip(missing, embedder.embed(missing), strict=True):
            _vectors[(name, text)] = row
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([_vectors[(name, t)] for t in texts])
