"""Mask secrets in text before it reaches a log line, an audit row or an error message."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

MASK = "***"
# Shorter values are not masked: replacing them would mangle ordinary text and hide
# nothing worth hiding.
MIN_SECRET_LENGTH = 4

# Token shapes that must never be written out, whatever carries them.
_PATTERNS = [
    re.compile(r"mgw_(?:live|test)_[A-Za-z0-9_\-]{4,}"),  # our own API keys
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/\-]+=*"),
    re.compile(r"gh[pousr]_[A-Za-z0-9]{20,}"),  # GitHub tokens
    re.compile(r"github_pat_[A-Za-z0-9_]{20,}"),
    re.compile(r"sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{16,}"),  # OpenAI / Anthropic style
    re.compile(r"xox[abprs]-[A-Za-z0-9\-]{10,}"),  # Slack
    re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS access key id
    re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),  # JWT
    re.compile(r"(?i)((?:password|passwd|secret|token|api[_-]?key)\s*[=:]\s*)[^\s&,;\"']+"),
    re.compile(r"(?i)(://[^/\s:@]+:)[^@/\s]+(@)"),  # credentials in URLs
]

# Any of them, to skip the substitutions for the (usual) text that holds none.
_ANY = re.compile(
    "|".join(
        f"(?i:{p.pattern[4:]})" if p.pattern.startswith("(?i)") else f"(?:{p.pattern})"
        for p in _PATTERNS
    )
)

SECRET_FIELD_NAMES = re.compile(
    r"(?i)(pass(word|wd)?|secret|token|api[_-]?key|authorization|credential|private[_-]?key)"
)

# Lower-case pieces of text that every match of a pattern above contains. Scanning for
# them is ~5x faster than the case-insensitive alternations, and most text holds none.
_SECRET_HINTS = (
    "mgw_",
    "bearer",
    "gh",
    "github",
    "sk-",
    "xox",
    "akia",
    "eyj",
    "pass",
    "secret",
    "token",
    "api",
    "://",
)
_NAME_HINTS = ("pass", "secret", "token", "api", "authorization", "credential", "private")


def holds_secret(text: str) -> bool:
    """Whether ``text`` holds a token shape (:data:`_PATTERNS`)."""
    low = text.casefold()  # folds as (?i) matches: the long s is an "s", Kelvin a "k"
    for hint in _SECRET_HINTS:
        if hint in low:
            return _ANY.search(text) is not None
    return False


def names_secret(text: str) -> bool:
    """Whether ``text`` holds a secret-looking field name (:data:`SECRET_FIELD_NAMES`)."""
    low = text.casefold()  # folds as (?i) matches: the long s is an "s", Kelvin a "k"
    for hint in _NAME_HINTS:
        if hint in low:
            return SECRET_FIELD_NAMES.search(text) is not None
    return False


def _replace(match: re.Match[str]) -> str:
    groups = [g for g in match.groups() if g is not None]
    if len(groups) == 2:  # prefix + suffix kept, secret between them masked
        return f"{groups[0]}{MASK}{groups[1]}"
    if len(groups) == 1:
        return f"{groups[0]}{MASK}"
    return MASK


def mask_text(text: str, extra_secrets: tuple[str, ...] = ()) -> str:
    """Replace known token shapes (and any literal ``extra_secrets``) with ``***``."""
    for secret in extra_secrets:
        if len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, MASK)
    if not holds_secret(text):
        return text
    for pattern in _PATTERNS:
        text = pattern.sub(_replace, text)
    return text


def mask_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """Copy ``data`` with values of secret-looking keys masked and strings scrubbed."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if SECRET_FIELD_NAMES.search(key) and value not in (None, ""):
            out[key] = MASK
        elif isinstance(value, str):
            out[key] = mask_text(value)
        elif isinstance(value, Mapping):
            out[key] = mask_mapping(value)
        else:
            out[key] = value
    return out


def mask_structure(value: Any, extra_secrets: tuple[str, ...] = ()) -> Any:
    """Copy a JSON-like ``value`` with :func:`mask_text` applied to every string in it,
    mapping keys included, however deeply nested in mappings and lists.

    Masking the strings themselves (not a serialisation of them) matters: ``json.dumps``
    escapes quotes, backslashes, control and non-ASCII characters, so a secret holding
    one of them never matches its escaped form.
    """
    if isinstance(value, str):
        return mask_text(value, extra_secrets)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {
            mask_text(str(key), extra_secrets): mask_structure(item, extra_secrets)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [mask_structure(item, extra_secrets) for item in value]
    return mask_text(str(value), extra_secrets)  # what json.dumps(default=str) would show


# Characters every JSON encoder writes as themselves (Go escapes <, > and &; some escape
# / and '; Python escapes non-ASCII): a secret made only of these appears byte for byte.
_VERBATIM = re.compile(r"[A-Za-z0-9 !#$%()*+,\-.:;=?@\[\]^_`{|}~]+")
# Everything a JSON text can hold outside its strings: a secret made only of these could
# match a number or the syntax around strings, so it is masked in the parsed message.
_OUTSIDE_STRINGS = set("0123456789+-.eE \t\r\n{}[]:,truefalsn")


class SecretMask:
    """One server's secret values, masked in whatever of its output is shown.

    The rule, whatever form the output takes: every literal occurrence of a value in a
    string (mapping keys included) becomes ``***``, longest value first; values shorter
    than :data:`MIN_SECRET_LENGTH` are left alone. Token shapes are not masked here: a
    tool's result may legitimately hold tokens (that is :func:`mask_text`'s job, for logs
    and error messages).
    """

    __slots__ = ("_encoded", "_in_bytes", "values")

    def __init__(self, values: Iterable[str] = ()) -> None:
        unique = {v for v in values if len(v) >= MIN_SECRET_LENGTH}
        self.values: tuple[str, ...] = tuple(sorted(unique, key=lambda v: (-len(v), v)))
        self._encoded = tuple(v.encode() for v in self.values)
        # Byte replacement equals masking the parsed strings only for values that are
        # written verbatim and cannot be read outside a string.
        self._in_bytes = all(
            _VERBATIM.fullmatch(v) and not set(v) <= _OUTSIDE_STRINGS for v in self.values
        )

    def __bool__(self) -> bool:
        return bool(self.values)

    def text(self, text: str) -> str:
        """``text`` with every value replaced."""
        for value in self.values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def structure(self, value: Any) -> Any:
        """A JSON-like ``value`` with :meth:`text` applied to every string and key in it."""
        if not self.values:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k): self.structure(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.structure(v) for v in value]
        return value

    def json(self, data: bytes) -> bytes:
        """A serialised JSON message with the values masked as :meth:`structure` would.

        On the bytes when that is the same thing (the fast path relays bytes): values
        written verbatim by every encoder, in a message without escapes (an escape such
        as ``\\n`` could run into a value). Otherwise the message is parsed, masked and
        written again; a message that does not parse has only its bytes masked."""
        if not self.values:
            return data
        if self._in_bytes:
            # bytes.find, not `in` (which raises and drops a TypeError inside CPython).
            found = [value for value in self._encoded if data.find(value) >= 0]
            if not found:
                return data
            if data.find(b"\\") < 0:
                for value in found:
                    data = data.replace(value, b"***")
                return data
        try:
            return orjson.dumps(self.structure(orjson.loads(data)))
        except orjson.JSONDecodeError:
            for value in self._encoded:
                data = data.replace(value, b"***")
            return data
