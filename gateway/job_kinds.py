"""Every job kind of the platform: the core's own and the pillars' (composition root).

The gateway (to accept submissions) and every worker (to run them) read the same
registry, so a kind is added here once.
"""

from __future__ import annotations

from typing import Any

from gateway.config import Settings
from gateway.jobs.kinds import KindRegistry, builtin_kinds


async def run_skill_script(
    settings: Settings, files: dict[str, bytes], path: str
) -> dict[str, Any]:
    """A generated skill's script, run in a throwaway sandbox of the configured provider
    (the skills pillar gets this from here: pillars do not import each other)."""
    from sandboxes.scratch import run_script

    return (await run_script(settings, files, path)).as_dict()


def platform_kinds() -> KindRegistry:
    """The core kinds (noop, echo, sleep) plus each pillar's generators."""
    from gateway.servers.generate.kind import SERVER_KIND
    from sandboxes.image_job import IMAGE_KIND
    from skills.generate.kind import skill_kind

    kinds = builtin_kinds()
    kinds.register(IMAGE_KIND)
    kinds.register(SERVER_KIND)
    kinds.register(skill_kind(run_skill_script))
    return kinds
