"""What each matrix column means for each kind of backend, and how it is checked.

`SpecDialect` drives the feature servers of tests/fixtures/interop (one per SDK and
version, all exposing spec.json under the same names). The npm reference servers
have their own tools: `EverythingDialect`, `MemoryDialect` and `FilesystemDialect` map
the columns onto them and say n/a (with the reason) where they have nothing to offer.

A check returns None when the cell passes and the reason when it fails; it raises
NotApplicable when the cell cannot apply (to this backend or with this client).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from gateway.servers.mcp.uris import wrap
from tests.interop.agents import ROOT_URI, SAMPLED, Agent, NotApplicable

SPEC: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "interop" / "spec.json").read_text()
)
SPEC_TOOLS = [
    "echo",
    "image",
    "audio",
    "embedded_resource",
    "resource_link",
    "mixed",
    "structured",
    "fail",
    "progress",
    "log",
    "sample",
    "elicit",
    "roots",
    "touch",
    "elicit_url",
    "slow",
    "cancelled",
    "announce",
]
ITEMS = [f"item_{i:02d}" for i in range(SPEC["items"])]
# The matrix columns, in order.
FEATURES = [
    "tools",
    "pages",
    "echo",
    "image",
    "audio",
    "embedded",
    "link",
    "mixed",
    "structured",
    "error",
    "progress",
    "log",
    "sampling",
    "elicit",
    "elicit_url",
    "roots",
    "read",
    "subscribe",
    "prompt",
    "complete",
    "cancel",
    "list_changed",
]
# Features only the `mcp` SDK agent drives (the other clients cover the tool cells).
TOOL_FEATURES = ["tools", "echo", "image", "structured", "error"]


@dataclass(frozen=True)
class Naming:
    """How a backend's names look where the agent is connected."""

    server: str | None = None  # set on `/mcp`: `{server}__tool`, `mcpgw://server/...` URIs

    def tool(self, name: str) -> str:
        return f"{self.server}__{name}" if self.server else name

    def uri(self, uri: str) -> str:
        return wrap(self.server, uri) if self.server else uri


@dataclass
class Ctx:
    """One row in progress: the connected agent, the naming, what was learnt so far."""

    agent: Agent
    names: Naming
    direct: bool
    memo: dict[str, Any] = field(default_factory=dict)

    async def listing(self) -> tuple[list[dict[str, Any]], int]:
        if "tools" not in self.memo:
            for attempt in range(3):
                try:
                    self.memo["tools"] = await self.agent.list_tools()
                    break
                except Exception as exc:
                    # Backends of other rows register on the same gateway meanwhile: its
                    # `/mcp` list may change between two pages, and the gateway then
                    # asks for a new listing (as a real client would do, list again).
                    if "list again" not in str(exc) or attempt == 2:
                        raise
        return self.memo["tools"]  # type: ignore[no-any-return]

    async def call(self, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.agent.call(self.names.tool(tool), arguments or {})


Check = Callable[[Ctx], Awaitable[str | None]]


def texts(result: dict[str, Any]) -> str:
    return "\n".join(c.get("text", "") for c in result.get("content", []) if c["type"] == "text")


def kinds(result: dict[str, Any]) -> list[str]:
    return [c["type"] for c in result.get("content", [])]


def ok(result: dict[str, Any]) -> str | None:
    """None for a successful result, else why not."""
    if result.get("isError"):
        return f"isError: {texts(result)[:200]}"
    return None


def expect(condition: bool, why: str, result: Any = None) -> str | None:
    if condition:
        return None
    shown = json.dumps(result)[:300] if result is not None else ""
    return f"{why}{': ' + shown if shown else ''}"


def first(result: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in result.get("content", []) if c["type"] == kind), None)


class Dialect:
    """The checks of one kind of backend; `unsupported` lists its n/a columns."""

    family = "base"
    unsupported: dict[str, str] = {}  # noqa: RUF012 - read-only per class

    def check(self, feature: str) -> Check:
        return getattr(self, f"f_{feature}")  # type: ignore[no-any-return]

    async def f_tools(self, ctx: Ctx) -> str | None:
        raise NotApplicable("no check")

    async def f_pages(self, ctx: Ctx) -> str | None:
        raise NotApplicable(self.unsupported.get("pages", "not paginated"))


