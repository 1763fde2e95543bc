"""Errors of skill import sources, and the credential masking every message goes through."""

from __future__ import annotations

import re
from typing import Any

from gateway.errors import AppError

# `scheme://user:secret@host` and `scheme://token@host`: everything between `//` and the
# last `@` before the host is a credential, whatever the scheme.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def mask_credentials(text: str) -> str:
    """Replace the user-info part of every URL in ``text`` by ``***``.

    Used on every message that may quote a source or git's output, so a token put in a
    clone URL (``https://x-access-token:TOKEN@host/repo.git``) never reaches a response
    or a log line.
    """
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)


def strip_credentials(url: str) -> str:
    """``url`` without its user-info (the form that may be stored and shown)."""
    return _USERINFO.sub(lambda m: m.group("scheme"), url)


class SourceError(AppError):
    """The source text is invalid, refused, or holds nothing importable (422)."""

    status_code = 422
    code = "invalid_source"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(mask_credentials(message), code=code, **details)


class SourceNotFound(SourceError):
    """The repository, ref, commit or local path does not exist (or is not readable)."""

    status_code = 404
    code = "source_not_found"


class SkillNotFound(SourceError):
    """The source exists but has no skill of the requested name."""

    status_code = 404
    code = "skill_not_found"


class SourceUnavailable(SourceError):
    """The source could not be fetched now: timeout, network failure, server error (502)."""

    status_code = 502
    code = "source_unavailable"
