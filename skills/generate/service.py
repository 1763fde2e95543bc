"""The skill generator's use cases in the gateway: start a generation (the servers
resolved and their tools read from the catalog before anything is queued), and settle
its draft — approve (store it as a new skill, or a new version of the named one, linked
to the servers, in one transaction), revert, reject (with feedback, on the model path,
a new draft is made)."""

from __future__ import annotations

from typing import Any

from gateway.auth.principal import Principal
from gateway.config import Settings
from gateway.errors import InvalidInput, NotFound
from gateway.jobs.models import Job
from gateway.jobs.service import JobService
from gateway.llm.client import model_config, require_model
from skills.archive import SkillPackage
from skills.generate.schemas import KIND, GenerateSkill, ServerTool
from skills.generate.template import name_from_intent
from skills.service import SkillService

# How much of a tool's description the job's input keeps.
DESCRIPTION_CHARS = 500


class SkillGenerator:
    """Generation jobs of skills: submitted here, run by workers, reviewed here."""

    def __init__(self, jobs: JobService, skills: SkillService, settings: Settings) -> None:
        self.jobs = jobs
        self.skills = skills
        self.settings = settings
        jobs.reviews.add(KIND, self)

    async def submit(self, principal: Principal, body: GenerateSkill) -> Job:
        """Check the request and queue the job; 4xx (nothing queued) when a server is
        unknown (or not visible), or the model is asked for and none is configured."""
        principal.require("skills:write")
        if body.model:
            require_model(self.settings, "generating a skill with a model")
        use_model = (
            body.model if body.model is not None else model_config(self.settings) is not None
        )
        servers = await self._server_tools(principal, body.servers)
        data = {
            "intent": body.intent,
            "name": body.name or name_from_intent(body.intent),
            "servers": {name: [t.model_dump() for t in tools] for name, tools in servers.items()},
            "model": use_model,
        }
        return await self.jobs.submit(principal, KIND, data)

    async def _server_tools(
        self, principal: Principal, names: list[str]
    ) -> dict[str, list[ServerTool]]:
        """Each server's tools as ``principal`` sees them; 422 naming every unknown one."""
        found: dict[str, list[ServerTool]] = {}
        unknown = []
        for name in dict.fromkeys(names):
            try:
                row, _ = await self.skills.servers.get(principal, name)
            except NotFound:
                unknown.append(name)
                continue
            entries, _ = await self.skills.servers.catalog(
                principal, server=row.name, kind="tool", limit=100_000
            )
            found[row.name] = [
                ServerTool(
                    name=entry.name,
                    description=(entry.description or "")[:DESCRIPTION_CHARS],
                    parameters=sorted(
                        ((entry.definition or {}).get("inputSchema") or {}).get("properties") or {}
                    ),
                )
                for entry, _ in entries
            ]
        if unknown:
            raise InvalidInput(
                f"servers: no server named {', '.join(repr(n) for n in unknown)}",
                code="unknown_servers",
                errors=[{"field": "servers", "message": f"unknown: {unknown}"}],
            )
        return found

    # --- review (gateway.jobs.kinds.Reviewer) -----------------------------------------
    async def approve(
        self, principal: Principal, job: Job, choice: dict[str, Any]
    ) -> dict[str, Any]:
        """Store the draft as the skill it names (new, or a new version of the caller's),
        linked to its servers, in one transaction; 422 (still in review) when it no longer
        validates, 409/403 when the name belongs to someone else."""
        draft = job.result or {}
        name = str((draft.get("skill") or {}).get("name") or "")
        if choice.get("name") not in (None, name):
            raise InvalidInput(
                "name: a generated skill keeps the name it was generated with; generate "
                "again with another name",
                code="name_fixed",
            )
        links: dict[str, str] = {}
        for server in draft.get("servers") or []:
            row, _ = await self.skills.servers.get(principal, server)  # 404 if gone
            links[row.id] = row.name
        try:
            previous_links = (await self.skills.links(principal, name))[0]
        except NotFound:
            previous_links = []
        files = {path: str(text).encode() for path, text in (draft.get("files") or {}).items()}
        executable = set(draft.get("executable") or [])
        package = SkillPackage(folder=name, files=files, executable=executable)
        made_by = (draft.get("source") or {}).get("from")
        source = {"kind": "generated", "job_id": job.id, "from": made_by}
        result = await self.skills.store_package(
            principal, package, source=source, strict=True, label="the draft", links=links
        )
        return {
            "skill": result.view.skill.name,
            "version": result.view.version.version,
            "created": result.created,
            "changed": result.changed,
            "previous_links": previous_links,
            "servers": result.view.links,
        }

    async def revert(self, principal: Principal, job: Job, outcome: dict[str, Any]) -> None:
        """Undo an approval that lost a race with another reviewer: delete the skill it
        created, or make the version before its own current again (as a new version)
        with the links it had. An approval that changed nothing (the same content was
        there already, e.g. stored by the winner) is left alone."""
        name = outcome["skill"]
        if not outcome.get("changed"):
            return
        if outcome.get("created"):
            await self.skills.delete(principal, name)
            return
        await self.skills.rollback(principal, name, int(outcome["version"]) - 1)
        await self.skills.set_links(
            principal, name, list(outcome.get("previous_links") or []), replace=True
        )

    async def reject(
        self, principal: Principal, job: Job, feedback: str | None
    ) -> dict[str, Any] | None:
        """With feedback on the model path: the input of a job that writes the skill
        again (the rejected files and the feedback go to the model). Otherwise None."""
        data = dict(job.input or {})
        if not feedback or not data.get("model"):
            return None
        require_model(self.settings, "regenerating from feedback")
        data["feedback"] = feedback
        data["previous_files"] = (job.result or {}).get("files")
        return data
