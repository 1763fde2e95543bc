"""OAuth tables: registered clients, authorization requests (pending, then codes) and
issued tokens. Secrets are never stored in the clear: codes and tokens as SHA-256
digests (like API keys), a confidential client's secret sealed (the token endpoint
must compare it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime, new_id, utcnow


class OAuthClient(Base):
    """A client registered by RFC 7591 dynamic registration (or a metadata document)."""

    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    # RFC 7591 client metadata as registered, without the secret.
    info: Mapped[dict[str, Any]] = mapped_column(JSON)
    secret_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OAuthRequest(Base):
    """An authorization request: pending until the user approves it, then a one-time
    code (``code_hash``) until the client exchanges it."""

    __tablename__ = "oauth_requests"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_clients.client_id", ondelete="CASCADE"), index=True
    )
    # The validated parameters: redirect URI, state, scopes, PKCE challenge, resource.
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    )
    code_hash: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The grant the code became: a replayed code revokes its tokens (RFC 6749 §4.1.2).
    grant_id: Mapped[str | None] = mapped_column(String(36), nullable=True)


class OAuthToken(Base):
    """An access or refresh token. A grant (one sign-in of one user for one client and
    resource) holds the access and refresh tokens issued from it, rotated on refresh;
    revoking one token revokes its grant."""

    __tablename__ = "oauth_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))  # access | refresh
    grant_id: Mapped[str] = mapped_column(String(36), index=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_clients.client_id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    scopes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    resource: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
