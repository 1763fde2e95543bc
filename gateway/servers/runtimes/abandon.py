"""A request the gateway abandons loses its HTTP connection, in both protocol eras.

The SDK client abandons a request when its caller is cancelled (the agent went away
or cancelled) or times out. On a 2026-07-28 session it aborts the request's POST,
which closes its connection: that is the cancel signal there. On a 2025-11-25
session it only POSTs `notifications/cancelled` and goes on reading the first POST
until the server answers. Stateless servers have no session to hear that
notification, and JSON-response servers may not act on it: they notice a cancel
only by the request's connection closing. So on the gateway's backend sessions an
abandoned request's POST is aborted in both eras, and in 2025-11-25 the notification
still goes out (a server with a session acts on it).

The SDK keeps each POST's abort scope in its transport (`_in_flight_posts`, what it
uses for 2026-07-28); the transport is a local of the `streamable_http_client`
generator, so it is found there (gateway/mcp/sdk_compat.py). Should a later SDK
rename either, the hook is not installed and calls behave as the SDK's own
(tests/unit/test_sdk_compat.py and tests/integration/mcp/test_cancellation.py fail
then).
"""

from __future__ import annotations

import logging
from typing import Any

from mcp.shared.jsonrpc_dispatcher import cancelled_request_id_from_params
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCNotification

from gateway.mcp.sdk_compat import (
    cancellation_hook,
    http_transport,
    in_flight_posts,
    set_cancellation_hook,
)

log = logging.getLogger("gateway.servers")


def abort_abandoned_posts(opened: Any) -> bool:
    """Make the transport of an entered ``streamable_http_client(...)`` context abort
    the POST of every request it is told to cancel; False if it could not be found."""
    transport = http_transport(opened)
    posts = in_flight_posts(transport) if transport is not None else None
    consume = cancellation_hook(transport) if transport is not None else None
    if transport is None or posts is None or consume is None:
        log.warning("cannot hook the SDK's HTTP transport: 2025 cancels keep their connection")
        return False

    def consume_cancellation(session_message: SessionMessage) -> bool:
        message = session_message.message
        if isinstance(message, JSONRPCNotification) and message.method == "notifications/cancelled":
            request_id = cancelled_request_id_from_params(message.params)
            post = posts.get(request_id) if request_id is not None else None
            if post is not None and not post.modern:
                post.scope.cancel()  # closes the connection; the notification goes out below
        return bool(consume(session_message))

    # Per instance: the SDK's own transports elsewhere (agents, the stdio bridge) keep
    # its behaviour.
    set_cancellation_hook(transport, consume_cancellation)
    return True
