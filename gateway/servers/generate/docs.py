"""The model path: a documentation page (HTML or Markdown) → an OpenAPI document.

The page is reduced to its text, the versioned prompt ``openapi_from_docs`` asks the
model for the document through one tool call (``submit_openapi``), and the answer is
read like any uploaded document. An unreadable answer is sent back to the model with
the reason, once. A reviewer's feedback (and the rejected document) go into the
prompt when a draft is made again.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

from gateway.llm.client import Completion, ModelClient, TokenSink
from gateway.llm.prompts import load_prompt
from gateway.servers.generate.document import BadDocument, read_document

PROMPT = "openapi_from_docs"
# The part of a page the model reads (characters of text).
MAX_PAGE_CHARS = 60_000
ROUNDS = 2
SUBMIT = {
    "type": "function",
    "function": {
        "name": "submit_openapi",
        "description": "Submit the OpenAPI 3.0 document that describes the documented API.",
        "parameters": {
            "type": "object",
            "properties": {
                "document": {"type": "string", "description": "The whole document, JSON."}
            },
            "required": ["document"],
        },
    },
}
_FENCE = re.compile(r"```(?:json|yaml|yml)?\s*\n(.*?)```", re.S)
_SKIP = frozenset({"script", "style", "nav", "footer", "header", "svg", "noscript"})


class _Text(HTMLParser):
    """The readable text of an HTML page (code kept, chrome dropped)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in _SKIP:
            self.skipping += 1
        elif tag in ("p", "div", "br", "li", "tr", "pre", "h1", "h2", "h3", "h4", "section"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP and self.skipping:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def page_text(body: str, content_type: str) -> str:
    """The text of a page: Markdown and plain text as they are, HTML without markup."""
    looks_html = "html" in content_type or body.lstrip()[:15].lower().startswith(
        ("<!doctype", "<html")
    )
    if looks_html:
        parser = _Text()
        parser.feed(body)
        body = "".join(parser.parts)
    text = re.sub(r"\n\s*\n+", "\n\n", body).strip()
    return text[:MAX_PAGE_CHARS]


def _answer(completion: Completion) -> Any:
    """The document the model gave: the ``submit_openapi`` argument, else a fenced block."""
    for call in completion.tool_calls:
        if call.name == SUBMIT["function"]["name"]:  # type: ignore[index]
            document = call.parsed_arguments().get("document")
            if document is not None:
                return document
    match = _FENCE.search(completion.content)
    if match is not None:
        return match.group(1)
    raise BadDocument("the model answered without an OpenAPI document")


async def openapi_from_docs(
    model: ModelClient,
    text: str,
    source_url: str,
    *,
    limit: int,
    feedback: str | None = None,
    previous: dict[str, Any] | None = None,
    on_token: TokenSink | None = None,
) -> tuple[dict[str, Any], str]:
    """The OpenAPI document the model writes from a page's ``text``, and the prompt's
    ``name@version``. :class:`BadDocument` when it does not write a readable one."""
    prompt = load_prompt(PROMPT)
    again = ""
    if feedback:
        again = (
            "\nA reviewer turned down your previous document. Their feedback:\n"
            f"{feedback}\n\nYour previous document:\n```json\n"
            f"{json.dumps(previous or {}, indent=1)[:MAX_PAGE_CHARS]}\n```\n"
        )
    messages: list[dict[str, Any]] = prompt.messages(
        source_url=source_url, documentation=text, feedback=again
    )
    reason = ""
    for _ in range(ROUNDS):
        completion = await model.complete(
            messages, tools=[SUBMIT], on_token=on_token, on_arguments=on_token
        )
        try:
            return read_document(_answer(completion), limit), prompt.ref
        except BadDocument as exc:
            reason = exc.message
        messages.append(completion.as_message())
        problem = f"That document cannot be used: {reason}. Submit a corrected one."
        if completion.tool_calls:  # every call gets its answer
            for call in completion.tool_calls:
                messages.append({"role": "tool", "tool_call_id": call.id, "content": problem})
        else:
            messages.append({"role": "user", "content": problem})
    raise BadDocument(f"the model did not write a usable OpenAPI document: {reason}")
