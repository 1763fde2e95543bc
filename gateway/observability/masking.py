"""Mask secrets in text before it reaches a log line, an audit row or an error message."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

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

SECRET_FIELD_NAMES = re.compile(
    r"(?i)(pass(word|wd)?|secret|token|api[_-]?key|authorization|credential|private[_-]?key)"
)


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
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
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
