"""Prompts live in files, one per prompt, versioned: ``prompts/NAME.md`` starts with a
front matter block naming its ``version``; ``## system`` and ``## user`` sections
follow. Placeholders are ``$name`` (:class:`string.Template`), so JSON and code in a
prompt need no escaping. A job records which prompt version it used."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Template

import yaml

PROMPTS = Path(__file__).parent / "prompts"
_FRONT = re.compile(r"\A---\n(.*?)\n---\n(.*)\Z", re.S)
_SECTION = re.compile(r"^## (system|user)\s*$", re.M)


@dataclass(frozen=True)
class Prompt:
    """One prompt file: its name, version and the two message templates."""

    name: str
    version: int
    system: str
    user: str

    @property
    def ref(self) -> str:
        """``name@version``, what a job records."""
        return f"{self.name}@{self.version}"

    def messages(self, **values: str) -> list[dict[str, str]]:
        """The system and user messages with ``values`` filled in (all must be given)."""
        return [
            {"role": "system", "content": Template(self.system).substitute(values)},
            {"role": "user", "content": Template(self.user).substitute(values)},
        ]


@cache
def load_prompt(name: str) -> Prompt:
    """The prompt in ``prompts/{name}.md``; ValueError when the file is malformed."""
    text = (PROMPTS / f"{name}.md").read_text()
    match = _FRONT.match(text)
    if match is None:
        raise ValueError(f"prompt {name!r}: no front matter with a version")
    meta = yaml.safe_load(match.group(1)) or {}
    version = meta.get("version")
    if not isinstance(version, int):
        raise ValueError(f"prompt {name!r}: front matter needs an integer `version`")
    parts = _SECTION.split(match.group(2))
    sections = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}
    if set(sections) != {"system", "user"}:
        raise ValueError(f"prompt {name!r}: needs a `## system` and a `## user` section")
    return Prompt(name, version, sections["system"], sections["user"])
