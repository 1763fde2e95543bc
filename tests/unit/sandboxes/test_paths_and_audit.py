"""Path confinement, secret masking and output capping: the pure parts of pillar 3."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidInput
from sandboxes.audit import masker, secret_values
from sandboxes.paths import exec_cwd, workspace_path
from sandboxes.providers.base import OutputCollector
from sandboxes.providers.cgroups import _keyed
from sandboxes.templates import code_argv


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", ""),
        ("/workspace", ""),
        ("/workspace/", ""),
        ("a/b.txt", "a/b.txt"),
        ("./a//b/", "a/b"),
        ("/workspace/a/./b", "a/b"),
    ],
)
def test_workspace_path_normalizes(given: str, expected: str) -> None:
    assert workspace_path(given) == expected


@pytest.mark.parametrize(
    "bad", ["../x", "a/../../x", "a/..", "/etc/passwd", "/workspace2/x", "a\0b"]
)
def test_workspace_path_refuses_escapes(bad: str) -> None:
    with pytest.raises(InvalidInput) as info:
        workspace_path(bad)
    assert info.value.code == "sandbox_path_invalid"


def test_exec_cwd() -> None:
    assert exec_cwd(None) == "/workspace"
    assert exec_cwd("src") == "/workspace/src"
    assert exec_cwd("/tmp/x") == "/tmp/x"
    for bad in ("/etc", "/tmp/../etc", "../x"):
        with pytest.raises(InvalidInput):
            exec_cwd(bad)


def test_secret_values_and_masker() -> None:
    values = secret_values(
        {"PLAIN": "visible-1", "GITHUB_TOKEN": "tok-value", "OTHER": "x"},
        {"API": "explicit-secret"},
        ["PLAIN"],
    )
    assert set(values) == {"visible-1", "tok-value", "explicit-secret"}
    mask = masker(values)
    text = "echo explicit-secret visible-1 tok-value ghp_" + "a" * 36 + " x"
    masked = mask(text)
    assert masked == "echo *** *** *** *** x"
    assert mask(None) is None


async def test_output_collector_caps_each_stream() -> None:
    seen: list[tuple[str, bytes]] = []

    async def sink(stream: str, chunk: bytes) -> None:
        seen.append((stream, chunk))

    c = OutputCollector(5, sink)
    await c.add("stdout", b"abc")
    await c.add("stdout", b"defgh")
    await c.add("stderr", b"12")
    await c.add("stdout", b"more")
    assert bytes(c.buffers["stdout"]) == b"abcde" and bytes(c.buffers["stderr"]) == b"12"
    assert c.truncated is True
    assert seen == [("stdout", b"abc"), ("stdout", b"de"), ("stderr", b"12")]


def test_code_argv_and_cgroup_parsing() -> None:
    assert code_argv("python", "print(1)") == ["python3", "-c", "print(1)"]
    assert code_argv("node", "1") == ["node", "-e", "1"]
    with pytest.raises(KeyError):
        code_argv("cobol", "x")
    assert _keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill") == 3
    assert _keyed("max 0\n", "oom_kill") is None
