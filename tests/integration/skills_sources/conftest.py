"""Fixtures for skill import sources: the loopback git server and settings pointing at it."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Settings
from tests.support import GitHttpServer, git_http_server  # noqa: F401  (fixture)

SourceSettings = Callable[..., Settings]


@pytest.fixture
def source_settings(tmp_path: Path, git_http_server: GitHttpServer) -> SourceSettings:  # noqa: F811
    """Settings whose "GitHub" is the loopback git server (private URLs allowed)."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "skills_github_base": git_http_server.base_url,
            "allow_private_urls": True,
            "skills_allow_local_import": True,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where resolve_source makes its clones during the test (so leftovers can be seen)."""
    root = tmp_path / "system-tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root
