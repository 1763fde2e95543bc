from pathlib import Path

import pytest
import typer

from gateway.cli_servers import parse_command, parse_limits, parse_replicas, read_transforms


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            ["npx", "-y", "@modelcontextprotocol/server-everything"],
            ("npx", {"package": "@modelcontextprotocol/server-everything", "args": []}, {}),
        ),
        (
            ["npx", "-y", "@scope/pkg@1.2.3", "stdio", "--flag"],
            ("npx", {"package": "@scope/pkg", "version": "1.2.3", "args": ["stdio", "--flag"]}, {}),
        ),
        (["uvx", "mcp-server-time"], ("uvx", {"package": "mcp-server-time", "args": []}, {})),
        (
            ["uvx", "--from", "mcp-server-git==1.0", "mcp-server-git", "--repository", "."],
            (
                "uvx",
                {"package": "mcp-server-git", "version": "1.0", "args": ["--repository", "."]},
                {},
            ),
        ),
        (
            ["docker", "run", "-i", "--rm", "-e", "TOKEN=abc", "mcp/time:latest", "--tz", "UTC"],
            ("docker", {"image": "mcp/time:latest", "args": ["--tz", "UTC"]}, {"TOKEN": "abc"}),
        ),
        (["https://mcp.example.com/mcp"], ("remote", {"url": "https://mcp.example.com/mcp"}, {})),
    ],
)
def test_commands_like_claude_mcp_add(command: list[str], expected: tuple[object, ...]) -> None:
    assert parse_command(command) == expected


@pytest.mark.parametrize(
    "command", [[], ["node", "server.js"], ["npx", "-y"], ["docker", "build", "."], ["uvx"]]
)
def test_unsupported_commands_say_what_works(command: list[str]) -> None:
    with pytest.raises(typer.BadParameter):
        parse_command(command)


def test_limits_options_become_the_servers_limits() -> None:
    assert parse_limits(None, None, None, None) is None
    assert parse_limits(120, 65536, ["slow=300", "big=5"], ["big=1024"]) == {
        "call_timeout_seconds": 120,
        "max_request_bytes": 65536,
        "tools": {
            "slow": {"call_timeout_seconds": 300.0},
            "big": {"call_timeout_seconds": 5.0, "max_request_bytes": 1024},
        },
    }
    with pytest.raises(typer.BadParameter):
        parse_limits(None, None, ["slow=soon"], None)
    with pytest.raises(typer.BadParameter):
        parse_limits(None, None, ["slow"], None)


def test_transforms_are_read_from_yaml_or_json(tmp_path: Path) -> None:
    bare = tmp_path / "bare.yaml"
    bare.write_text("tools:\n  get-sum: {rename: add, fixed: {b: 100}}\nhide: ['t*']\n")
    expected = {"tools": {"get-sum": {"rename": "add", "fixed": {"b": 100}}}, "hide": ["t*"]}
    assert read_transforms(str(bare)) == expected
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text('{"transforms": {"hide": ["t*"]}}')
    assert read_transforms(str(wrapped)) == {"hide": ["t*"]}
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert read_transforms(str(empty)) == {}
    for text in ("[1, 2]", "tools: [unclosed"):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(typer.BadParameter):
            read_transforms(str(bad))
    with pytest.raises(typer.BadParameter):
        read_transforms(str(tmp_path / "missing.yaml"))


def test_replica_options_become_config_replicas() -> None:
    assert parse_replicas(None, None, None) is None
    found = parse_replicas(
        ["https://b.example/mcp=3", "https://c.example/mcp?x=y"], None, "weighted"
    )
    assert found == {
        "endpoints": [
            {"url": "https://b.example/mcp", "weight": 3},
            {"url": "https://c.example/mcp?x=y"},  # `=y` is no weight: part of the URL
        ],
        "strategy": "weighted",
    }
    assert parse_replicas(None, 3, None) == {"count": 3}
