"""The skill generator's parts without a gateway: the template, the checks, the model
loop's functions (against the scripted stand-in: no LLM endpoint is reachable here)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.llm.client import ModelClient, ModelConfig
from gateway.llm.prompts import load_prompt
from skills.generate.checks import check_package
from skills.generate.loop import MAX_FILES, Session
from skills.generate.schemas import ServerTool
from skills.generate.template import name_from_intent, skeleton
from tests.fixtures.llm_standin import KEY, MODEL, ScriptedModel, tool_call

TOOLS = {
    "notes": [
        ServerTool(name="add_note", description="Add a note.", parameters=["text", "tags"]),
        ServerTool(name="search", description="Search notes: by words\nor tags"),
    ]
}
CATALOGS = {"notes": {"add_note", "search"}}


def _bytes(files: dict[str, str]) -> dict[str, bytes]:
    return {path: text.encode() for path, text in files.items()}


def test_names_come_from_the_intents_first_words() -> None:
    assert name_from_intent("Triage new GitHub issues, then label them") == (
        "triage-new-github-issues-then-label"
    )
    assert name_from_intent("¡¿!!  ") == "generated-skill"


def test_the_template_is_a_valid_skill_naming_every_linked_tool() -> None:
    intent = 'Keep meeting notes: "decisions", owners: and due dates.\nSearch them later.'
    files = skeleton("meeting-notes", intent, TOOLS)
    text = files["SKILL.md"]
    verdict = check_package(_bytes(files), "meeting-notes", CATALOGS)
    assert verdict.ok, verdict.problems
    assert verdict.tools == ["notes__add_note", "notes__search"]
    assert verdict.report is not None and verdict.report.skill is not None
    assert verdict.report.skill.description == " ".join(intent.split())
    assert "- `notes__add_note`: Add a note. Parameters: text, tags." in text
    assert "- `notes__search`: Search notes: by words or tags." in text
    assert "## When to use" in text and "## Steps" in text
    # No servers: still valid, and says so.
    bare = skeleton("meeting-notes", intent, {})
    assert check_package(_bytes(bare), "meeting-notes", {}).ok
    assert "No tools are linked" in bare["SKILL.md"]


def test_checks_catch_missing_and_unlinked_tools_and_invalid_skills() -> None:
    body = "Use `notes__add_note`, `notes__delete` and `github__create_issue`.\n"
    files = {"SKILL.md": f"---\nname: n\ndescription: d\n---\n{body}"}
    problems = check_package(_bytes(files), "n", CATALOGS).problems
    assert any(
        "tool 'delete' is not in the catalog of linked server 'notes'" in p for p in problems
    )
    assert any("server 'github', which is not linked" in p for p in problems)
    allowed = {
        "SKILL.md": "---\nname: n\ndescription: d\nallowed-tools: notes__gone Read\n---\nb\n"
    }
    [problem] = check_package(_bytes(allowed), "n", CATALOGS).problems
    assert problem.startswith("allowed-tools (line 4): tool 'gone' is not in the catalog")
    wrong = check_package(_bytes(files), "other", CATALOGS).problems
    assert any("must equal the skill's folder name 'other'" in p for p in wrong)
    strict = {"SKILL.md": "---\nname: n\ndescription: d\nversion: 2\n---\nbody\n"}
    assert any(
        "unknown frontmatter field" in p for p in check_package(_bytes(strict), "n", {}).problems
    )


async def _no_run(files: dict[str, bytes], path: str) -> dict[str, Any]:
    raise AssertionError("no script should run")


async def test_the_loops_functions_refuse_what_they_must() -> None:
    emitted: list[Any] = []

    async def emit(kind: str, data: Any) -> None:
        emitted.append((kind, data))

    replies = [
        {"tool_calls": [
            tool_call("write_file", {"path": "../etc/passwd", "content": "x"}),
            tool_call("write_file", {"path": "notes.txt", "content": "x"}),
            tool_call("read_file", {"path": "SKILL.md"}),
            tool_call("list_server_tools", {"server": "github"}),
            tool_call("run_in_sandbox", {"path": "scripts/x.py"}),
            tool_call("delete_everything", {}),
            tool_call("list_server_tools", {"server": "notes"}),
        ]},
        {"content": "done"},
    ]  # fmt: skip
    with ScriptedModel(replies) as model:
        client = ModelClient(ModelConfig(model.base_url, MODEL, KEY))
        session = Session(client, TOOLS, _no_run, emit)
        assert session.start("n", "an intent of some length", None, None) == ("skill_from_intent@1")
        assert await session.work() is True
        await client.close()
        answers = [m["content"] for m in session.messages if m["role"] == "tool"]
    errors = [json.loads(a).get("error", "") for a in answers[:6]]
    assert "outside the skill" in errors[0]
    assert "write SKILL.md or files under scripts/" in errors[1]
    assert "not written yet" in errors[2]
    assert "'github' is not a linked server (linked: ['notes'])" in errors[3]
    assert "not written yet" in errors[4]
    assert "there is no function 'delete_everything'" in errors[5]
    assert [t["name"] for t in json.loads(answers[6])] == ["notes__add_note", "notes__search"]
    assert session.package.files == {} and emitted == []
    assert session.rounds == 2


async def test_the_file_count_is_bounded() -> None:
    with ScriptedModel([]) as model:
        client = ModelClient(ModelConfig(model.base_url, MODEL, KEY))
        session = Session(client, TOOLS, _no_run, lambda *a: _nothing())
        for n in range(MAX_FILES):
            await session._write({"path": f"references/{n}.md", "content": "x"})
        from gateway.errors import InvalidInput

        with pytest.raises(InvalidInput, match="at most 20 files"):
            await session._write({"path": "references/one-more.md", "content": "x"})
        await client.close()


async def _nothing() -> None:
    return None


def test_the_prompt_is_versioned_and_fills_in() -> None:
    prompt = load_prompt("skill_from_intent")
    messages = prompt.messages(
        name="n", intent="the intent", servers="notes (2 tools)", feedback=""
    )
    assert prompt.version == 1 and "`{server}__{tool}`" in messages[0]["content"]
    assert "the intent" in messages[1]["content"] and "notes (2 tools)" in messages[1]["content"]
