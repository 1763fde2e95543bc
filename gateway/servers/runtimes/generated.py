"""``generated`` adapter: an MCP server object run in-process.

The object comes from an importable ``module:attribute``, from Python source the
gateway stores (written by an admin), or from an OpenAPI document (``openapi``: one
tool per operation, made by FastMCP; written by the server generator and approved by
a person, see docs/generation.md). It may be an SDK ``MCPServer``/low-level
``Server`` or a FastMCP server (its low-level server is used). Only admins may
register code (``module``, ``source``): it runs inside the gateway.
"""

from __future__ import annotations

import importlib
import sys
import types as pytypes
from collections.abc import Sequence
from typing import Any

from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer

from gateway.mcp.sdk_compat import fastmcp_lowlevel
from gateway.servers.runtimes.base import BackendUnavailable, RuntimeContext, ServerSpec
from gateway.servers.runtimes.openapi import api_client, build_openapi_server

_loaded: dict[tuple[str, int], Any] = {}


def load_server_object(spec: ServerSpec, *, allow_private_urls: bool = False) -> Any:
    """Import or execute the spec's code, or build its OpenAPI server, and return its
    server object (cached per version)."""
    key = (spec.id, spec.version)
    if key in _loaded:
        return _loaded[key]
    config = spec.config
    attribute = config.get("attribute", "server")
    try:
        if config.get("openapi") is not None:
            client = api_client(
                config["base_url"], spec.secret_headers, allow_private_urls=allow_private_urls
            )
            obj = build_openapi_server(
                config["openapi"], name=spec.name, client=client, include=config.get("tools")
            )
            _loaded[key] = obj
            return obj
        if config.get("module"):
            module_name, _, attribute = config["module"].partition(":")
            namespace: Any = importlib.import_module(module_name)
        else:
            module_name = f"mcpgw_generated_{spec.name.replace('-', '_')}_v{spec.version}"
            namespace = pytypes.ModuleType(module_name)
            # Registered so that postponed annotations (`from __future__ import annotations`)
            # resolve: the SDK evaluates them through sys.modules[func.__module__].
            sys.modules[module_name] = namespace
            exec(compile(config["source"], f"<generated:{spec.name}>", "exec"), namespace.__dict__)  # noqa: S102
        obj = getattr(namespace, attribute)
    except Exception as exc:
        raise BackendUnavailable(
            f"cannot load generated server {spec.name!r}: {type(exc).__name__}: {exc}"
        ) from None
    _loaded[key] = obj
    return obj


def as_sdk_server(obj: Any) -> Server[Any] | MCPServer:
    if isinstance(obj, MCPServer | Server):
        return obj
    inner = fastmcp_lowlevel(obj)
    if isinstance(inner, Server):
        return inner
    raise BackendUnavailable(
        f"{type(obj).__name__} is not an MCP server object (MCPServer, Server or FastMCP)"
    )


class GeneratedConnector:
    @staticmethod
    def client_mode(spec: ServerSpec) -> str:
        """``auto`` negotiates 2026-07-28 in-process (list changes via subscriptions/listen,
        no back-channel); ``legacy`` (config ``protocol: "2025-11-25"``) keeps the
        back-channel, so sampling/elicitation/log requests reach the gateway's relay."""
        return "legacy" if spec.config.get("protocol") == "2025-11-25" else "auto"

    async def targets(self, spec: ServerSpec, ctx: RuntimeContext) -> Sequence[Any]:
        obj = load_server_object(spec, allow_private_urls=ctx.allow_private_urls)
        return [as_sdk_server(obj)]
