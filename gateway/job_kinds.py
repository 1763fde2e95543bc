"""Every job kind of the platform: the core's own and the pillars' (composition root).

The gateway (to accept submissions) and every worker (to run them) read the same
registry, so a kind is added here once.
"""

from __future__ import annotations

from gateway.jobs.kinds import KindRegistry, builtin_kinds


def platform_kinds() -> KindRegistry:
    """The core kinds (noop, echo, sleep) plus each pillar's generators."""
    from gateway.servers.generate.kind import SERVER_KIND
    from sandboxes.image_job import IMAGE_KIND

    kinds = builtin_kinds()
    kinds.register(IMAGE_KIND)
    kinds.register(SERVER_KIND)
    return kinds
