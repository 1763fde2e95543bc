"""Text analysis for tool search: split, normalise, stem.

Tool names are identifiers (``createPullRequest``, ``s3_list-buckets``, ``v2.get``),
so they are split on case changes, ``_ - . /`` and digit boundaries before the
words are lower-cased; stop words are dropped and the rest stemmed, so "listing",
"lists" and "list" meet. Stems are cached: a catalog repeats a small vocabulary.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from gateway.mcp.search.vocabulary import STOPWORDS

# Split before an upper-case letter that follows a lower-case one or a digit
# ("getForecast", "v2Api"), and inside acronyms before their last capital
# ("HTMLParser" -> "HTML Parser") but not before a plural's "s" ("PRs", "URLs").
_CASE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])(?![A-Z]s(?![a-z]))")
# Letters and digits apart: "ec2" -> "ec", "2"; punctuation is a separator.
_WORD = re.compile(r"[a-z]+|[0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-cased words of ``text``, identifiers split into their parts."""
    lower = text.lower()
    if lower != text:  # only text with capitals has case changes to split at
        lower = _CASE.sub(" ", text).lower()
    return _WORD.findall(lower)


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    # Imported on first use: the package loads every language's stemmer (tens of
    # ms), which gateway start-up need not pay.
    import snowballstemmer

    return snowballstemmer.stemmer("english")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The English stem of one lower-case word (cached)."""
    return str(_stemmer().stemWord(word))


def analyze(text: str) -> list[str]:
    """The index terms of ``text``: tokens without stop words, single letters (bits
    of ids and hashes) or multi-digit numbers (ports, years, ids: values, not
    vocabulary), stemmed."""
    known = _TERMS
    terms = []
    for word in tokenize(text):
        term = known.get(word)
        if term is None:
            term = _term(word)
            if len(known) >= _TERMS_MAX:
                known.clear()
            known[word] = term
        if term:
            terms.append(term)
    return terms


# word → its index term, "" for a word that is none: one dict lookup a word,
# which is most of what analysing a large catalog costs.
_TERMS: dict[str, str] = {}
_TERMS_MAX = 500_000


def _term(word: str) -> str:
    if (
        word in STOPWORDS
        or (word.isdigit() and len(word) > 1)
        or (len(word) == 1 and word.isalpha())
    ):
        return ""
    return stem(word)


_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b")
_IMAGE = "png|jpe?g|gif|svg|webp|bmp|ico|tiff?"
_FILE = re.compile(
    r"(?<![\w.])[\w.-]*\w\.(?:(" + _IMAGE + r")|md|txt|pdf|csv|json|ya?ml|toml|ini|env|log|"
    r"docx?|xlsx?|pptx?|py|js|ts|tsx|jsx|go|rs|java|rb|sh|html?|css|sql|zip|tar|gz|xml|mp3|"
    r"wav|mp4|mov|apk|ipa|drawio|ipynb)\b",
    re.IGNORECASE,
)


# A hash or hex id (a commit "a1b2c3d", a request id): digits and letters a-f, both.
# Dropped: its pieces ("1", "2", "3") would match tools by accident, and the words
# around it ("commit", "request") say what it is.
_HEX = re.compile(r"(?<![\w.-])(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,64}(?![\w.-])", re.I)
# A dotted identifier that is neither a URL nor a file name: code (document.title).
_CODE = re.compile(r"(?<![\w.])[a-z_]\w*(?:\.[a-z_]\w*)+(?:\(\))?(?![\w.])", re.IGNORECASE)


def literals_as_kinds(query: str) -> str:
    """A query with the literal values an agent pastes in replaced by what they are:
    a URL by "url", an email address by "email", a file name by "file" ("image
    file" for pictures), a dotted identifier by "code"; a hash is dropped. Their own words ("post"
    in a blog URL, "draft" in draft.md) would otherwise match tools by accident."""
    query = _URL.sub(" url ", query)
    query = _EMAIL.sub(" email ", query)
    query = _HEX.sub(" ", query)
    query = _FILE.sub(lambda m: " image file " if m.group(1) else " file ", query)
    return _CODE.sub(" code ", query)
