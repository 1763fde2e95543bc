"""The deterministic path: a skeleton SKILL.md filled from the intent and the linked
servers' tools (named as agents see them, ``{server}__{tool}``). No model involved;
the same input always gives the same package."""

from __future__ import annotations

import re

import yaml

from skills.generate.schemas import ServerTool
from skills.validation import MAX_DESCRIPTION, MAX_NAME, SKILL_MD

# How much of a tool's description a line of the Tools section keeps.
TOOL_LINE_CHARS = 160
_WORDS = 6


def name_from_intent(intent: str) -> str:
    """A skill name from the intent's first words: ``Triage new GitHub issues…`` →
    ``triage-new-github-issues``."""
    words = re.findall(r"[a-z0-9]+", intent.lower())[:_WORDS]
    name = "-".join(words)[:MAX_NAME].strip("-")
    return name or "generated-skill"


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def description_from_intent(intent: str) -> str:
    """The front matter's description: the intent on one line, within the spec's limit."""
    return _one_line(intent, MAX_DESCRIPTION)


def _title(name: str) -> str:
    return " ".join(word.capitalize() for word in name.split("-"))


def _tool_line(server: str, tool: ServerTool) -> str:
    what = _one_line(tool.description, TOOL_LINE_CHARS).rstrip(".") or "(no description)"
    params = f" Parameters: {', '.join(tool.parameters)}." if tool.parameters else ""
    return f"- `{server}__{tool.name}`: {what}.{params}"


def skeleton(name: str, intent: str, servers: dict[str, list[ServerTool]]) -> dict[str, str]:
    """The skill package (``{path: text}``): SKILL.md only."""
    front = yaml.safe_dump(
        {"name": name, "description": description_from_intent(intent)},
        sort_keys=False,
        allow_unicode=True,
        width=1_000_000,
    )
    lines = [f"# {_title(name)}", "", _one_line(intent, 4000), "", "## When to use", ""]
    lines += [
        f"Use this skill when a request matches this intent: {_one_line(intent, 600)}",
        "Do not use it for anything else.",
        "",
        "## Tools",
        "",
    ]
    tools = [(server, tool) for server, listed in sorted(servers.items()) for tool in listed]
    if tools:
        lines += [_tool_line(server, tool) for server, tool in tools]
    else:
        lines.append("No tools are linked: work from the instructions alone.")
    lines += ["", "## Steps", ""]
    lines += [
        "1. Restate the request in one sentence and check it fits the intent above.",
        "2. Pick the fewest tools from the list above that answer it; read each tool's "
        "parameters before calling it.",
        "3. Call the tools one at a time and check each result before the next call; stop and "
        "report when a call fails.",
        "4. Answer with what was done and the results, citing the tool calls made.",
        "",
    ]
    return {SKILL_MD: f"---\n{front}---\n\n" + "\n".join(lines)}
