"""The ``servers.generate`` job kind (what a worker runs, with its settings): read or
fetch the API description (or have the model write one from a documentation page),
list the tools it yields, optionally test-call the read-only ones, and end in
``review`` with the draft. Nothing is registered here: a person approves the draft
first (service.py)."""

from __future__ import annotations

import re
from typing import Any

from gateway.crypto import secret_box
from gateway.errors import InvalidInput
from gateway.jobs.kinds import JobContext, JobKind, NeedsReview
from gateway.llm.client import ModelClient, require_model
from gateway.llm.tokens import TokenBatcher
from gateway.observability.masking import MASK
from gateway.pinned_http import ResponseTooLarge, fetch_limited
from gateway.servers.generate.docs import openapi_from_docs, page_text
from gateway.servers.generate.document import (
    document_base_url,
    read_document,
    security_schemes,
    too_large,
)
from gateway.servers.generate.schemas import KIND, GenerateInput, summarize
from gateway.servers.runtimes.base import BackendError
from gateway.servers.runtimes.openapi import api_client, build_openapi_server, describe_tools

ACCEPT_SPEC = "application/json, application/yaml, text/yaml, */*;q=0.5"
ACCEPT_PAGE = "text/html, text/markdown, text/plain, */*;q=0.5"
# How much of a test call's answer a draft keeps.
TEST_OUTPUT_CHARS = 2000


class FetchFailed(InvalidInput):
    """The document's URL could not be read (refused by the SSRF guard, unreachable,
    an error status)."""

    code = "fetch_failed"


async def _generate(ctx: JobContext, data: dict[str, Any]) -> NeedsReview:
    return NeedsReview(await Generation(ctx, GenerateInput(**data)).run())


SERVER_KIND = JobKind(
    KIND,
    _generate,
    GenerateInput,
    queue="generate",
    soft_time_limit=600,
    hard_time_limit=660,
    summarize=summarize,
)


class Generation:
    """One run of the generator."""

    def __init__(self, ctx: JobContext, data: GenerateInput) -> None:
        self.settings = ctx.settings
        self.ctx = ctx
        self.data = data
        self.limit = ctx.settings.generate_max_document_bytes
        self.fetched_from: str | None = None
        self.source: dict[str, Any] = {"from": data.source}

    async def run(self) -> dict[str, Any]:
        """The draft: server, source (with the document), tools, security, warnings."""
        await self.ctx.progress(0.05, "reading the API description")
        document = await self._document()
        await self.ctx.progress(0.6, "listing the operations")
        tools = await describe_tools(document)
        info = document.get("info") or {}
        base_url = self.data.base_url or document_base_url(document, self.fetched_from)
        warnings = []
        if base_url is None:
            warnings.append("the document names no absolute server URL: give base_url")
        await self.ctx.log(f"{len(tools)} operations became tools")
        if self.data.test_calls and base_url:
            await self._test_calls(document, base_url, tools)
        await self.ctx.progress(1.0, "draft ready for review")
        return {
            "draft": True,
            "server": {
                "name": self.data.name or server_name(str(info.get("title") or "api")),
                "type": "generated",
                "base_url": base_url,
                "description": _description(info),
            },
            "source": {**self.source, "document": document},
            "tools": tools,
            "security": security_schemes(document),
            "secret_headers": self.data.secret_header_names,
            "warnings": warnings,
        }

    async def _fetch(self, url: str, accept: str) -> tuple[str, str]:
        try:
            body, content_type, final = await fetch_limited(
                url, allow_private=self.settings.allow_private_urls, max_bytes=self.limit,
                accept=accept,
            )  # fmt: skip
        except ResponseTooLarge:
            raise too_large(self.limit) from None
        except (BackendError, ValueError, OSError) as exc:
            raise FetchFailed(f"cannot fetch {url}: {exc}") from None
        except Exception as exc:  # httpx's transport errors
            raise FetchFailed(f"cannot fetch {url}: {type(exc).__name__}") from None
        self.fetched_from = final
        await self.ctx.log(f"fetched {len(body)} bytes from {url}")
        return body.decode("utf-8", "replace"), content_type

    async def _document(self) -> dict[str, Any]:
        data = self.data
        if data.source == "openapi":
            assert data.document is not None
            return read_document(data.document, self.limit)
        assert data.url is not None
        self.source["url"] = data.url
        if data.source == "url":
            text, _ = await self._fetch(data.url, ACCEPT_SPEC)
            return read_document(text, self.limit)
        return await self._from_docs(data.url)

    async def _from_docs(self, url: str) -> dict[str, Any]:
        config = require_model(self.settings, "generating from a documentation page")
        body, content_type = await self._fetch(url, ACCEPT_PAGE)
        text = page_text(body, content_type)
        await self.ctx.progress(0.2, "the model is writing an OpenAPI document")
        model = ModelClient(config)
        tokens = TokenBatcher(self.ctx.emit)
        try:
            document, prompt = await openapi_from_docs(
                model, text, url, limit=self.limit, feedback=self.data.feedback,
                previous=self.data.previous_document, on_token=tokens,
            )  # fmt: skip
        finally:
            await tokens.flush()
            await model.close()
        self.source.update(prompt=prompt, model=config.model)
        return document

    async def _test_calls(
        self, document: dict[str, Any], base_url: str, tools: list[dict[str, Any]]
    ) -> None:
        """Call each read-only tool the reviewer's arguments allow; results as artifacts."""
        from fastmcp import Client

        chosen = [t for t in tools if t["read_only"] and _callable(t, self.data.test_arguments)]
        if not chosen:
            await self.ctx.log("no read-only tool can be test-called without arguments")
            return
        # The secret headers were sealed by the gateway: the worker shares its key.
        secrets = secret_box(self.settings).open(self.data.secrets_sealed).get("headers", {})
        client = api_client(base_url, secrets, allow_private_urls=self.settings.allow_private_urls)
        server = build_openapi_server(document, name="draft", client=client)
        await self.ctx.progress(0.8, f"test-calling {len(chosen)} read-only tools")
        async with client, Client(server) as mcp:
            for tool in chosen:
                arguments = self.data.test_arguments.get(tool["name"], {})
                result = await mcp.call_tool_mcp(tool["name"], arguments)
                text = _mask(_text(result.content), secrets.values())
                ok = not result.isError
                tool["test"] = {"ok": ok}
                await self.ctx.emit(
                    "artifact",
                    {
                        "type": "test_call",
                        "tool": tool["name"],
                        "arguments": arguments,
                        "ok": ok,
                        "output": text[:TEST_OUTPUT_CHARS],
                    },
                )


def _callable(tool: dict[str, Any], given: dict[str, dict[str, Any]]) -> bool:
    required = (tool.get("input_schema") or {}).get("required") or []
    return tool["name"] in given or not required


def _text(content: list[Any]) -> str:
    return "\n".join(getattr(block, "text", "") or "" for block in content)


def _mask(text: str, secrets: Any) -> str:
    for value in secrets:
        if value:
            text = text.replace(value, MASK)
    return text


def server_name(title: str) -> str:
    """A server name from an API's title: ``Swagger Petstore - OpenAPI 3.0`` →
    ``swagger-petstore-openapi-3-0``."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:50].strip("-")
    return slug or "api"


def _description(info: dict[str, Any]) -> str:
    text = str(info.get("title") or "")
    if info.get("description"):
        text = f"{text}: {str(info['description']).strip()}" if text else str(info["description"])
    return text[:4000]
