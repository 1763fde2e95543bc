"""The backend stage of a runtime call (REST `tools/execute`, the `/mcp` SDK path,
`EXECUTE_TOOL`, jobs): the call made on the server's runtime within its timeout, a
failing or slow backend as a tool error, the server's secrets masked in the result and
its result transforms applied (transforming.py).

The fast path has its own backend stage (raw JSON-RPC forwarded, mcp/fastpath.py); both
run inside the same pipeline (pipeline.py).
"""

from __future__ import annotations

from mcp import types

from gateway.mcp.results import tool_error
from gateway.servers.pipeline import Call, CallContext, CallResult
from gateway.servers.resilience import retry
from gateway.servers.runtimes.base import (
    BackendError,
    BackendRequestError,
    BackendTimeout,
    BackendUnavailable,
    ReplicaFailed,
)
from gateway.servers.runtimes.relay import CURRENT_RELAY


async def reach(call: Call, ctx: CallContext, timeout: float) -> CallResult:
    """Call ``call``'s tool on its runtime (or run ``ctx.exchange``) within ``timeout``
    seconds; sets the call's outcome (``timeout`` for a backend out of time).

    Raises BackendRequestError when the backend answered with a JSON-RPC error."""
    runtime = call.target.runtime
    result: CallResult
    try:
        if ctx.exchange is not None:
            result = await ctx.exchange()
        else:
            token = CURRENT_RELAY.set(ctx.relay) if ctx.relay is not None else None
            try:
                result = await retry.call_tool(runtime, call, timeout)
            finally:
                if token is not None:
                    CURRENT_RELAY.reset(token)
    except BackendRequestError as exc:
        call.outcome = "error"
        if retry.http_failure(exc):
            call.fault = "server"
        raise
    except BackendError as exc:  # unreachable, failing or slow: the agent reads why
        call.outcome = "timeout" if isinstance(exc, BackendTimeout) else "error"
        if isinstance(exc, ReplicaFailed):
            call.fault = "replica"  # one of its replicas, now out (runtimes/replicas.py)
        else:
            call.fault = "server" if isinstance(exc, BackendUnavailable) else "call"
        call.error = runtime.spec.secrets.text(str(exc))
        return tool_error(call.error)
    # An input_required round has no isError: the call goes on.
    call.outcome = "tool_error" if getattr(result, "is_error", False) else "ok"
    secrets = runtime.spec.secrets
    transform = call.target.transform
    results = transform.results if transform is not None else None
    if results is not None and not isinstance(result, types.CallToolResult):
        results = None  # an input_required round: nothing to filter yet
    if secrets or results is not None:
        mode = "json" if results is not None else "python"  # paths walk plain JSON
        data = result.model_dump(mode=mode, by_alias=True, exclude_none=True)
        if secrets:
            data = secrets.structure(data)
        if results is not None:  # the server's transforms (transforming.py)
            results.apply(data)
        result = type(result).model_validate(data)
    call.result = result
    return result