class SpecDialect(Dialect):
    """The interop feature servers (tests/fixtures/interop, spec.json)."""

    family = "spec"

    def __init__(self, unsupported: dict[str, str] | None = None) -> None:
        self.unsupported = unsupported or {}

    async def f_tools(self, ctx: Ctx) -> str | None:
        tools, _ = await ctx.listing()
        named = {t["name"]: t for t in tools}
        missing = [n for n in SPEC_TOOLS if ctx.names.tool(n) not in named]
        if missing:
            return f"missing tools {missing} (of {len(tools)} listed)"
        schema = named[ctx.names.tool("structured")].get("outputSchema") or {}
        return expect(
            "sum" in schema.get("properties", {}), "no outputSchema on structured", schema
        )

    async def f_pages(self, ctx: Ctx) -> str | None:
        tools, pages = await ctx.listing()
        listed = {t["name"] for t in tools}
        missing = [i for i in ITEMS if ctx.names.tool(i) not in listed]
        if missing:
            return f"{len(missing)} of {len(ITEMS)} paged tools missing ({pages} pages read)"
        if ctx.direct and pages < 2:
            return f"the backend answered tools/list in one page (page size {SPEC['page_size']})"
        return None

    async def f_echo(self, ctx: Ctx) -> str | None:
        said = "héllo wörld ✓"
        result = await ctx.call("echo", {"text": said})
        return ok(result) or expect(texts(result) == said, "echo differs", result)

    async def f_image(self, ctx: Ctx) -> str | None:
        result = await ctx.call("image")
        image = first(result, "image") or {}
        good = image.get("data") == SPEC["png"] and image.get("mimeType") == "image/png"
        return ok(result) or expect(good, "no PNG image content", result)

    async def f_audio(self, ctx: Ctx) -> str | None:
        result = await ctx.call("audio")
        audio = first(result, "audio") or {}
        good = audio.get("data") == SPEC["wav"] and audio.get("mimeType") == "audio/wav"
        return ok(result) or expect(good, "no WAV audio content", result)

    def _embedded_ok(self, ctx: Ctx, result: dict[str, Any]) -> bool:
        resource = (first(result, "resource") or {}).get("resource") or {}
        uris = {SPEC["embedded_uri"], ctx.names.uri(SPEC["embedded_uri"])}
        return resource.get("uri") in uris and resource.get("text") == SPEC["embedded_text"]

    def _link_ok(self, ctx: Ctx, result: dict[str, Any]) -> bool:
        link = first(result, "resource_link") or {}
        return link.get("uri") in {SPEC["static_uri"], ctx.names.uri(SPEC["static_uri"])}

    async def f_embedded(self, ctx: Ctx) -> str | None:
        result = await ctx.call("embedded_resource")
        return ok(result) or expect(self._embedded_ok(ctx, result), "no embedded resource", result)

    async def f_link(self, ctx: Ctx) -> str | None:
        result = await ctx.call("resource_link")
        return ok(result) or expect(self._link_ok(ctx, result), "no resource link", result)

    async def f_mixed(self, ctx: Ctx) -> str | None:
        result = await ctx.call("mixed")
        want = ["text", "image", "audio", "resource", "resource_link"]
        good = kinds(result) == want and texts(result) == SPEC["mixed_text"]
        good = good and self._embedded_ok(ctx, result) and self._link_ok(ctx, result)
        return ok(result) or expect(good, f"content is not {want}", result)

    async def f_structured(self, ctx: Ctx) -> str | None:
        result = await ctx.call("structured", {"a": 2, "b": 3})
        got = result.get("structuredContent")
        return ok(result) or expect(
            got == {"sum": 5}, "structuredContent is not {'sum': 5}", result
        )

    async def f_error(self, ctx: Ctx) -> str | None:
        result = await ctx.call("fail")
        good = result.get("isError") is True and SPEC["fail_text"] in texts(result)
        return expect(good, "not an isError result with the tool's message", result)

    async def f_progress(self, ctx: Ctx) -> str | None:
        result, seen = await ctx.agent.call_with_progress(ctx.names.tool("progress"), {})
        steps = [float(s) for s in range(1, SPEC["progress_steps"] + 1)]
        return ok(result) or expect(seen == steps, f"progress seen {seen}, sent {steps}")

    async def f_log(self, ctx: Ctx) -> str | None:
        result, logs = await ctx.agent.call_with_logs(ctx.names.tool("log"), {})
        got = any(SPEC["log_text"] in json.dumps(entry) for entry in logs)
        return ok(result) or expect(got, f"no log message arrived (got {logs[:3]})")

    async def f_sampling(self, ctx: Ctx) -> str | None:
        ctx.agent.need("sampling")
        result = await ctx.call("sample", {"prompt": "ping"})
        return ok(result) or expect(texts(result) == f"{SAMPLED}ping", "wrong answer", result)

    async def f_elicit(self, ctx: Ctx) -> str | None:
        ctx.agent.need("elicitation")
        result = await ctx.call("elicit")
        # The agent answers each field's default: a schema that lost them answers otherwise.
        want = json.dumps({"color": "green", "count": 3, "name": "ada"}, sort_keys=True)
        return ok(result) or expect(texts(result) == want, f"expected {want}", result)

    async def f_elicit_url(self, ctx: Ctx) -> str | None:
        ctx.agent.need("elicitation")
        result = await ctx.call("elicit_url")
        sent = ctx.agent.urls[-1:] == [SPEC["elicit_url"]]
        return ok(result) or expect(
            texts(result) == "action=accept" and sent, f"agent sent to {ctx.agent.urls}", result
        )

    async def f_roots(self, ctx: Ctx) -> str | None:
        ctx.agent.need("roots")
        result = await ctx.call("roots")
        return ok(result) or expect(ROOT_URI in texts(result), "agent's root not listed", result)

    async def f_cancel(self, ctx: Ctx) -> str | None:
        ctx.agent.need("cancellation")
        await ctx.agent.call_and_cancel(ctx.names.tool("slow"), {}, after=1.0)
        state = ""
        for _ in range(50):  # the cancellation reaches the backend a little later
            state = texts(await ctx.call("cancelled"))
            if state != "running":
                break
            await anyio.sleep(0.1)
        return expect(state == "cancelled", f"the backend's slow call is {state!r} after cancel")

    async def f_list_changed(self, ctx: Ctx) -> str | None:
        ctx.agent.need("list_changed")
        seen = await ctx.agent.watch_tools(lambda: ctx.call("announce"), wait=5)
        return expect(seen, "no tools list_changed within 5 s of announce")

    async def f_read(self, ctx: Ctx) -> str | None:
        ctx.agent.need("resources")
        read = await ctx.agent.read(ctx.names.uri(SPEC["static_uri"]))
        contents = read.get("contents") or [{}]
        return expect(contents[0].get("text") == SPEC["static_text"], "wrong contents", read)

    async def f_subscribe(self, ctx: Ctx) -> str | None:
        ctx.agent.need("subscriptions")
        uri = ctx.names.uri(SPEC["watched_uri"])
        seen = await ctx.agent.watch(uri, lambda: ctx.call("touch"), wait=5)
        return expect(seen, f"no update for {uri} within 5 s of touch")

    async def f_prompt(self, ctx: Ctx) -> str | None:
        ctx.agent.need("prompts")
        got = await ctx.agent.prompt(ctx.names.tool(SPEC["prompt"]), {"name": "ada"})
        message = (got.get("messages") or [{}])[0].get("content", {})
        return expect(message.get("text") == "Hello, ada!", "wrong prompt", got)

    async def f_complete(self, ctx: Ctx) -> str | None:
        ctx.agent.need("completions")
        prompt = ctx.names.tool(SPEC["prompt"])
        values = await ctx.agent.complete(prompt, SPEC["prompt_argument"], "al")
        return expect(values == ["alice", "albert"], f"completed {values}")


