"""The managed venvs of package servers: where they live and how readiness is marked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from gateway.servers.runtimes import stdio


@pytest.fixture
def fake_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[list[str]]:
    """Replace the install steps (``python -m venv``, ``pip install``) with a stand-in
    that runs no pip; its pip step plays a hostile package's build code, planting
    ``<venv>/.ready`` as a symlink to a file outside the venv."""
    steps: list[list[str]] = []

    async def step(argv: list[str], _ctx: Any) -> tuple[int, str]:
        steps.append(argv)
        if "pip" in argv:
            venv = Path(argv[0]).parent.parent
            venv.mkdir(parents=True, exist_ok=True)
            os.symlink(tmp_path / "victim", venv / ".ready")
        return 0, ""

    monkeypatch.setattr(stdio, "_host_step", step)
    monkeypatch.setattr(stdio, "_venv_locks", {})
    return steps


async def test_a_planted_ready_symlink_is_never_followed(
    tmp_path: Path, fake_install: list[list[str]]
) -> None:
    """The install step is monkeypatched (no pip runs): it plants ``.ready`` as a symlink
    to a file outside; marking the venv ready must not create that file (as root the
    gateway would have made, say, /etc/nologin)."""
    data = tmp_path / "data"
    venv = await stdio.ensure_venv(data, "foo==1.0")
    assert not (tmp_path / "victim").exists()
    marker = venv.parent / f"{venv.name}.ready"
    assert marker.is_file() and not marker.is_symlink()
    # ready now: a second call installs nothing
    count = len(fake_install)
    assert await stdio.ensure_venv(data, "foo==1.0") == venv
    assert len(fake_install) == count


async def test_a_symlinked_marker_does_not_count_as_ready(
    tmp_path: Path, fake_install: list[list[str]]
) -> None:
    data = tmp_path / "data"
    venv = await stdio.ensure_venv(data, "bar")
    marker = venv.parent / f"{venv.name}.ready"
    marker.unlink()
    (tmp_path / "elsewhere").touch()
    os.symlink(tmp_path / "elsewhere", marker)
    (venv / ".ready").unlink()
    count = len(fake_install)
    await stdio.ensure_venv(data, "bar")
    assert len(fake_install) > count  # installed again, not taken as ready
    assert marker.is_file() and not marker.is_symlink()


async def test_requirements_that_read_alike_get_their_own_venvs(
    tmp_path: Path, fake_install: list[list[str]]
) -> None:
    data = tmp_path / "data"
    first = await stdio.ensure_venv(data, "foo==1.0")
    second = await stdio.ensure_venv(data, "foo__1.0")
    assert first != second
    assert first.name.startswith("foo__1.0") and second.name.startswith("foo__1.0")
