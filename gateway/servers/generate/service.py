"""The server generator's use cases in the gateway: start a generation (the input
checked and the secrets sealed before anything is queued), and settle its draft —
approve (register the ``generated`` server with the chosen tools and load it), revert,
reject (with feedback, on the model path, a new draft is made)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from gateway.auth.principal import Principal
from gateway.config import Settings
from gateway.crypto import SecretBox
from gateway.errors import InvalidInput
from gateway.jobs.models import Job
from gateway.jobs.service import JobService
from gateway.llm.client import require_model
from gateway.servers.generate.document import read_document
from gateway.servers.generate.schemas import KIND, GenerateServer
from gateway.servers.runtimes.base import BackendError
from gateway.servers.schemas import ServerCreate
from gateway.servers.service import ServerService
from gateway.ssrf import check_url


class UrlRefused(InvalidInput):
    """A URL the SSRF guard refuses (a private address, or a name that resolves to none)."""

    code = "url_refused"


class ServerGenerator:
    """Generation jobs of servers: submitted here, run by workers, reviewed here."""

    def __init__(
        self, jobs: JobService, servers: ServerService, box: SecretBox, settings: Settings
    ) -> None:
        self.jobs = jobs
        self.servers = servers
        self.box = box
        self.settings = settings
        jobs.reviews.add(KIND, self)

    async def submit(self, principal: Principal, body: GenerateServer) -> Job:
        """Check the request and queue the job; 4xx (nothing queued) when the document
        does not parse or is too large, a URL is refused, or no model is configured for
        a documentation page."""
        principal.require("servers:write")
        data: dict[str, Any] = {"name": body.name, "test_calls": body.test_calls}
        if body.openapi is not None:
            limit = self.settings.generate_max_document_bytes
            data.update(source="openapi", document=read_document(body.openapi, limit))
        else:
            if body.docs_url is not None:
                require_model(self.settings, "generating from a documentation page")
            url = body.url or body.docs_url
            await self._check_url("url" if body.url else "docs_url", url)
            data.update(source="url" if body.url else "docs_url", url=url)
        if body.base_url is not None:
            await self._check_url("base_url", body.base_url, must_resolve=False)
            data["base_url"] = body.base_url
        if body.secret_headers:
            data["secrets_sealed"] = self.box.seal({"headers": body.secret_headers})
            data["secret_header_names"] = sorted(body.secret_headers)
        if body.test_arguments:
            data["test_arguments"] = body.test_arguments
        return await self.jobs.submit(principal, KIND, data)

    async def _check_url(self, field: str, url: Any, must_resolve: bool = True) -> None:
        try:
            await check_url(str(url), self.settings.allow_private_urls, must_resolve=must_resolve)
        except BackendError as exc:
            raise UrlRefused(
                f"{field}: {exc}", errors=[{"field": field, "message": str(exc)}]
            ) from None

    # --- review (gateway.jobs.kinds.Reviewer) -----------------------------------------
    async def approve(
        self, principal: Principal, job: Job, choice: dict[str, Any]
    ) -> dict[str, Any]:
        """Register the draft as a ``generated`` server offering the chosen tools (default:
        those marked ``include``) and load it; 422 when a tool is unknown, none is
        chosen, the name is taken or no base URL is known."""
        draft = job.result or {}
        known = [t["name"] for t in draft.get("tools", [])]
        chosen = choice.get("tools")
        if chosen is None:
            chosen = [t["name"] for t in draft.get("tools", []) if t.get("include", True)]
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            raise InvalidInput(
                f"tools: the draft has no tools named {unknown}", code="unknown_tools",
                errors=[{"field": "tools", "message": f"unknown: {unknown}"}],
            )  # fmt: skip
        if not chosen:
            raise InvalidInput("tools: choose at least one tool", code="no_tools")
        server = draft.get("server") or {}
        base_url = choice.get("base_url") or server.get("base_url")
        if not base_url:
            raise InvalidInput(
                "base_url: the document names no server URL; give base_url",
                code="base_url_missing",
            )
        sealed = (job.input or {}).get("secrets_sealed")
        headers = self.box.open(sealed).get("headers", {}) if sealed else {}
        ordered = [name for name in known if name in set(chosen)]
        config = {"openapi": draft["source"]["document"], "base_url": base_url, "tools": ordered}
        try:
            create = ServerCreate(
                name=choice.get("name") or server.get("name") or "api",
                type="generated",
                config=config,
                description=server.get("description", ""),
                tags=["generated", "openapi"],
                secret_headers=headers,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "body"
            raise InvalidInput(
                f"{field}: {first['msg']}", errors=[{"field": field, "message": first["msg"]}]
            ) from None
        row = await self.servers.register(principal, create)
        await self.servers.connect(row.name, wait=True)  # loaded: its tools are listed now
        return {"server": row.name, "tools": ordered, "base_url": base_url}

    async def revert(self, principal: Principal, job: Job, outcome: dict[str, Any]) -> None:
        """Remove the server an approval registered."""
        await self.servers.remove(principal, outcome["server"])

    async def reject(
        self, principal: Principal, job: Job, feedback: str | None
    ) -> dict[str, Any] | None:
        """With feedback on the model path: the input of a job that makes the draft again
        (the rejected document and the feedback go to the model). Otherwise None."""
        data = dict(job.input or {})
        if not feedback or data.get("source") != "docs_url":
            return None
        require_model(self.settings, "regenerating from feedback")
        data["feedback"] = feedback
        data["previous_document"] = ((job.result or {}).get("source") or {}).get("document")
        return data