NO_TOOL = "has no tool for this"


class EverythingDialect(Dialect):
    """`@modelcontextprotocol/server-everything` (TypeScript SDK), its own tool names."""

    family = "everything"
    unsupported = {  # noqa: RUF012
        "pages": "server-everything lists its tools in one page",
        "audio": f"server-everything {NO_TOOL}",
        "log": "server-everything logs on a 5 s timer (toggle-simulated-logging), not per call",
        "cancel": "server-everything cannot tell whether a call was cancelled",
        "list_changed": "server-everything has no tool that changes its lists",
    }

    async def f_tools(self, ctx: Ctx) -> str | None:
        tools, _ = await ctx.listing()
        names = {t["name"] for t in tools}
        want = ["echo", "get-sum", "get-tiny-image", "get-structured-content"]
        missing = [n for n in want if ctx.names.tool(n) not in names]
        return expect(not missing, f"missing tools {missing}")

    async def f_echo(self, ctx: Ctx) -> str | None:
        result = await ctx.call("echo", {"message": "héllo ✓"})
        return ok(result) or expect("héllo ✓" in texts(result), "echo differs", result)

    async def f_image(self, ctx: Ctx) -> str | None:
        result = await ctx.call("get-tiny-image")
        image = first(result, "image") or {}
        good = image.get("mimeType") == "image/png" and bool(image.get("data"))
        return ok(result) or expect(good, "no PNG", result)

    async def f_embedded(self, ctx: Ctx) -> str | None:
        result = await ctx.call("get-resource-reference", {"resourceType": "Text", "resourceId": 1})
        return ok(result) or expect(first(result, "resource") is not None, "no resource", result)

    async def f_link(self, ctx: Ctx) -> str | None:
        result = await ctx.call("get-resource-links", {"count": 1})
        good = first(result, "resource_link") is not None
        return ok(result) or expect(good, "no resource_link", result)

    async def f_mixed(self, ctx: Ctx) -> str | None:
        result = await ctx.call("get-resource-reference", {"resourceType": "Blob", "resourceId": 2})
        good = {"text", "resource"} <= set(kinds(result))
        return ok(result) or expect(good, "not text + resource", result)

    async def f_structured(self, ctx: Ctx) -> str | None:
        result = await ctx.call("get-structured-content", {"location": "Chicago"})
        got = result.get("structuredContent")
        return ok(result) or expect(isinstance(got, dict) and bool(got), "no structured", result)

    async def f_error(self, ctx: Ctx) -> str | None:
        result = await ctx.call("get-sum", {"a": "not a number", "b": 1})
        return expect(
            result.get("isError") is True, "invalid arguments were not a tool error", result
        )

    async def f_progress(self, ctx: Ctx) -> str | None:
        arguments = {"duration": 0.3, "steps": 3}
        tool = ctx.names.tool("trigger-long-running-operation")
        result, seen = await ctx.agent.call_with_progress(tool, arguments)
        return ok(result) or expect(len(seen) >= 3, f"progress seen {seen}")

    async def f_sampling(self, ctx: Ctx) -> str | None:
        ctx.agent.need("sampling")
        result = await ctx.call("trigger-sampling-request", {"prompt": "ping", "maxTokens": 10})
        return ok(result) or expect(f"{SAMPLED}" in texts(result), "no sampled answer", result)

    async def f_elicit(self, ctx: Ctx) -> str | None:
        ctx.agent.need("elicitation")
        result = await ctx.call("trigger-elicitation-request")
        return ok(result) or expect("provided" in texts(result), "not accepted", result)

    async def f_elicit_url(self, ctx: Ctx) -> str | None:
        ctx.agent.need("elicitation")
        result = await ctx.call("trigger-url-elicitation", {"url": SPEC["elicit_url"]})
        sent = ctx.agent.urls[-1:] == [SPEC["elicit_url"]]
        good = '"action": "accept"' in texts(result) and sent
        return ok(result) or expect(good, f"not accepted (agent sent to {ctx.agent.urls})", result)

    async def f_roots(self, ctx: Ctx) -> str | None:
        ctx.agent.need("roots")
        result = await ctx.call("get-roots-list")
        return ok(result) or expect(ROOT_URI in texts(result), "agent's root not listed", result)

    async def f_read(self, ctx: Ctx) -> str | None:
        ctx.agent.need("resources")
        uri = "demo://resource/static/document/architecture.md"
        read = await ctx.agent.read(ctx.names.uri(uri))
        contents = read.get("contents") or [{}]
        return expect(bool(contents[0].get("text")), "empty contents", read)

    async def f_subscribe(self, ctx: Ctx) -> str | None:
        ctx.agent.need("subscriptions")
        uri = ctx.names.uri("demo://resource/dynamic/text/1")

        async def start_updates() -> None:
            # A toggle: shared by every agent on the gateway's backend session.
            if "Stopped" in texts(await ctx.call("toggle-subscriber-updates")):
                await ctx.call("toggle-subscriber-updates")

        seen = await ctx.agent.watch(uri, start_updates, wait=7)
        return expect(seen, f"no update for {uri} within 7 s")

    async def f_prompt(self, ctx: Ctx) -> str | None:
        ctx.agent.need("prompts")
        got = await ctx.agent.prompt(ctx.names.tool("args-prompt"), {"city": "Paris"})
        text = json.dumps(got.get("messages"))
        return expect("Paris" in text, "wrong prompt", got)

    async def f_complete(self, ctx: Ctx) -> str | None:
        ctx.agent.need("completions")
        values = await ctx.agent.complete(ctx.names.tool("completable-prompt"), "department", "E")
        return expect("Engineering" in values, f"completed {values}")


