"""Bearer JWTs from an external issuer, besides the gateway's own API keys.

Signatures and claims are checked by ``joserfc`` (authlib's JOSE library; authlib's own
``authlib.jose`` is deprecated in its favour), never by hand:

- the algorithm must be one configured (asymmetric ones with the issuer's keys, HS256
  only with the shared secret); ``alg: none`` and HS/RS confusion fail there;
- the issuer's keys come from its JWKS (the OpenID discovery document names it when
  ``MCPGW_JWT_JWKS_URL`` is unset), fetched through the SSRF guard, cached, and read
  again when a token names a key not seen yet (rotation), at most every few seconds;
- ``iss``, ``aud`` and ``exp`` are required, ``nbf`` honoured, with a clock-skew leeway.

Errors say which check failed, never what the token holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import KeySet, OctKey
from joserfc.jwt import JWTClaimsRegistry

from gateway.config import Settings
from gateway.errors import Unauthenticated
from gateway.pinned_http import httpx_client
from gateway.ssrf import HostPins, check_url

log = logging.getLogger("gateway.auth")

_FETCH_TIMEOUT = 5.0
_MIN_REFRESH_SECONDS = 10.0  # an unknown key id re-reads the JWKS at most this often


@dataclass(frozen=True, slots=True)
class JwtConfig:
    """What a JWT must be to be accepted (from the ``MCPGW_JWT_*`` settings)."""

    issuer: str
    audience: str
    jwks_url: str | None
    algorithms: tuple[str, ...]
    shared_secret: str | None
    leeway: float
    allow_private_urls: bool
    jwks_ttl: float = 300.0

    @classmethod
    def of(cls, settings: Settings) -> JwtConfig | None:
        """The configuration, or None when no issuer is set (API keys only)."""
        if not settings.jwt_issuer or not settings.jwt_audience:
            return None
        secret = settings.jwt_shared_secret
        return cls(
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            jwks_url=settings.jwt_jwks_url,
            algorithms=tuple(settings.jwt_algorithms),
            shared_secret=secret.get_secret_value() if secret else None,
            leeway=settings.jwt_leeway_seconds,
            allow_private_urls=settings.allow_private_urls,
        )


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated parts, the first a JSON header (``eyJ`` once encoded)."""
    return token.startswith("eyJ") and token.count(".") == 2


class JwksCache:
    """The issuer's public keys, fetched on first use and refreshed on rotation."""

    def __init__(self, config: JwtConfig) -> None:
        self.config = config
        self._keys: KeySet | None = None
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    async def keys(self, *, stale: bool = False) -> KeySet:
        """The key set; ``stale``: a token named a key it lacks, so read it again (unless
        it was read moments ago)."""
        age = time.monotonic() - self._fetched
        fresh = self._keys is not None and age < self.config.jwks_ttl
        if fresh and (not stale or age < _MIN_REFRESH_SECONDS):
            assert self._keys is not None
            return self._keys
        async with self._lock:
            if self._keys is None or time.monotonic() - self._fetched >= _MIN_REFRESH_SECONDS:
                try:
                    self._keys = KeySet.import_key_set(await self._fetch_jwks())
                    self._fetched = time.monotonic()
                except Unauthenticated:
                    if self._keys is None:
                        raise
                    # The issuer is away: keep its last keys, try again in a while.
                    self._fetched = time.monotonic() - self.config.jwks_ttl + _MIN_REFRESH_SECONDS
        return self._keys

    async def _fetch_jwks(self) -> Any:
        url = self.config.jwks_url
        try:
            if url is None:
                base = self.config.issuer.rstrip("/")
                found = await self._get_json(f"{base}/.well-known/openid-configuration")
                url = found.get("jwks_uri") if isinstance(found, dict) else None
                if not isinstance(url, str):
                    raise ValueError("the discovery document names no jwks_uri")
            jwks = await self._get_json(url)
            if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
                raise ValueError("not a JWK set")
            return jwks
        except Exception as exc:  # any failure: the token cannot be checked now
            log.warning("could not read the JWT issuer's keys: %s", exc)
            raise Unauthenticated(
                "the token issuer's signing keys cannot be read right now",
                code="issuer_keys_unavailable",
            ) from exc

    async def _get_json(self, url: str) -> Any:
        pin = await check_url(url, self.config.allow_private_urls)
        async with httpx_client(url, HostPins.of(pin), timeout=_FETCH_TIMEOUT) as client:
            response = await client.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            return response.json()


class JwtVerifier:
    """Checks a bearer JWT and returns its claims, or raises :class:`Unauthenticated`
    whose ``code`` and message say which check failed."""

    def __init__(self, config: JwtConfig) -> None:
        self.config = config
        self.jwks = JwksCache(config)
        self._secret = OctKey.import_key(config.shared_secret) if config.shared_secret else None
        self._algorithms = (*config.algorithms, *(("HS256",) if self._secret else ()))
        self._claims = JWTClaimsRegistry(
            leeway=int(config.leeway),
            iss={"essential": True, "value": config.issuer},
            aud={"essential": True, "value": config.audience},
            exp={"essential": True},
        )

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of ``token`` once its signature and claims hold."""
        try:
            header = jws.extract_compact(token.encode()).headers()  # parsed, not trusted
            alg, kid = header.get("alg"), header.get("kid")
            if isinstance(alg, str) and alg.startswith("HS"):
                if self._secret is None:
                    raise UnsupportedAlgorithmError(f"{alg} is not accepted")
                key: OctKey | KeySet = self._secret
            elif alg not in self.config.algorithms:
                raise UnsupportedAlgorithmError(f"{alg} is not accepted")
            else:
                key = await self.jwks.keys()
                if kid is not None and kid not in _kids(key):
                    key = await self.jwks.keys(stale=True)  # rotated: read the set again
                    if kid not in _kids(key):
                        raise Unauthenticated("token signed by an unknown key", code="unknown_key")
            decoded = jwt.decode(token, key, algorithms=self._algorithms)
            self._claims.validate(decoded.claims)
        except JoseError as exc:
            raise _refusal(exc) from exc
        except (ValueError, TypeError, UnicodeError) as exc:  # not a JWT at all
            raise Unauthenticated("malformed token", code="invalid_token") from exc
        return decoded.claims


def _kids(keys: KeySet) -> set[str | None]:
    return {k.kid for k in keys.keys}


def _refusal(exc: JoseError) -> Unauthenticated:
    if isinstance(exc, ExpiredTokenError):
        return Unauthenticated("token expired", code="token_expired")
    claim = getattr(exc, "claim", None)
    if claim in ("nbf", "iat"):
        return Unauthenticated("token not valid yet", code="token_not_yet_valid")
    if isinstance(exc, MissingClaimError | InvalidClaimError):
        code = {"iss": "invalid_issuer", "aud": "invalid_audience"}.get(
            claim or "", "invalid_claims"
        )
        return Unauthenticated(f"token claim '{claim}' is missing or not accepted", code=code)
    if isinstance(exc, UnsupportedAlgorithmError):
        return Unauthenticated("token signature algorithm not accepted", code="invalid_algorithm")
    if isinstance(exc, BadSignatureError):
        return Unauthenticated("token signature does not verify", code="invalid_signature")
    return Unauthenticated("malformed token", code="invalid_token")
