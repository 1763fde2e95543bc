"""The `npx skills` source grammar (skills 1.7.4 `parseSource`), table-driven."""

from __future__ import annotations

import os

import pytest

from skills.sources import ParsedSource, SourceError, mask_credentials, parse_source
from skills.sources.errors import strip_credentials

GH = "https://github.com"

CASES: list[tuple[str, ParsedSource]] = [
    # GitHub shorthand
    ("vercel-labs/agent-skills", ParsedSource("github", f"{GH}/vercel-labs/agent-skills.git")),
    ("o/r/", ParsedSource("github", f"{GH}/o/r.git")),
    ("o/r/skills/pdf", ParsedSource("github", f"{GH}/o/r.git", subpath="skills/pdf")),
    ("o/r/a/./b/", ParsedSource("github", f"{GH}/o/r.git", subpath="a/b")),
    ("o/r@pdf", ParsedSource("github", f"{GH}/o/r.git", skill_filter="pdf")),
    (
        "o/r@Convex Best Practices",
        ParsedSource("github", f"{GH}/o/r.git", skill_filter="Convex Best Practices"),
    ),
    ("o/r.git", ParsedSource("github", f"{GH}/o/r.git")),
    # the tool reads `owner/repo/sub@x` as a sub-path, not a skill filter
    ("o/r/sub@x", ParsedSource("github", f"{GH}/o/r.git", subpath="sub@x")),
    # `#ref` and `#ref@skill` fragments
    ("o/r#v1.2", ParsedSource("github", f"{GH}/o/r.git", ref="v1.2")),
    ("o/r#dev@pdf", ParsedSource("github", f"{GH}/o/r.git", ref="dev", skill_filter="pdf")),
    ("o/r/skills#dev", ParsedSource("github", f"{GH}/o/r.git", ref="dev", subpath="skills")),
    ("github:o/r", ParsedSource("github", f"{GH}/o/r.git")),
    (
        "github:o/r#main@pdf",
        ParsedSource("github", f"{GH}/o/r.git", ref="main", skill_filter="pdf"),
    ),
    # the tool's aliases for moved repositories
    ("vercel-labs/vercel-skills", ParsedSource("github", f"{GH}/vercel-labs/agent-skills.git")),
    # github.com URLs
    ("https://github.com/o/r", ParsedSource("github", f"{GH}/o/r.git")),
    ("https://github.com/o/r.git", ParsedSource("github", f"{GH}/o/r.git")),
    ("github.com/o/r", ParsedSource("github", f"{GH}/o/r.git")),
    ("https://github.com/o/r/tree/main", ParsedSource("github", f"{GH}/o/r.git", ref="main")),
    (
        "https://github.com/vercel-labs/agent-skills/tree/main/skills/web-design-guidelines",
        ParsedSource(
            "github",
            f"{GH}/vercel-labs/agent-skills.git",
            ref="main",
            subpath="skills/web-design-guidelines",
        ),
    ),
    ("https://github.com/o/r#v2", ParsedSource("github", f"{GH}/o/r.git", ref="v2")),
    # GitLab (gitlab.com and self-hosted tree URLs)
    ("https://gitlab.com/g/sub/r", ParsedSource("gitlab", "https://gitlab.com/g/sub/r.git")),
    ("https://gitlab.com/g/r.git", ParsedSource("gitlab", "https://gitlab.com/g/r.git")),
    ("gitlab:g/r", ParsedSource("gitlab", "https://gitlab.com/g/r.git")),
    (
        "https://gitlab.com/g/r/-/tree/main/skills/x",
        ParsedSource("gitlab", "https://gitlab.com/g/r.git", ref="main", subpath="skills/x"),
    ),
    (
        "https://git.example.com/team/r/-/tree/dev",
        ParsedSource("gitlab", "https://git.example.com/team/r.git", ref="dev"),
    ),
    # Azure Repos
    (
        "https://dev.azure.com/org/proj/_git/repo?path=/skills/web&version=GBmain",
        ParsedSource(
            "git", "https://dev.azure.com/org/proj/_git/repo", ref="main", subpath="skills/web"
        ),
    ),
    # any git URL
    ("https://git.example.com/x/r.git", ParsedSource("git", "https://git.example.com/x/r.git")),
    ("http://127.0.0.1:8080/x.git", ParsedSource("git", "http://127.0.0.1:8080/x.git")),
    (
        "http://127.0.0.1:8080/x.git#v1",
        ParsedSource("git", "http://127.0.0.1:8080/x.git", ref="v1"),
    ),
    ("git@github.com:o/r.git", ParsedSource("git", "git@github.com:o/r.git")),
    ("ssh://git@host.example/x/r.git", ParsedSource("git", "ssh://git@host.example/x/r.git")),
    ("file:///srv/repos/r", ParsedSource("git", "file:///srv/repos/r")),
    # http(s) URLs not ending in .git: the tool's well-known endpoints
    ("https://example.com/docs", ParsedSource("well-known", "https://example.com/docs")),
    # hosted artifacts are downloads, not repositories
    (
        "https://raw.githubusercontent.com/o/r/main/SKILL.md",
        ParsedSource("download", "https://raw.githubusercontent.com/o/r/main/SKILL.md"),
    ),
    (
        "https://github.com/o/r/archive/refs/heads/main.zip",
        ParsedSource("download", "https://github.com/o/r/archive/refs/heads/main.zip"),
    ),
    # the catalog
    ("catalog:o/r/pdf", ParsedSource("catalog", "o/r/pdf", catalog_id="o/r/pdf")),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_source_forms(text: str, expected: ParsedSource) -> None:
    assert parse_source(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/srv/skills", "/srv/skills"),
        ("/srv/skills/../other", "/srv/other"),
        ("./my-skills", os.path.join(os.getcwd(), "my-skills")),
        ("../up", os.path.normpath(os.path.join(os.getcwd(), "..", "up"))),
        (".", os.getcwd()),
    ],
)
def test_local_paths_resolve_against_the_working_directory(text: str, expected: str) -> None:
    assert parse_source(text) == ParsedSource("local", expected)


