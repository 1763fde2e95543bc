"""The ``skills.generate`` job kind (what a worker runs): write the package — from the
template, or by the model in a tool-calling loop — check it strictly (validation, and
every ``server__tool`` it names must be in the linked servers' catalogs), run its
scripts in a sandbox, and end in ``review`` with the draft. Nothing is stored here: a
person approves the draft first (service.py).

Scripts run through a :data:`ScriptRunner` the composition root hands in (the sandbox
pillar's throwaway sandboxes), so this pillar imports no other pillar.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gateway.config import Settings
from gateway.errors import InvalidInput
from gateway.jobs.kinds import JobContext, JobKind, NeedsReview
from gateway.llm.client import ModelClient, require_model
from gateway.llm.tokens import TokenBatcher
from skills.generate.checks import Verdict, check_package
from skills.generate.loop import Session
from skills.generate.schemas import KIND, GenerateInput, summarize
from skills.generate.template import skeleton
from skills.validation import SKILL_MD

# Runs ``path`` of a package (``{path: bytes}``) in a sandbox; the run as JSON
# (``path``, ``ok``, ``exit_code``, ``stdout``, ``stderr``, ``duration_ms``…).
ScriptRunner = Callable[[Settings, dict[str, bytes], str], Awaitable[dict[str, Any]]]
SCRIPTS = "scripts/"


class DraftRefused(InvalidInput):
    """The package fails the checks (strict validation, tools not in the catalogs, a
    script that fails), after the model had its one retry."""

    code = "invalid_draft"


def skill_kind(runner: ScriptRunner) -> JobKind:
    """The kind, running scripts with ``runner``."""

    async def handler(ctx: JobContext, data: dict[str, Any]) -> NeedsReview:
        return NeedsReview(await Generation(ctx, GenerateInput(**data), runner).run())

    return JobKind(
        KIND,
        handler,
        GenerateInput,
        queue="generate",
        soft_time_limit=900,
        hard_time_limit=960,
        summarize=summarize,
    )


class Generation:
    """One run of the generator."""

    def __init__(self, ctx: JobContext, data: GenerateInput, runner: ScriptRunner) -> None:
        self.ctx = ctx
        self.data = data
        self.runner = runner
        self.catalogs = {s: {t.name for t in tools} for s, tools in data.servers.items()}
        self.source: dict[str, Any] = {"from": "model" if data.model else "template"}

    async def run(self) -> dict[str, Any]:
        """The draft: skill, files, the tools it names, script runs, warnings, source."""
        if self.data.model:
            files, runs, verdict = await self._by_model()
        else:
            await self.ctx.progress(0.2, "filling the template from the intent")
            files, runs = skeleton(self.data.name, self.data.intent, self.data.servers), []
            verdict = self._check(files)
            if not verdict.ok:  # e.g. the intent names a tool the servers lack
                raise DraftRefused(
                    "the skill made from the template fails the checks: "
                    + "; ".join(verdict.problems[:5])
                )
        for path in sorted(files):
            await self.ctx.emit("artifact", {"type": "file", "path": path, "content": files[path]})
        await self.ctx.log(f"{len(files)} files; names {len(verdict.tools)} tools; checks passed")
        await self.ctx.progress(1.0, "draft ready for review")
        parsed = verdict.report.skill if verdict.report else None
        return {
            "draft": True,
            "skill": {
                "name": self.data.name,
                "description": parsed.description if parsed else "",
            },
            "files": files,
            "executable": sorted(p for p in files if p.startswith(SCRIPTS)),
            "servers": sorted(self.data.servers),
            "tools": verdict.tools,
            "scripts": runs,
            "warnings": verdict.warnings,
            "source": self.source,
        }

    def _check(self, files: dict[str, str]) -> Verdict:
        encoded = {p: t.encode() for p, t in files.items()}
        return check_package(encoded, self.data.name, self.catalogs)

    async def _run(self, files: dict[str, bytes], path: str) -> dict[str, Any]:
        return await self.runner(self.ctx.settings, files, path)

    async def _by_model(self) -> tuple[dict[str, str], list[dict[str, Any]], Verdict]:
        config = require_model(self.ctx.settings, "generating a skill with a model")
        await self.ctx.progress(0.05, "the model is writing the skill")
        model = ModelClient(config)
        tokens = TokenBatcher(self.ctx.emit)
        session = Session(model, self.data.servers, self._run, self.ctx.emit, on_token=tokens)
        self.source.update(
            prompt=session.start(
                self.data.name, self.data.intent, self.data.feedback, self.data.previous_files
            ),
            model=config.model,
        )
        try:
            for attempt in (1, 2):
                done = await session.work()
                await tokens.flush()
                verdict = await self._final_checks(session)
                if verdict.ok:
                    break
                if attempt == 2:
                    raise DraftRefused(
                        "the model's skill fails the checks: " + "; ".join(verdict.problems[:5])
                    )
                await self.ctx.log(f"sent back to the model: {len(verdict.problems)} problems")
                more = "" if done else " (you ran out of rounds: finish now)"
                session.tell(
                    "The package cannot be reviewed yet" + more + ". Fix these and answer "
                    "without a function call when done:\n- " + "\n- ".join(verdict.problems)
                )
        finally:
            await tokens.flush()
            await model.close()
        self.source["rounds"] = session.rounds
        runs = [outcome for _, outcome in session.package.runs.values()]
        return dict(session.package.files), runs, verdict

    async def _final_checks(self, session: Session) -> Verdict:
        """Strict validation and tool names; then every script whose final content did
        not run yet runs now (a failing one is a problem too)."""
        files = session.package.files
        if SKILL_MD not in files:
            return Verdict(problems=[f"{SKILL_MD} is not written"])
        verdict = self._check(files)
        if not verdict.ok:
            return verdict
        for path in sorted(p for p in files if p.startswith(SCRIPTS)):
            ran = session.package.runs.get(path)
            outcome = ran[1] if ran and ran[0] == files[path] else await session.run(path)
            if not outcome.get("ok"):
                why = outcome.get("error") or (outcome.get("stderr") or "")[-300:]
                verdict.problems.append(
                    f"{path} failed in the sandbox (exit {outcome.get('exit_code')}): {why}"
                )
        for stale in set(session.package.runs) - set(files):  # never in the draft
            session.package.runs.pop(stale)
        return verdict
