"""Swagger 2.0 → OpenAPI 3.0, so that FastMCP's OpenAPI support (3.x only) reads both.

The structural rewrite the OpenAPI 3.0 specification describes for 2.0 documents:
``host``/``basePath``/``schemes`` become ``servers``; ``definitions``,
``parameters``, ``responses`` and ``securityDefinitions`` move under ``components``
(with every ``$ref`` rewritten); ``body`` and ``formData`` parameters become a
``requestBody`` in the operation's ``consumes`` types; a parameter's type keywords
move into its ``schema``; a response's ``schema`` goes under ``content`` in the
``produces`` types. Vendor extensions are kept.
"""

from __future__ import annotations

import copy
from typing import Any

_SCHEMA_KEYS = (
    "type",
    "format",
    "items",
    "enum",
    "default",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "multipleOf",
)
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
_REFS = {
    "#/definitions/": "#/components/schemas/",
    "#/parameters/": "#/components/parameters/",
    "#/responses/": "#/components/responses/",
}
_FLOWS = {
    "implicit": "implicit",
    "password": "password",
    "application": "clientCredentials",
    "accessCode": "authorizationCode",
}


def upgrade(doc: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI 3.0.3 document equivalent to the Swagger 2.0 document ``doc``."""
    src = _rewrite_refs(copy.deepcopy(doc))
    consumes = src.get("consumes") or ["application/json"]
    produces = src.get("produces") or ["application/json"]
    shared = src.get("parameters") or {}
    out: dict[str, Any] = {"openapi": "3.0.3", "info": src.get("info") or {}}
    out["servers"] = [{"url": _server_url(src)}]
    for key in ("tags", "externalDocs", "security"):
        if key in src:
            out[key] = src[key]
    out.update({k: v for k, v in src.items() if k.startswith("x-")})
    components: dict[str, Any] = {}
    if src.get("definitions"):
        components["schemas"] = {k: _schema(v) for k, v in src["definitions"].items()}
    plain = {k: _parameter(v) for k, v in shared.items() if v.get("in") not in ("body", "formData")}
    if plain:
        components["parameters"] = plain
    if src.get("responses"):
        components["responses"] = {k: _response(v, produces) for k, v in src["responses"].items()}
    if src.get("securityDefinitions"):
        components["securitySchemes"] = {
            k: _security(v) for k, v in src["securityDefinitions"].items()
        }
    if components:
        out["components"] = components
    out["paths"] = {
        path: _path_item(item, shared, consumes, produces)
        for path, item in (src.get("paths") or {}).items()
    }
    return out


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            for old, new in _REFS.items():
                if ref.startswith(old):
                    node["$ref"] = new + ref[len(old) :]
        for value in node.values():
            _rewrite_refs(value)
    elif isinstance(node, list):
        for value in node:
            _rewrite_refs(value)
    return node


def _server_url(src: dict[str, Any]) -> str:
    base = src.get("basePath") or ""
    host = src.get("host")
    if not host:
        return base or "/"
    schemes = src.get("schemes") or ["https"]
    scheme = "https" if "https" in schemes else schemes[0]
    return f"{scheme}://{host}{base}"


def _schema(node: Any) -> Any:
    """2.0 schema keywords that 3.0 spells differently (``file``, ``x-nullable``)."""
    if isinstance(node, list):
        return [_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _schema(v) for k, v in node.items()}
    if out.get("type") == "file":
        out["type"], out["format"] = "string", "binary"
    if out.pop("x-nullable", False):
        out["nullable"] = True
    if "discriminator" in out and isinstance(out["discriminator"], str):
        out["discriminator"] = {"propertyName": out["discriminator"]}
    return out


def _parameter(param: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in param:
        return param
    out = {k: v for k, v in param.items() if k not in _SCHEMA_KEYS and k != "collectionFormat"}
    schema = _schema({k: param[k] for k in _SCHEMA_KEYS if k in param})
    out["schema"] = schema or {"type": "string"}
    fmt = param.get("collectionFormat")
    if schema.get("type") == "array":
        out["explode"] = fmt == "multi"
        if fmt in ("ssv", "pipes"):
            out["style"] = "spaceDelimited" if fmt == "ssv" else "pipeDelimited"
        elif param.get("in") == "query":
            out["style"] = "form"
    return out


def _resolve(param: dict[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
    ref = param.get("$ref", "")
    name = ref.rsplit("/", 1)[-1] if ref.startswith("#/components/parameters/") else None
    if name and name in shared and shared[name].get("in") in ("body", "formData"):
        return dict(shared[name])  # inlined: 3.0 has no body parameters to point at
    return param


def _path_item(
    item: dict[str, Any], shared: dict[str, Any], consumes: list[str], produces: list[str]
) -> dict[str, Any]:
    common = [_resolve(p, shared) for p in item.get("parameters") or []]
    out: dict[str, Any] = {k: v for k, v in item.items() if k not in (*_METHODS, "parameters")}
    plain_common = [p for p in common if p.get("in") not in ("body", "formData")]
    if plain_common:
        out["parameters"] = [_parameter(p) for p in plain_common]
    for method in _METHODS:
        if method in item:
            out[method] = _operation(item[method], common, shared, consumes, produces)
    return out


def _operation(
    op: dict[str, Any],
    common: list[dict[str, Any]],
    shared: dict[str, Any],
    consumes: list[str],
    produces: list[str],
) -> dict[str, Any]:
    consumes = op.get("consumes") or consumes
    produces = op.get("produces") or produces
    params = [_resolve(p, shared) for p in op.get("parameters") or []]
    own = {(p.get("name"), p.get("in")) for p in params}
    body_params = [p for p in (*common, *params) if p.get("in") in ("body", "formData")]
    body_params = [p for p in body_params if p in params or (p.get("name"), p.get("in")) not in own]
    out = {
        k: v for k, v in op.items() if k not in ("consumes", "produces", "parameters", "responses")
    }
    plain = [_parameter(p) for p in params if p.get("in") not in ("body", "formData")]
    if plain:
        out["parameters"] = plain
    body = _request_body(body_params, consumes)
    if body is not None:
        out["requestBody"] = body
    out["responses"] = {
        code: _response(r, produces) for code, r in (op.get("responses") or {}).items()
    } or {"default": {"description": "response"}}
    return out


def _request_body(params: list[dict[str, Any]], consumes: list[str]) -> dict[str, Any] | None:
    body = next((p for p in params if p.get("in") == "body"), None)
    if body is not None:
        body_schema = _schema(body.get("schema") or {})
        types = [t for t in consumes if "form" not in t] or ["application/json"]
        out: dict[str, Any] = {"content": {t: {"schema": body_schema} for t in types}}
        if body.get("description"):
            out["description"] = body["description"]
        out["required"] = bool(body.get("required"))
        return out
    form = [p for p in params if p.get("in") == "formData"]
    if not form:
        return None
    props = {p["name"]: _parameter(p)["schema"] | _described(p) for p in form}
    required = [p["name"] for p in form if p.get("required")]
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    has_file = any(p.get("type") == "file" for p in form)
    kind = (
        "multipart/form-data"
        if has_file or "multipart/form-data" in consumes
        else ("application/x-www-form-urlencoded")
    )
    return {"content": {kind: {"schema": schema}}, "required": bool(required)}


def _described(param: dict[str, Any]) -> dict[str, Any]:
    return {"description": param["description"]} if param.get("description") else {}


def _response(resp: dict[str, Any], produces: list[str]) -> dict[str, Any]:
    if "$ref" in resp:
        return resp
    out = {k: v for k, v in resp.items() if k not in ("schema", "examples", "headers")}
    out.setdefault("description", "")
    if "schema" in resp:
        out["content"] = {t: {"schema": _schema(resp["schema"])} for t in produces}
    if resp.get("headers"):
        out["headers"] = {
            name: {
                "description": h.get("description", ""),
                "schema": _schema({k: h[k] for k in _SCHEMA_KEYS if k in h}),
            }
            for name, h in resp["headers"].items()
        }
    return out


def _security(scheme: dict[str, Any]) -> dict[str, Any]:
    kind = scheme.get("type")
    extra = {k: v for k, v in scheme.items() if k == "description" or k.startswith("x-")}
    if kind == "basic":
        return {"type": "http", "scheme": "basic", **extra}
    if kind == "apiKey":
        return {"type": "apiKey", "name": scheme.get("name"), "in": scheme.get("in"), **extra}
    if kind == "oauth2":
        flow: dict[str, Any] = {"scopes": scheme.get("scopes") or {}}
        for key in ("authorizationUrl", "tokenUrl"):
            if key in scheme:
                flow[key] = scheme[key]
        name = _FLOWS.get(scheme.get("flow", ""), "implicit")
        return {"type": "oauth2", "flows": {name: flow}, **extra}
    return dict(scheme)
