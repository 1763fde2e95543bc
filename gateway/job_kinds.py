"""Every job kind this gateway runs: the jobs core's built-in ones and the pillars'
generators. The gateway (to accept and review jobs) and `mcpgw worker` (to run them)
build the same registry from the same settings."""

from __future__ import annotations

from functools import cache

from gateway.config import Settings
from gateway.crypto import SecretBox, secret_box
from gateway.jobs.kinds import KindRegistry, builtin_kinds
from gateway.servers.generate.kind import server_generation_kind


def all_kinds(settings: Settings) -> KindRegistry:
    """The built-in kinds and every generator's."""
    kinds = builtin_kinds()

    @cache
    def box() -> SecretBox:  # read when a job needs it (test calls with secrets)
        return secret_box(settings)

    kinds.register(server_generation_kind(settings, box))
    return kinds
