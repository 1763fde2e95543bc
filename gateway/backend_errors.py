"""The errors a backend connection raises, in core so core modules (the SSRF guard) can
raise them without importing the runtimes package (which imports them back).
``gateway.servers.runtimes.base`` re-exports both; import them from there."""

from __future__ import annotations


class BackendError(Exception):
    """A backend cannot serve a request; the message is safe to show an agent."""


class BackendUnavailable(BackendError):
    """The backend is not connected and could not be (re)started."""