BASE = "http://127.0.0.1:9418/git"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("o/r", ParsedSource("github", f"{BASE}/o/r.git")),
        ("o/r@s", ParsedSource("github", f"{BASE}/o/r.git", skill_filter="s")),
        (f"{BASE}/o/r", ParsedSource("github", f"{BASE}/o/r.git")),
        (f"{BASE}/o/r.git", ParsedSource("github", f"{BASE}/o/r.git")),
        (f"{BASE}/o/r/tree/v2", ParsedSource("github", f"{BASE}/o/r.git", ref="v2")),
        (
            f"{BASE}/o/r/tree/main/skills/a#x@pdf",
            # the tree URL's own ref wins over the fragment's; the fragment's skill stays
            ParsedSource(
                "github", f"{BASE}/o/r.git", ref="main", subpath="skills/a", skill_filter="pdf"
            ),
        ),
        (
            f"{BASE}/o/r#dev@pdf",
            ParsedSource("github", f"{BASE}/o/r.git", ref="dev", skill_filter="pdf"),
        ),
        # github.com URLs still mean github.com
        ("https://github.com/o/r", ParsedSource("github", f"{GH}/o/r.git")),
        # another path on the same host is just a git URL
        (
            "http://127.0.0.1:9418/other/o/r.git",
            ParsedSource("git", "http://127.0.0.1:9418/other/o/r.git"),
        ),
    ],
)
def test_a_configured_github_base_is_read_like_github(text: str, expected: ParsedSource) -> None:
    assert parse_source(text, github_base=BASE + "/") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 3000, "longer than"),
        ("ext::sh -c touch% /tmp/pwned", "remote-helper"),
        ("fd::17", "remote-helper"),
        ("foo", "neither a path"),
        ("-uupload-pack=touch /tmp/x", "cannot start with '-'"),
        ("--upload-pack=x", "cannot start with '-'"),
        ("o/r/../../etc", "contains '..'"),
        ("https://github.com/o/r/tree/main/../../x", "contains '..'"),
        ("https://gitlab.com/g/r/-/tree/main/a/../../b", "contains '..'"),
        ("a b/c", "owner 'a b'"),
        ("o/r?x", "repository 'r?x'"),
        ("o/..", "repository '..'"),
        ("o/r\nmore", "control characters"),
        ("ftp://host/r.git", "neither a path"),
        ("https:///nohost.git", "no host"),
        ("catalog:", "catalog id"),
        ("catalog:a/../b", "catalog id"),
    ],
)
def test_bad_sources_are_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(SourceError) as caught:
        parse_source(text)
    assert caught.value.status_code == 422
    assert caught.value.code == "invalid_source"
    assert message in caught.value.message


def test_credentials_never_reach_an_error_message() -> None:
    with pytest.raises(SourceError) as caught:
        parse_source("ftp://alice:s3cret@host/r.git")
    assert "s3cret" not in caught.value.message
    assert "ftp://***@host/r.git" in caught.value.message
    assert caught.value.body()["message"] == caught.value.message


@pytest.mark.parametrize(
    ("text", "masked", "stripped"),
    [
        ("https://u:p@h/r.git", "https://***@h/r.git", "https://h/r.git"),
        (
            "clone https://tok@h/r.git failed",
            "clone https://***@h/r.git failed",
            "clone https://h/r.git failed",
        ),
        ("git@github.com:o/r.git", "git@github.com:o/r.git", "git@github.com:o/r.git"),
        ("https://h/r.git", "https://h/r.git", "https://h/r.git"),
    ],
)
def test_masking(text: str, masked: str, stripped: str) -> None:
    assert mask_credentials(text) == masked
    assert strip_credentials(text) == stripped


def test_parse_is_pure() -> None:
    """No I/O: a path that does not exist and a host that does not resolve still parse."""
    assert parse_source("/no/such/dir").type == "local"
    assert parse_source("https://no-such-host.invalid/x/r.git").type == "git"