class MemoryDialect(Dialect):
    """`@modelcontextprotocol/server-memory` over stdio: a knowledge graph."""

    family = "memory"

    def __init__(self) -> None:
        reason = f"server-memory {NO_TOOL}"
        self.unsupported = {f: reason for f in FEATURES if not hasattr(self, f"f_{f}")}
        self.unsupported["pages"] = "server-memory lists its tools in one page"

    async def f_tools(self, ctx: Ctx) -> str | None:
        tools, _ = await ctx.listing()
        names = {t["name"] for t in tools}
        missing = [n for n in ("create_entities", "search_nodes") if ctx.names.tool(n) not in names]
        return expect(not missing, f"missing tools {missing}")

    async def f_echo(self, ctx: Ctx) -> str | None:
        name = f"interop-{uuid.uuid4().hex[:8]}"
        entity = {"name": name, "entityType": "test", "observations": ["héllo ✓"]}
        made = await ctx.call("create_entities", {"entities": [entity]})
        found = await ctx.call("search_nodes", {"query": name})
        return ok(made) or ok(found) or expect("héllo ✓" in texts(found), "not found", found)

    async def f_structured(self, ctx: Ctx) -> str | None:
        result = await ctx.call("search_nodes", {"query": "interop-"})
        got = result.get("structuredContent") or {}
        return ok(result) or expect("entities" in got, "no structured entities", result)

    async def f_error(self, ctx: Ctx) -> str | None:
        result = await ctx.call("open_nodes", {"names": "not a list"})
        return expect(
            result.get("isError") is True, "invalid arguments were not a tool error", result
        )


