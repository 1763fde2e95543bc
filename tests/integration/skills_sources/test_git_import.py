"""Importing skills from real git repositories served by `git http-backend` on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from skills.sources import FetchedSource, SourceError, resolve_source
from skills.sources.git import Git, clone, guard_url
from skills.sources.resolve import _fetch_url
from tests.integration.skills_sources.conftest import SourceSettings
from tests.support import GitHttpServer, git, skill_md

KIT = {
    "README.md": "# acme kit\n",
    "skills/alpha/SKILL.md": skill_md("alpha", body="Alpha v1.\n"),
    "skills/beta/SKILL.md": skill_md("beta"),
    "skills/beta/scripts/run.sh": "echo beta\n",
    ".claude/skills/claude-one/SKILL.md": skill_md("claude-one"),
    ".agents/skills/agent-one/SKILL.md": skill_md("agent-one"),
    "packs/tools/skills/nested/SKILL.md": skill_md("nested"),
    "packs/tools/skills/nested/reference.md": "details\n",
}
KIT_ROOT_SKILLS = {
    ("alpha", "skills/alpha"),
    ("beta", "skills/beta"),
    ("claude-one", ".claude/skills/claude-one"),
    ("agent-one", ".agents/skills/agent-one"),
}


@pytest.fixture
def kit(git_http_server: GitHttpServer) -> str:
    """acme/kit on the loopback server; its commit."""
    return git_http_server.publish("acme/kit", KIT, "first")


def names(fetched: FetchedSource) -> set[tuple[str, str]]:
    return {(s.name, s.subpath) for s in fetched.skills}


async def resolve_error(source: str, settings: object, **kw: str) -> SourceError:
    with pytest.raises(SourceError) as caught:
        async with resolve_source(source, settings=settings, **kw):  # type: ignore[arg-type]
            pass
    return caught.value


# --- each source form ----------------------------------------------------------------


async def test_owner_repo(
    kit: str, git_http_server: GitHttpServer, source_settings: SourceSettings, temp_root: Path
) -> None:
    async with resolve_source("acme/kit", settings=source_settings()) as fetched:
        assert fetched.kind == "git"
        assert fetched.url == git_http_server.url("acme/kit")
        assert fetched.commit == kit
        assert fetched.ref is None
        assert names(fetched) == KIT_ROOT_SKILLS
        beta = next(s for s in fetched.skills if s.name == "beta")
        assert (beta.root / "scripts" / "run.sh").read_text() == "echo beta\n"
        assert beta.description == "A test skill."
        assert beta.root.is_relative_to(temp_root)
        roots = [s.root for s in fetched.skills]
    assert all(not r.exists() for r in roots)
    assert list(temp_root.iterdir()) == []


async def test_owner_repo_sub_path_fetches_only_that_folder(
    kit: str, source_settings: SourceSettings
) -> None:
    async with resolve_source("acme/kit/packs/tools", settings=source_settings()) as fetched:
        assert fetched.commit == kit
        assert fetched.subpath == "packs/tools"
        assert names(fetched) == {("nested", "packs/tools/skills/nested")}
        nested = fetched.skills[0].root
        assert (nested / "reference.md").read_text() == "details\n"
        # a sparse, partial clone: the rest of the repository was not checked out
        assert not (fetched.checkout / "skills").exists()
        assert (fetched.checkout / "README.md").exists()  # top-level files come along


async def test_owner_repo_at_skill(kit: str, source_settings: SourceSettings) -> None:
    async with resolve_source("acme/kit@beta", settings=source_settings()) as fetched:
        assert names(fetched) == {("beta", "skills/beta")}
        assert fetched.commit == kit
    # the tool matches names case-insensitively; `skill=` says the same as `@skill`
    async with resolve_source("acme/kit", settings=source_settings(), skill="BETA") as fetched:
        assert names(fetched) == {("beta", "skills/beta")}


async def test_tree_url_with_ref_and_path(
    kit: str, git_http_server: GitHttpServer, source_settings: SourceSettings
) -> None:
    work = git_http_server.work("acme/kit")
    release = git_http_server.publish(
        "acme/kit",
        {"skills/alpha/SKILL.md": skill_md("alpha", body="Alpha release.\n")},
        branch="release",
    )
    git(work, "checkout", "--quiet", "main")
    assert release != kit
    tree = f"{git_http_server.base_url}/acme/kit/tree/release/skills/alpha"
    async with resolve_source(tree, settings=source_settings()) as fetched:
        assert fetched.ref == "release"
        assert fetched.commit == release
        assert fetched.subpath == "skills/alpha"
        assert names(fetched) == {("alpha", "skills/alpha")}
        assert "Alpha release." in (fetched.skills[0].root / "SKILL.md").read_text()
    # the same ref as a fragment, and as the `ref=` argument
    async with resolve_source("acme/kit#release@alpha", settings=source_settings()) as fetched:
        assert (fetched.commit, fetched.ref) == (release, "release")
    async with resolve_source("acme/kit", settings=source_settings(), ref="main") as fetched:
        assert fetched.commit == kit
        assert "Alpha v1." in next(
            (s.root / "SKILL.md").read_text() for s in fetched.skills if s.name == "alpha"
        )


async def test_tag_ref(
    kit: str, git_http_server: GitHttpServer, source_settings: SourceSettings
) -> None:
    git(git_http_server.work("acme/kit"), "tag", "v1.0")
    git_http_server.push("acme/kit")
    git_http_server.publish("acme/kit", {"skills/gamma/SKILL.md": skill_md("gamma")})
    async with resolve_source("acme/kit#v1.0", settings=source_settings()) as fetched:
        assert fetched.commit == kit
        assert "gamma" not in {s.name for s in fetched.skills}


async def test_plain_git_url(
    kit: str, git_http_server: GitHttpServer, source_settings: SourceSettings
) -> None:
    # not on the configured "GitHub" base: just a git URL
    settings = source_settings(skills_github_base="https://github.com")
    async with resolve_source(git_http_server.url("acme/kit"), settings=settings) as fetched:
        assert fetched.kind == "git"
        assert fetched.url == git_http_server.url("acme/kit")
        assert fetched.commit == kit
        assert names(fetched) == KIT_ROOT_SKILLS
    url_with_fragment = git_http_server.url("acme/kit") + "#main@alpha"
    async with resolve_source(url_with_fragment, settings=settings) as fetched:
        assert names(fetched) == {("alpha", "skills/alpha")}


async def test_local_path(
    kit: str, git_http_server: GitHttpServer, source_settings: SourceSettings, tmp_path: Path
) -> None:
    work = git_http_server.work("acme/kit")
    async with resolve_source(str(work), settings=source_settings()) as fetched:
        assert fetched.kind == "local"
        assert fetched.url == str(work)
        assert fetched.commit == kit  # a git work tree: its HEAD is pinned
        assert names(fetched) == KIT_ROOT_SKILLS
        assert fetched.skills[0].root.is_relative_to(work)
    assert (work / "skills" / "alpha" / "SKILL.md").exists()  # never deleted
    async with resolve_source(str(work / "packs" / "tools"), settings=source_settings()) as fetched:
        assert names(fetched) == {("nested", "skills/nested")}
        assert fetched.commit == kit

    plain = tmp_path / "plain"
    (plain / "helper").mkdir(parents=True)
    (plain / "helper" / "SKILL.md").write_text(skill_md("helper"))
    async with resolve_source(str(plain), settings=source_settings()) as fetched:
        assert (fetched.kind, fetched.commit) == ("local", None)
        assert names(fetched) == {("helper", "helper")}


async def test_local_path_at_a_ref_is_cloned(
    kit: str, git_http_server: GitHttpServer, source_settings: SourceSettings, temp_root: Path
) -> None:
    work = git_http_server.work("acme/kit")
    git(work, "tag", "v1")
    newer = git_http_server.publish(
        "acme/kit", {"skills/alpha/SKILL.md": skill_md("alpha", body="v2\n")}
    )
    assert newer != kit
    async with resolve_source(
        str(work / "skills"), settings=source_settings(), ref="v1"
    ) as fetched:
        assert (fetched.kind, fetched.commit, fetched.ref) == ("local", kit, "v1")
        alpha = next(s for s in fetched.skills if s.name == "alpha")
        assert alpha.subpath == "skills/alpha"
        assert "Alpha v1." in (alpha.root / "SKILL.md").read_text()
        assert alpha.root.is_relative_to(temp_root)
    assert list(temp_root.iterdir()) == []


# --- layouts ------------------------------------------------------------------------------

MARKETPLACE = {
    "name": "acme-market",
    "plugins": [
        {"name": "writing", "source": "./plugins/writing", "skills": ["./skills/editor"]},
        {"name": "ops", "source": "./plugins/ops"},
    ],
}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"SKILL.md": skill_md("solo"), "scripts/x.py": "print()\n"}, {("solo", "")}),
        ({"skills/one/SKILL.md": skill_md("one")}, {("one", "skills/one")}),
        ({".claude/skills/cc/SKILL.md": skill_md("cc")}, {("cc", ".claude/skills/cc")}),
        ({".agents/skills/ag/SKILL.md": skill_md("ag")}, {("ag", ".agents/skills/ag")}),
        (
            {
                ".claude-plugin/marketplace.json": json.dumps(MARKETPLACE),
                "plugins/writing/skills/editor/SKILL.md": skill_md("editor"),
                "plugins/ops/skills/deploy/SKILL.md": skill_md("deploy"),
            },
            {("editor", "plugins/writing/skills/editor"), ("deploy", "plugins/ops/skills/deploy")},
        ),
        (
            {
                ".claude-plugin/plugin.json": json.dumps({"name": "p", "skills": ["./lib/tool"]}),
                "lib/tool/SKILL.md": skill_md("tool"),
            },
            {("tool", "lib/tool")},
        ),
        ({"docs/deep/er/SKILL.md": skill_md("buried")}, {("buried", "docs/deep/er")}),
    ],
    ids=["root", "skills-dir", "claude", "agents", "marketplace", "plugin-json", "deep-fallback"],
)
async def test_layouts(
    files: dict[str, str],
    expected: set[tuple[str, str]],
    git_http_server: GitHttpServer,
    source_settings: SourceSettings,
) -> None:
    commit = git_http_server.publish("acme/layout", files)
    async with resolve_source("acme/layout", settings=source_settings()) as fetched:
        assert fetched.commit == commit
        assert names(fetched) == expected


async def test_marketplace_plugins_are_named(
    git_http_server: GitHttpServer, source_settings: SourceSettings
) -> None:
    git_http_server.publish(
        "acme/market",
        {
            ".claude-plugin/marketplace.json": json.dumps(MARKETPLACE),
            "plugins/writing/skills/editor/SKILL.md": skill_md("editor"),
        },
    )
    async with resolve_source("acme/market@editor", settings=source_settings()) as fetched:
        assert [(s.name, s.plugin) for s in fetched.skills] == [("editor", "writing")]


# --- re-import ---------------------------------------------------------------------------


async def test_reimport_gets_the_new_commit_and_the_pin_keeps_the_old(
    kit: str, git_http_server: GitHttpServer, source_settings: SourceSettings
) -> None:
    async with resolve_source("acme/kit@alpha", settings=source_settings()) as first:
        assert first.commit == kit
    second_commit = git_http_server.publish(
        "acme/kit", {"skills/alpha/SKILL.md": skill_md("alpha", "Now better.", "Alpha v2.\n")}
    )
    async with resolve_source("acme/kit@alpha", settings=source_settings()) as second:
        assert second.commit == second_commit != kit
        assert second.skills[0].description == "Now better."
        assert "Alpha v2." in (second.skills[0].root / "SKILL.md").read_text()
    # the pinned commit still resolves to the first version (fetched by sha)
    async with resolve_source("acme/kit@alpha", settings=source_settings(), ref=kit) as pinned:
        assert pinned.commit == kit
        assert "Alpha v1." in (pinned.skills[0].root / "SKILL.md").read_text()
    async with resolve_source("acme/kit/skills/alpha", settings=source_settings(), ref=kit) as p:
        assert p.commit == kit and names(p) == {("alpha", "skills/alpha")}


# --- errors --------------------------------------------------------------------------------


async def test_missing_repository(
    kit: str, git_http_server: GitHttpServer, source_settings: SourceSettings, temp_root: Path
) -> None:
    err = await resolve_error("acme/nope", source_settings())
    assert (err.status_code, err.code) == (404, "source_not_found")
    assert git_http_server.url("acme/nope") in err.message
    assert list(temp_root.iterdir()) == []


async def test_missing_skill_names_the_ones_there(
    kit: str, source_settings: SourceSettings, temp_root: Path
) -> None:
    err = await resolve_error("acme/kit@gamma", source_settings())
    assert (err.status_code, err.code) == (404, "skill_not_found")
    assert "'gamma'" in err.message
    assert "agent-one, alpha, beta, claude-one" in err.message
    assert list(temp_root.iterdir()) == []


async def test_missing_ref_and_path(kit: str, source_settings: SourceSettings) -> None:
    err = await resolve_error("acme/kit#no-such-branch", source_settings())
    assert (err.status_code, err.code) == (404, "ref_not_found")
    assert "'no-such-branch'" in err.message
    err = await resolve_error("acme/kit/no/such/dir", source_settings())
    assert (err.status_code, err.code) == (404, "path_not_found")
    assert "'no/such/dir'" in err.message and kit[:12] in err.message
    err = await resolve_error("acme/kit", source_settings(), ref="f" * 40)
    assert err.status_code == 404


async def test_a_repository_without_skills(
    git_http_server: GitHttpServer, source_settings: SourceSettings
) -> None:
    git_http_server.publish(
        "acme/empty", {"README.md": "hi\n", "x/SKILL.md": "---\nname: x\n---\nno description\n"}
    )
    err = await resolve_error("acme/empty", source_settings())
    assert (err.status_code, err.code) == (422, "no_skills_found")
    assert "x/SKILL.md: front matter lacks description" in err.message


async def test_conflicting_skill_or_ref(kit: str, source_settings: SourceSettings) -> None:
    err = await resolve_error("acme/kit@alpha", source_settings(), skill="beta")
    assert err.code == "invalid_source" and "'alpha'" in err.message
    err = await resolve_error("acme/kit#main", source_settings(), ref="release")
    assert err.code == "invalid_source"


async def test_ssrf_guard_refuses_loopback_before_any_request(
    kit: str, git_http_server: GitHttpServer, source_settings: SourceSettings, temp_root: Path
) -> None:
    settings = source_settings(allow_private_urls=False)
    for source in ("acme/kit", git_http_server.url("acme/kit"), "http://localhost:1/x/y.git"):
        err = await resolve_error(source, settings)
        assert (err.status_code, err.code) == (422, "url_refused")
        assert "MCPGW_ALLOW_PRIVATE_URLS" in err.message
    assert git_http_server.requests == []
    assert list(temp_root.iterdir()) == []


async def test_local_import_is_off_unless_enabled(
    kit: str, git_http_server: GitHttpServer, source_settings: SourceSettings
) -> None:
    settings = source_settings(skills_allow_local_import=False)
    work = git_http_server.work("acme/kit")
    for source in (str(work), f"file://{git_http_server.root}/acme/kit.git"):
        err = await resolve_error(source, settings)
        assert (err.status_code, err.code) == (403, "local_import_disabled")
    err = await resolve_error("/no/such/folder", source_settings())
    assert (err.status_code, err.code) == (404, "source_not_found")


async def test_file_url_when_local_import_is_on(
    kit: str, git_http_server: GitHttpServer, source_settings: SourceSettings
) -> None:
    url = f"file://{git_http_server.root}/acme/kit.git"
    async with resolve_source(url + "#main@beta", settings=source_settings()) as fetched:
        assert (fetched.kind, fetched.commit) == ("git", kit)
        assert names(fetched) == {("beta", "skills/beta")}


async def test_credentials_in_urls_are_never_shown_or_kept(
    kit: str, git_http_server: GitHttpServer, source_settings: SourceSettings
) -> None:
    with_creds = f"http://alice:s3cr3t@127.0.0.1:{git_http_server.port}"
    err = await resolve_error(f"{with_creds}/acme/nope.git", source_settings())
    assert "s3cr3t" not in err.message and "alice" not in err.message
    async with resolve_source(f"{with_creds}/acme/kit.git", settings=source_settings()) as fetched:
        assert fetched.url == git_http_server.url("acme/kit")


async def test_unsupported_sources(source_settings: SourceSettings) -> None:
    err = await resolve_error(
        "https://raw.githubusercontent.com/o/r/main/SKILL.md", source_settings()
    )
    assert err.code == "unsupported_source" and "upload" in err.message
    err = await resolve_error("git://example.com/r.git", source_settings())
    assert err.code == "unsupported_source"
    err = await resolve_error("ext::sh -c id", source_settings())
    assert err.code == "invalid_source"


def test_ssh_sources_are_fetched_over_https(source_settings: SourceSettings) -> None:
    from skills.sources import parse_source

    settings = source_settings()
    for text, url in [
        ("git@github.com:o/r.git", "https://github.com/o/r.git"),
        ("ssh://git@git.example.com:2222/team/r.git", "https://git.example.com/team/r.git"),
    ]:
        assert _fetch_url(parse_source(text), settings) == (url, False)


# --- safety limits ---------------------------------------------------------------------------


async def test_symlinks_are_checked_out_as_plain_files(
    git_http_server: GitHttpServer, source_settings: SourceSettings
) -> None:
    work = git_http_server.work("acme/links")
    (work / "skills" / "s").mkdir(parents=True)
    (work / "skills" / "s" / "SKILL.md").write_text(skill_md("s"))
    os.symlink("/etc/hostname", work / "skills" / "s" / "leak")
    git_http_server.publish("acme/links", {})
    async with resolve_source("acme/links", settings=source_settings()) as fetched:
        leak = fetched.skills[0].root / "leak"
        assert not leak.is_symlink()
        assert leak.read_text() == "/etc/hostname"


async def test_a_clone_bigger_than_the_budget_is_stopped(
    git_http_server: GitHttpServer, source_settings: SourceSettings, temp_root: Path
) -> None:
    work = git_http_server.work("acme/big")
    (work / "blob.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    git_http_server.publish("acme/big", {"SKILL.md": skill_md("big")})
    err = await resolve_error("acme/big", source_settings(skills_max_source_bytes=1024 * 1024))
    assert (err.status_code, err.code) == (422, "source_too_large")
    assert list(temp_root.iterdir()) == []


async def test_a_slow_host_hits_the_timeout(
    kit: str, git_http_server: GitHttpServer, source_settings: SourceSettings, temp_root: Path
) -> None:
    git_http_server.delay = 5
    started = time.monotonic()
    err = await resolve_error("acme/kit", source_settings(skills_git_timeout_seconds=0.5))
    assert time.monotonic() - started < 4
    assert (err.status_code, err.code) == (502, "source_unavailable")
    assert "longer than 0.5s" in err.message
    assert list(temp_root.iterdir()) == []


async def test_an_error_inside_the_block_still_removes_the_clone(
    kit: str, source_settings: SourceSettings, temp_root: Path
) -> None:
    checkouts: list[Path] = []

    async def use_and_fail() -> None:
        async with resolve_source("acme/kit", settings=source_settings()) as fetched:
            checkouts.append(fetched.checkout)
            raise RuntimeError("caller failed")

    with pytest.raises(RuntimeError, match="caller failed"):
        await use_and_fail()
    assert checkouts and not checkouts[0].exists()
    assert list(temp_root.iterdir()) == []


async def test_the_host_is_pinned_to_the_checked_addresses(
    kit: str, git_http_server: GitHttpServer, tmp_path: Path
) -> None:
    """git fetches from the address the guard approved, not from a second DNS answer:
    `skills.invalid` resolves nowhere, yet the clone reaches the pinned loopback server."""
    home = tmp_path / "home"
    home.mkdir()
    port = git_http_server.port
    runner = Git(
        home=home,
        timeout=30,
        max_bytes=10**8,
        extra_config=[f"http.curloptResolve=skills.invalid:{port}:127.0.0.1"],
    )
    commit = await clone(runner, f"http://skills.invalid:{port}/acme/kit.git", tmp_path / "c")
    assert commit == kit
    assert await guard_url("http://127.0.0.1/x.git", allow_private=True) == []
    # an address literal has nothing to pin; redirects are still off
    assert await guard_url("https://1.1.1.1/o/r.git", allow_private=False) == [
        "http.followRedirects=false"
    ]


async def test_the_guard_pins_every_address_a_name_resolves_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No public DNS here: the loop's resolver is replaced by a fixed answer (a stand-in)."""
    answers = {
        "git.example.org": ["93.184.216.34", "2606:2800:220:1::248"],
        "sneaky.example": ["10.0.0.7"],
    }

    async def fake_getaddrinfo(host: str, port: object, **_: object) -> list[tuple[object, ...]]:
        return [(0, 0, 0, "", (address, 0)) for address in answers[host]]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_getaddrinfo)
    assert await guard_url("https://git.example.org/o/r.git", allow_private=False) == [
        "http.curloptResolve=git.example.org:443:93.184.216.34,[2606:2800:220:1::248]",
        "http.followRedirects=false",
    ]
    with pytest.raises(SourceError) as caught:
        await guard_url("http://u:pw@sneaky.example:8080/r.git", allow_private=False)
    assert caught.value.code == "url_refused"
    assert "10.0.0.7" in caught.value.message and "pw" not in caught.value.message


async def test_other_http_urls_are_tried_as_git_remotes(
    kit: str, git_http_server: GitHttpServer, source_settings: SourceSettings
) -> None:
    """The tool would look for a /.well-known/skills index at such a URL; the gateway
    has no such fetcher and tries the URL as a git remote instead."""
    url = git_http_server.url("acme/kit") + "/"
    settings = source_settings(skills_github_base="https://github.com")
    async with resolve_source(url, settings=settings) as fetched:
        assert fetched.parsed.type == "well-known"
        assert (fetched.kind, fetched.commit) == ("git", kit)


@pytest.mark.parametrize("ref", ["-upload-pack=x", "a..b", "main:evil", "has space", "x.lock"])
async def test_bad_refs_are_refused_before_git_runs(
    ref: str, git_http_server: GitHttpServer, source_settings: SourceSettings
) -> None:
    err = await resolve_error("acme/kit", source_settings(), ref=ref)
    assert err.code == "invalid_source" and "not a valid git" in err.message
    assert git_http_server.requests == []
