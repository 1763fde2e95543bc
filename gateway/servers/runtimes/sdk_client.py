"""What the gateway reads from, and hooks into, the official SDK's client session.

The SDK has no public flag for a dropped session, no public hook for the request
envelope and no paging helper: these few functions hold every such reach into SDK
internals, so an SDK upgrade has one place to check.
"""

from __future__ import annotations

from typing import Any

from mcp import Client, types
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_NAME_HEADER
from mcp_types import CLIENT_CAPABILITIES_META_KEY
from mcp_types.jsonrpc import METHOD_NOT_FOUND
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway.mcp.sdk_compat import (
    Stamp,
    client_dispatcher,
    dispatcher_closed,
    stamp_request,
    wrap_request_stamp,
)
from gateway.observability.tracing import OUTGOING
from gateway.servers.runtimes.base import BackendError, Catalog
from gateway.servers.runtimes.relay import CURRENT_RELAY

# What the SDK client writes when it gives a request up because the connection (or
# the request's stream) went away. Backends use -32000 for their own errors too
# (it opens JSON-RPC's server-error range), so the code alone says nothing.
_SDK_CLOSED_MESSAGE = "Connection closed"
_SDK_STREAM_LOST_PREFIX = "SSE stream "
TASKS_EXTENSION = "io.modelcontextprotocol/tasks"


def session_closed(client: Client) -> bool:
    """Has the session's read loop ended (process died, HTTP stream dropped)?"""
    # The SDK exposes no public flag; its dispatcher keeps one.
    try:
        dispatcher = client_dispatcher(client.session)
    except (RuntimeError, AttributeError):
        return True
    return dispatcher_closed(dispatcher)


def describe(exc: BaseException) -> str:
    """A one-line, secret-free description of a connection failure."""
    if isinstance(exc, BaseExceptionGroup):
        leaves = [describe(e) for e in exc.exceptions]
        return "; ".join(dict.fromkeys(leaves)) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def connection_lost(client: Client, error: types.ErrorData) -> bool:
    """Was a CONNECTION_CLOSED error the SDK's (the connection dropped), not the backend's?"""
    return (
        session_closed(client)
        or error.message == _SDK_CLOSED_MESSAGE
        or error.message.startswith(_SDK_STREAM_LOST_PREFIX)
    )


def forward_agent_capabilities(client: Client) -> None:
    """On 2026-07-28 every request declares the caller's capabilities in `_meta`. The SDK
    client stamps its own; when an agent's request is being served, declare the
    agent's instead, so the backend decides (-32021, which input requests to make)
    for the client that will actually answer."""
    if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return

    def wrap(original: Stamp) -> Stamp:
        def stamp(data: dict[str, Any], opts: Any) -> None:
            original(data, opts)
            relay = CURRENT_RELAY.get()
            retry = relay.input_round if relay is not None else None
            agent_meta = (retry.meta if retry is not None else None) or {}
            if CLIENT_CAPABILITIES_META_KEY in agent_meta:
                meta = data.setdefault("params", {}).setdefault("_meta", {})
                meta[CLIENT_CAPABILITIES_META_KEY] = _without_tasks(
                    agent_meta[CLIENT_CAPABILITIES_META_KEY]
                )

        return stamp

    wrap_request_stamp(client.session, wrap)


def _without_tasks(capabilities: Any) -> Any:
    """The agent's capabilities minus the tasks extension: whether a backend runs a call
    as its own task is the gateway's choice (backend_tasks.py), never the agent's, or
    the agent would get a task id of the backend's that the gateway does not know."""
    extensions = capabilities.get("extensions") if isinstance(capabilities, dict) else None
    if not isinstance(extensions, dict) or TASKS_EXTENSION not in extensions:
        return capabilities
    kept = {k: v for k, v in extensions.items() if k != TASKS_EXTENSION}
    return {**capabilities, "extensions": kept}


async def raw_request(
    client: Client, method: str, params: dict[str, Any], *, declare: str | None = None
) -> dict[str, Any]:
    """Send ``method`` as the session sends any request (its envelope: protocol version,
    capabilities, trace context) and return the raw result, for methods and result
    shapes the SDK's typed client does not know (the tasks methods). ``declare``: on
    2026-07-28, an extension the request's client capabilities declare too. A `tasks/*`
    request names its task in `Mcp-Name` (SEP-2663)."""
    data: dict[str, Any] = {"method": method, "params": params}
    opts: dict[str, Any] = {}
    stamp_request(client.session, data, opts)
    meta = data["params"].get("_meta")
    capabilities = meta.get(CLIENT_CAPABILITIES_META_KEY) if isinstance(meta, dict) else None
    if declare is not None and isinstance(capabilities, dict):
        extensions = {**(capabilities.get("extensions") or {}), declare: {}}
        meta[CLIENT_CAPABILITIES_META_KEY] = {**capabilities, "extensions": extensions}
    if method.startswith("tasks/") and client.protocol_version in MODERN_PROTOCOL_VERSIONS:
        opts.setdefault("headers", {})[MCP_NAME_HEADER] = str(params.get("taskId", ""))
    raw: dict[str, Any] = await client_dispatcher(client.session).send_raw_request(
        method, data["params"], opts
    )
    return raw


