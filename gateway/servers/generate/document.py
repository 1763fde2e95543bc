"""Reading an API description: JSON or YAML text (or an object already), at most
``generate_max_document_bytes``, OpenAPI 3.x or Swagger 2.0 (upgraded to 3.0), and
readable by FastMCP's OpenAPI parser. Every refusal is a 4xx with a stable code:
``bad_openapi`` (422) or ``document_too_large`` (413)."""

from __future__ import annotations

import json
import logging
import re
from typing import Any
from urllib.parse import urljoin

import orjson
import yaml

from gateway.errors import InvalidInput, PayloadTooLarge
from gateway.servers.generate.swagger2 import upgrade

# FastMCP's parser logs every schema error it raises, with the document's values; the
# caller gets the error as a 422 instead, so its log lines would only be noise.
logging.getLogger("fastmcp.utilities.openapi.parser").setLevel(logging.CRITICAL)

# YAML aliases let a small text expand into a huge object ("billion laughs"): real API
# descriptions use few, if any.
MAX_ALIASES = 200
_VARIABLE = re.compile(r"\{([^}]+)\}")


class BadDocument(InvalidInput):
    """The text is not an OpenAPI 3.x or Swagger 2.0 document FastMCP can read."""

    code = "bad_openapi"


def too_large(limit: int) -> PayloadTooLarge:
    """The 413 of a document over ``limit`` bytes."""
    return PayloadTooLarge(
        f"the API document is larger than {limit} bytes (MCPGW_GENERATE_MAX_DOCUMENT_BYTES)",
        code="document_too_large",
    )


def parse_text(text: str, limit: int) -> Any:
    """JSON or YAML ``text`` as an object."""
    if len(text.encode()) > limit:
        raise too_large(limit)
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        aliases = sum(isinstance(e, yaml.AliasEvent) for e in yaml.parse(text, Loader=_Loader))
        if aliases > MAX_ALIASES:
            raise BadDocument(f"the document uses {aliases} YAML aliases (at most {MAX_ALIASES})")
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (the safe loader)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise BadDocument(f"the document is neither JSON nor YAML{at}") from None


_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_document(raw: Any, limit: int) -> dict[str, Any]:
    """``raw`` (text, or an object) as an OpenAPI 3.x document FastMCP can read."""
    if isinstance(raw, (str, bytes)):
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        doc = parse_text(text, limit)
    else:
        doc = raw
        if len(orjson.dumps(doc)) > limit:
            raise too_large(limit)
    return normalize(doc)


def normalize(doc: Any) -> dict[str, Any]:
    """The document as OpenAPI 3.x (Swagger 2.0 upgraded), checked by FastMCP's parser."""
    from fastmcp.utilities.openapi import parse_openapi_to_http_routes

    if not isinstance(doc, dict):
        raise BadDocument("the document is not an object")
    version = str(doc.get("openapi") or "")
    if str(doc.get("swagger") or "") == "2.0":
        doc = upgrade(doc)
    elif not version.startswith("3."):
        raise BadDocument(
            'not an API description: expected `openapi: 3.x` or `swagger: "2.0"` at the top'
        )
    if not isinstance(doc.get("paths"), dict) or not doc["paths"]:
        raise BadDocument("the document describes no operations (`paths` is empty)")
    try:
        routes = parse_openapi_to_http_routes(doc)
    except Exception as exc:  # pydantic's errors, FastMCP's ValueError
        raise BadDocument(
            f"the document does not follow the OpenAPI schema: {_short(exc)}"
        ) from None
    if not routes:
        raise BadDocument("the document describes no operations")
    return dict(doc)


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:299] + "…"


def document_base_url(doc: dict[str, Any], fetched_from: str | None = None) -> str | None:
    """The API's base URL as the document says (its first server, variables at their
    defaults, relative URLs resolved against where the document came from)."""
    servers = doc.get("servers") or []
    if not servers or not isinstance(servers[0], dict) or not servers[0].get("url"):
        return None
    url = str(servers[0]["url"])
    variables = servers[0].get("variables") or {}
    url = _VARIABLE.sub(lambda m: str((variables.get(m.group(1)) or {}).get("default", "")), url)
    if not url.startswith(("http://", "https://")):
        if fetched_from is None:
            return None
        url = urljoin(fetched_from, url)
    return url.rstrip("/")


def security_schemes(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """How the API says it is authenticated: each scheme's name, type and, for keys,
    where the key goes (what a reviewer supplies as a secret header)."""
    schemes = ((doc.get("components") or {}).get("securitySchemes")) or {}
    out = []
    for name, scheme in schemes.items():
        if not isinstance(scheme, dict):
            continue
        item: dict[str, Any] = {"name": name, "type": scheme.get("type")}
        if scheme.get("type") == "apiKey":
            item["in"], item["parameter"] = scheme.get("in"), scheme.get("name")
        elif scheme.get("type") == "http":
            item["scheme"] = scheme.get("scheme")
            item["in"], item["parameter"] = "header", "Authorization"
        out.append(item)
    return out
