"""Sandbox templates: the built-in ones (python, node, multi) and how code is run.

A template names the image a ``docker`` sandbox starts from and the languages
its sandboxes run. ``local`` sandboxes use the host's read-only system
directories instead of an image, so a language there is available when its
interpreter is on the host (python3 always is; ``node`` when installed).
Admins add templates of their own (stored in ``sandbox_templates``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sandboxes.providers.base import TemplateSpec

IMAGES_DIR = Path(__file__).resolve().parent / "images"

# language -> (interpreter, flag that takes the code as an argument)
LANGUAGES: dict[str, tuple[str, str]] = {
    "python": ("python3", "-c"),
    "node": ("node", "-e"),
    "javascript": ("node", "-e"),
    "bash": ("bash", "-c"),
    "sh": ("sh", "-c"),
}
MAX_CODE_BYTES = 100_000  # one argv string may hold at most 128 KiB on Linux


def image_tag(template: str) -> str:
    return f"mcpgw-sandbox-{template}:latest"


BUILTIN: dict[str, TemplateSpec] = {
    "python": TemplateSpec(
        name="python",
        image=image_tag("python"),
        languages=("python", "bash", "sh"),
        description="Python 3 (Debian bookworm).",
    ),
    "node": TemplateSpec(
        name="node",
        image=image_tag("node"),
        languages=("node", "javascript", "bash", "sh"),
        description="Node.js (Debian bookworm).",
    ),
    "multi": TemplateSpec(
        name="multi",
        image=image_tag("multi"),
        languages=("python", "node", "javascript", "bash", "sh"),
        description="Python 3, Node.js, git and the usual shell tools.",
    ),
}


def dockerfile_dir(template: str) -> Path | None:
    """The folder holding the template's Dockerfile, if it is a built-in one."""
    folder = IMAGES_DIR / template
    return folder if (folder / "Dockerfile").is_file() else None


def code_argv(language: str, code: str) -> list[str]:
    """The command that runs ``code`` in ``language`` (raises KeyError if unknown)."""
    interpreter, flag = LANGUAGES[language]
    return [interpreter, flag, code]


def missing_on_host(template: TemplateSpec) -> str | None:
    """For ``local``: why the host cannot run this template's main language, or None."""
    main = template.languages[0] if template.languages else "sh"
    interpreter = LANGUAGES.get(main, (main, ""))[0]
    if shutil.which(interpreter, path="/usr/local/bin:/usr/bin:/bin") is None:
        return (
            f"template {template.name!r} needs {interpreter!r}, which the gateway's host "
            f"lacks: install it on the host or use the docker provider"
        )
    return None