def propagate_trace(client: Client) -> None:
    """Carry the traced call's context to the backend (every era, every transport): the
    W3C fields in the request's `_meta` (what an MCP server reads) and, over HTTP, as
    headers. The call pipeline's tracer sets :data:`OUTGOING` for its backend stage;
    while tracing is off it is None and this costs one lookup per request."""

    def wrap(original: Stamp) -> Stamp:
        def stamp(data: dict[str, Any], opts: Any) -> None:
            original(data, opts)
            carrier = OUTGOING.get()
            if carrier is not None:
                params = data.get("params")
                if params is None:
                    params = data["params"] = {}
                meta = params.get("_meta")
                params["_meta"] = {**meta, **carrier} if isinstance(meta, dict) else dict(carrier)
                opts.setdefault("headers", {}).update(carrier)

        return stamp

    wrap_request_stamp(client.session, wrap)


def tolerate_results(client: Client) -> None:
    """Accept a 2026-07-28 result that lacks `resultType` as the complete result it is.

    2026-07-28 requires every result to say `resultType`; backends written before that
    rule (the TypeScript SDK's stateless path, for one) leave it out, and the SDK client
    then refuses the whole result, so a 2025-11-25 agent served over the backend's
    2026-07-28 session lost every tool result. A result without input requests is
    complete: the field is filled in before the SDK validates the result.
    """
    if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return
    dispatcher = client_dispatcher(client.session)
    original = dispatcher.send_raw_request

    async def send_raw_request(method: str, params: Any, opts: Any = None) -> Any:
        raw = await original(method, params, opts)
        if isinstance(raw, dict) and "resultType" not in raw and "inputRequests" not in raw:
            raw["resultType"] = "complete"
        return raw

    dispatcher.send_raw_request = send_raw_request


def agent_input_round(client: Client) -> Any:
    """The agent's 2026-07-28 multi-round state, when this request should pass
    `input_required` results through rather than answer them here."""
    relay = CURRENT_RELAY.get()
    retry = relay.input_round if relay is not None else None
    if retry is None or client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return None
    return retry


async def optional_listing(listing: Any, tolerate: bool) -> list[Any]:
    """A listing's items; with ``tolerate``, a backend without that list gives none."""
    try:
        return list(await listing)
    except MCPError as exc:
        if tolerate and exc.error.code == METHOD_NOT_FOUND:  # method not found: no such list
            return []
        raise


async def all_pages(method: Any, attribute: str, max_pages: int = 1000) -> list[Any]:
    """Every page of a paginated listing, bounded so a looping cursor cannot hang us."""
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(max_pages):
        page = await method(cursor=cursor)
        items.extend(getattr(page, attribute))
        cursor = page.next_cursor
        if not cursor:
            return items
    raise BackendError(f"listing {attribute} did not end after {max_pages} pages")


async def fetch_catalog(client: Client) -> Catalog:
    """Everything the server lists (every page of each list it offers)."""
    caps = client.server_capabilities
    # A client pinned to 2026-07-28 skips `server/discover` and knows no
    # capabilities: then ask for every list and take "method not found" as none.
    unknown = caps == types.ServerCapabilities()
    catalog = Catalog()
    if caps.tools is not None or unknown:
        catalog.tools = await optional_listing(all_pages(client.list_tools, "tools"), unknown)
    if caps.resources is not None or unknown:
        catalog.resources = await optional_listing(
            all_pages(client.list_resources, "resources"), unknown
        )
        # Templates are the optional half of `resources`: servers that offer
        # resources but answer "method not found" here are common (none, then).
        catalog.resource_templates = await optional_listing(
            all_pages(client.list_resource_templates, "resource_templates"), True
        )
    if caps.prompts is not None or unknown:
        catalog.prompts = await optional_listing(all_pages(client.list_prompts, "prompts"), unknown)
    return catalog


async def probe(client: Client) -> Any:
    """A round trip that answers on either era: 2026-07-28 has no `ping` (servers answer
    -32601), so ask `server/discover` there."""
    if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return await client.session.send_discover(client.protocol_version)
    return await client.send_ping()