class FilesystemDialect(Dialect):
    """`@modelcontextprotocol/server-filesystem` over stdio, in its allowed directory."""

    family = "filesystem"

    def __init__(self) -> None:
        reason = f"server-filesystem {NO_TOOL}"
        self.unsupported = {f: reason for f in FEATURES if not hasattr(self, f"f_{f}")}
        self.unsupported["pages"] = "server-filesystem lists its tools in one page"
        self.unsupported["roots"] = (
            "server-filesystem takes the client's roots as its allowed directories for the "
            "session; no tool reports them"
        )

    async def _allowed(self, ctx: Ctx) -> str:
        if "dir" not in ctx.memo:
            listed = texts(await ctx.call("list_allowed_directories"))
            ctx.memo["dir"] = listed.splitlines()[-1].strip()
        return str(ctx.memo["dir"])

    async def f_tools(self, ctx: Ctx) -> str | None:
        tools, _ = await ctx.listing()
        names = {t["name"] for t in tools}
        missing = [n for n in ("read_text_file", "write_file") if ctx.names.tool(n) not in names]
        return expect(not missing, f"missing tools {missing}")

    async def f_echo(self, ctx: Ctx) -> str | None:
        path = f"{await self._allowed(ctx)}/interop-{uuid.uuid4().hex[:8]}.txt"
        wrote = await ctx.call("write_file", {"path": path, "content": "héllo ✓"})
        read = await ctx.call("read_text_file", {"path": path})
        return ok(wrote) or ok(read) or expect(texts(read) == "héllo ✓", "read back differs", read)

    async def f_structured(self, ctx: Ctx) -> str | None:
        result = await ctx.call("list_directory", {"path": await self._allowed(ctx)})
        got = result.get("structuredContent") or {}
        return ok(result) or expect(bool(got), "no structuredContent", result)

    async def f_error(self, ctx: Ctx) -> str | None:
        path = f"{await self._allowed(ctx)}/does-not-exist-{uuid.uuid4().hex}"
        result = await ctx.call("read_text_file", {"path": path})
        return expect(result.get("isError") is True, "a missing file was not a tool error", result)
