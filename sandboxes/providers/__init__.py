"""Sandbox providers: one adapter per runtime behind ``SandboxProvider`` (see base.py)."""

from __future__ import annotations

from pathlib import Path

from gateway.config import Settings
from sandboxes.providers.base import SandboxProvider


def sandbox_root(settings: Settings) -> Path:
    return (settings.sandbox_dir or settings.data_dir / "sandboxes").resolve()


def build_providers(settings: Settings) -> dict[str, SandboxProvider]:
    """Every provider this gateway offers; none touches its runtime until first used."""
    from sandboxes.providers.docker import DockerProvider
    from sandboxes.providers.local import LocalProvider

    return {"local": LocalProvider(sandbox_root(settings)), "docker": DockerProvider()}
