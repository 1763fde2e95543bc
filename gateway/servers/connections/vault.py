"""The connections every call may need, in memory: (server, user) → the headers that
carry that user's credential. The call path reads only this (a dict lookup); the
connection service fills it from the database at start, after each change it makes,
and on every refresher tick (what other replicas changed: rows are compared by
version, only changed ones are read and unsealed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Credential:
    """One user's usable credential for one server (decrypted: memory only)."""

    connection_id: str
    user_id: str
    server: str
    kind: str
    status: str
    headers: dict[str, str] = field(repr=False)
    version: tuple[int, int]  # (connection's, server's): what a replica compares
    expires_at: datetime | None = None
    last_error: str | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values to mask wherever this credential's session shows text."""
        found: list[str] = []
        for value in self.headers.values():
            found.append(value)
            found.extend(part for part in value.split(" ") if len(part) >= 8)
        return tuple(found)


def credential_headers(config: dict[str, Any], sealed: dict[str, dict[str, str]]) -> dict[str, str]:
    """The request headers a connection's sealed tokens become, per the server's
    ``credentials`` config."""
    credentials = config.get("credentials") or {}
    if credentials.get("kind") == "secret":
        secret = sealed.get("secret", {}).get("value", "")
        header = str(credentials.get("header") or "Authorization")
        value = str(credentials.get("format") or "Bearer {secret}").replace("{secret}", secret)
        return {header: value}
    access = sealed.get("token", {}).get("access_token", "")
    return {"Authorization": f"Bearer {access}"}


class Vault:
    """The in-memory view of connections (one per process)."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], Credential] = {}
        self._by_id: dict[str, Credential] = {}

    def get(self, server: str, user_id: str) -> Credential | None:
        """``user_id``'s credential for ``server`` (any status), or None."""
        return self._by_key.get((server, user_id))

    def any_for(self, server: str) -> Credential | None:
        """Some usable credential for ``server`` (to read its tool list with)."""
        for credential in self._by_id.values():
            if credential.server == server and credential.status != "broken":
                return credential
        return None

    def by_id(self, connection_id: str) -> Credential | None:
        """The credential of one connection, or None."""
        return self._by_id.get(connection_id)

    def versions(self) -> dict[str, tuple[int, int]]:
        """Connection id → the version held."""
        return {cid: c.version for cid, c in self._by_id.items()}

    def put(self, credential: Credential) -> None:
        """Hold ``credential`` (replacing the connection's previous one)."""
        self.drop(credential.connection_id)
        self._by_id[credential.connection_id] = credential
        self._by_key[(credential.server, credential.user_id)] = credential

    def drop(self, connection_id: str) -> None:
        """Forget a connection (deleted here or by another replica)."""
        old = self._by_id.pop(connection_id, None)
        if old is not None and self._by_key.get((old.server, old.user_id)) is old:
            del self._by_key[(old.server, old.user_id)]
