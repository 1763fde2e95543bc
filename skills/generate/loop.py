"""The model path: the model writes the package in a bounded tool-calling loop.

Its functions act on an in-memory package (``write_file``, ``read_file``), read the
linked servers' catalogs as snapshotted when the job was accepted
(``list_server_tools``) and run a script it wrote in a throwaway sandbox
(``run_in_sandbox``). It says it is done by answering without a function call; the
package is then checked (checks.py) and, if it fails, sent back once with every
problem. The prompt is the versioned file ``skill_from_intent``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import InvalidInput
from gateway.llm.client import ModelClient, ModelError, TokenSink, ToolCall
from gateway.llm.prompts import load_prompt
from skills.archive import check_path
from skills.generate.schemas import ServerTool
from skills.validation import SKILL_MD

PROMPT = "skill_from_intent"
ROUNDS = 8  # completions per attempt
MAX_FILES = 20
MAX_FILE_CHARS = 100_000
ALLOWED_TOP = ("scripts/", "references/", "assets/")

# Runs ``path`` of the package in a sandbox; the run as JSON (``ok``, ``exit_code``…).
RunScript = Callable[[dict[str, bytes], str], Awaitable[dict[str, Any]]]
Emit = Callable[[str, Any], Awaitable[None]]


def _function(name: str, description: str, **params: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {k: {"type": "string", "description": v} for k, v in params.items()},
                "required": list(params),
            },
        },
    }


TOOLS = [
    _function(
        "write_file",
        "Create or replace a file of the skill package.",
        path="SKILL.md, or a path under scripts/, references/ or assets/",
        content="The whole file.",
    ),
    _function("read_file", "Read a file of the package as written so far.", path="Its path."),
    _function(
        "list_server_tools",
        "The tools of a linked server, named as agents call them (server__tool).",
        server="A linked server's name.",
    ),
    _function(
        "run_in_sandbox",
        "Run a script of the package in a sandbox (no network); exit code and output.",
        path="The script's path, e.g. scripts/check.py",
    ),
]


@dataclass
class Package:
    """The files the model wrote so far, and the scripts it ran (with what content)."""

    files: dict[str, str] = field(default_factory=dict)
    runs: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)

    def as_bytes(self) -> dict[str, bytes]:
        """Every file as bytes (what validation and the sandbox take)."""
        return {path: text.encode() for path, text in self.files.items()}


class Session:
    """One generation's conversation with the model and the package it writes."""

    def __init__(
        self,
        model: ModelClient,
        servers: dict[str, list[ServerTool]],
        run_script: RunScript,
        emit: Emit,
        on_token: TokenSink | None = None,
    ) -> None:
        self.model = model
        self.servers = servers
        self.run_script = run_script
        self.emit = emit
        self.on_token = on_token
        self.package = Package()
        self.messages: list[dict[str, Any]] = []
        self.rounds = 0

    def start(
        self, name: str, intent: str, feedback: str | None, previous: dict[str, str] | None
    ) -> str:
        """Set up the conversation; the prompt's ``name@version``."""
        prompt = load_prompt(PROMPT)
        again = ""
        if feedback:
            shown = json.dumps(previous or {}, indent=1)[:MAX_FILE_CHARS]
            again = (
                "\nA reviewer turned down your previous package. Their feedback:\n"
                f"{feedback}\n\nYour previous files:\n```json\n{shown}\n```\n"
            )
        listed = ", ".join(f"{s} ({len(t)} tools)" for s, t in sorted(self.servers.items()))
        self.messages = prompt.messages(
            name=name, intent=intent, servers=listed or "none", feedback=again
        )
        return prompt.ref

    async def work(self) -> bool:
        """Let the model work until it says it is done (True) or the rounds run out."""
        for _ in range(ROUNDS):
            self.rounds += 1
            completion = await self.model.complete(
                self.messages, tools=TOOLS, on_token=self.on_token, on_arguments=self.on_token
            )
            self.messages.append(completion.as_message())
            if not completion.tool_calls:
                return True
            for call in completion.tool_calls:
                answer = await self._answer(call)
                self.messages.append({"role": "tool", "tool_call_id": call.id, "content": answer})
        return False

    def tell(self, text: str) -> None:
        """Add a user message (the checks' findings) before more work."""
        self.messages.append({"role": "user", "content": text})

    async def _answer(self, call: ToolCall) -> str:
        try:
            args = call.parsed_arguments()
            handler = {
                "write_file": self._write,
                "read_file": self._read,
                "list_server_tools": self._list,
                "run_in_sandbox": self._run,
            }.get(call.name)
            if handler is None:
                raise InvalidInput(f"there is no function {call.name!r}")
            return await handler(args)
        except (InvalidInput, ModelError) as exc:
            return json.dumps({"error": exc.message})

    @staticmethod
    def _path(args: dict[str, Any]) -> str:
        path = str(args.get("path") or "").removeprefix("./")
        check_path(path)  # no absolute paths, no '..'
        if path != SKILL_MD and not path.startswith(ALLOWED_TOP):
            raise InvalidInput(f"{path!r}: write SKILL.md or files under scripts/, references/, "
                               "assets/")  # fmt: skip
        return path

    async def _write(self, args: dict[str, Any]) -> str:
        path = self._path(args)
        content = args.get("content")
        if not isinstance(content, str):
            raise InvalidInput("content must be a string")
        if len(content) > MAX_FILE_CHARS:
            raise InvalidInput(f"a file may hold at most {MAX_FILE_CHARS} characters")
        files = self.package.files
        if path not in files and len(files) >= MAX_FILES:
            raise InvalidInput(f"a generated skill may have at most {MAX_FILES} files")
        files[path] = content
        return json.dumps({"written": path, "characters": len(content)})

    async def _read(self, args: dict[str, Any]) -> str:
        path = self._path(args)
        if path not in self.package.files:
            raise InvalidInput(f"{path!r} is not written yet (files: {sorted(self.package.files)})")
        return self.package.files[path]

    async def _list(self, args: dict[str, Any]) -> str:
        server = str(args.get("server") or "")
        if server not in self.servers:
            raise InvalidInput(
                f"{server!r} is not a linked server (linked: {sorted(self.servers) or 'none'})"
            )
        return json.dumps(
            [
                {
                    "name": f"{server}__{t.name}",
                    "description": t.description,
                    "parameters": t.parameters,
                }
                for t in self.servers[server]
            ]
        )

    async def _run(self, args: dict[str, Any]) -> str:
        path = self._path(args)
        if path not in self.package.files:
            raise InvalidInput(f"{path!r} is not written yet")
        return json.dumps(await self.run(path))

    async def run(self, path: str) -> dict[str, Any]:
        """Run ``path`` as it is now in a sandbox; recorded and attached as an artifact."""
        content = self.package.files[path]
        outcome = await self.run_script(self.package.as_bytes(), path)
        self.package.runs[path] = (content, outcome)
        await self.emit("artifact", {"type": "script_run", **outcome})
        return outcome
