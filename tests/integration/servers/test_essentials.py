"""The built-in essentials bundle through the gateway, including git on a real repository."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from tests.integration.servers.conftest import Gateway, text_of

pytestmark = pytest.mark.usefixtures("seed_essentials")


@pytest.fixture
async def seed_essentials(gw: Gateway) -> None:
    """The test database is wiped between tests; register essentials as migration 0002 does."""
    from gateway.servers.essentials import ESSENTIALS_CONFIG

    r = await gw.register({"name": "essentials", "type": "bundle", "config": ESSENTIALS_CONFIG})
    assert r.status_code == 201, r.text


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        env={
            "GIT_AUTHOR_NAME": "Ada",
            "GIT_AUTHOR_EMAIL": "ada@example.com",
            "GIT_COMMITTER_NAME": "Ada",
            "GIT_COMMITTER_EMAIL": "ada@example.com",
            "PATH": "/usr/bin:/bin",
            "HOME": str(repo),
        },
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repos" / "project"
    path.mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    (path / "app.py").write_text("def hello():\n    return 'hi'\n")
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "first commit")
    (path / "app.py").write_text("def hello():\n    return 'hello'\n")
    _git(path, "commit", "-q", "-am", "say hello")
    return path


async def test_catalog_has_all_members(gw: Gateway) -> None:
    tools = set(await gw.tools("essentials"))
    assert {
        "calculator_evaluate",
        "calculator_statistics",
        "calculator_convert_units",
        "git_log",
        "git_show",
        "git_diff",
        "git_blame",
        "git_grep",
        "git_list_repositories",
        "documents_html",
        "documents_pdf",
        "documents_docx",
    } <= tools


async def test_calculator_and_documents(gw: Gateway) -> None:
    assert (
        text_of(await gw.execute("essentials__calculator_evaluate", {"expression": "0.1+0.2"}))
        == "0.3"
    )
    bad = await gw.execute("essentials__calculator_evaluate", {"expression": "1/0"})
    assert bad["isError"] is True and "division by zero" in text_of(bad)
    doc = {"title": "T", "sections": [{"paragraphs": ["p"]}]}
    first = await gw.execute("essentials__documents_pdf", {"document": doc})
    second = await gw.execute("essentials__documents_pdf", {"document": doc})
    assert first["structuredContent"]["sha256"] == second["structuredContent"]["sha256"]
    assert base64.b64decode(first["structuredContent"]["base64"]).startswith(b"%PDF")


async def test_git_reads_repositories_under_the_roots(gw: Gateway, repo: Path) -> None:
    listed = await gw.execute("essentials__git_list_repositories")
    assert "project" in str(listed["structuredContent"])
    log = text_of(await gw.execute("essentials__git_log", {"repo": "project"}))
    assert "say hello" in log and "first commit" in log
    diff = text_of(await gw.execute("essentials__git_diff", {"repo": "project", "base": "HEAD~1"}))
    assert "-    return 'hi'" in diff and "+    return 'hello'" in diff
    show = text_of(
        await gw.execute(
            "essentials__git_show", {"repo": "project", "rev": "HEAD~1", "path": "app.py"}
        )
    )
    assert "return 'hi'" in show
    grep = text_of(
        await gw.execute("essentials__git_grep", {"repo": "project", "pattern": "hello"})
    )
    assert "app.py:1:def hello" in grep
    blame = text_of(
        await gw.execute("essentials__git_blame", {"repo": "project", "path": "app.py"})
    )
    assert "Ada" in blame


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"repo": "/etc"}, "not a git repository"),
        ({"repo": "../../"}, "not a git repository"),
        ({"repo": "project", "rev": "--output=/tmp/x"}, "invalid revision"),
        ({"repo": "project", "path": "../secret"}, "invalid path"),
    ],
)
async def test_git_refuses_escapes(
    gw: Gateway, repo: Path, arguments: dict[str, str], fragment: str
) -> None:
    result = await gw.execute("essentials__git_log", arguments)
    assert result["isError"] is True
    assert fragment in text_of(result)


async def test_git_ignores_a_repositorys_own_commands(
    gw: Gateway, repo: Path, tmp_path: Path
) -> None:
    canary = tmp_path / "pwned"
    _git(repo, "config", "core.fsmonitor", f"touch {canary}")
    _git(repo, "config", "diff.external", f"touch {canary}")
    await gw.execute("essentials__git_diff", {"repo": "project", "base": "HEAD~1"})
    await gw.execute("essentials__git_grep", {"repo": "project", "pattern": "x"})
    await gw.execute("essentials__git_log", {"repo": "project"})
    assert not canary.exists()


async def test_git_ignores_config_and_drivers_a_repository_carries(
    gw: Gateway, repo: Path, tmp_path: Path
) -> None:
    """A tracked `.gitconfig` is not the user's config (HOME is not the repository), and
    textconv drivers never run: not from the repository's config, not for blame/show."""
    canary = tmp_path / "pwned"
    driver = f"sh -c 'touch {canary} && cat $0'"  # git appends the file to convert
    (repo / ".gitconfig").write_text(f'[diff "conv"]\n\ttextconv = {driver}\n')
    (repo / ".gitattributes").write_text("*.py diff=conv\n")
    _git(repo, "add", ".gitconfig", ".gitattributes")
    _git(repo, "commit", "-q", "-m", "attributes")
    blame = await gw.execute("essentials__git_blame", {"repo": "project", "path": "app.py"})
    shown = await gw.execute(
        "essentials__git_show", {"repo": "project", "rev": "HEAD", "path": "app.py"}
    )
    assert not canary.exists()
    assert "hello" in text_of(blame) and "hello" in text_of(shown)
    _git(repo, "config", "diff.conv.textconv", driver)  # the repository's own config
    await gw.execute("essentials__git_blame", {"repo": "project", "path": "app.py"})
    await gw.execute("essentials__git_show", {"repo": "project", "rev": "HEAD", "path": "app.py"})
    assert not canary.exists()
