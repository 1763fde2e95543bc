"""Nothing a caller or a template sets reaches a process on the host (``local``, real bwrap).

The ``local`` provider starts a host-side launcher (``sh`` joining the cgroup, or
``prlimit``) that becomes ``bwrap``. Variables of an exec or a template must reach
only the sandboxed command: ``LD_PRELOAD`` in the launcher's environment would load a
library the sandbox wrote into its own workspace into a host process running as the
gateway's user, outside every namespace.

The library is compiled by the host's ``gcc`` *inside* the sandbox (``/usr`` is bound
read-only and gcc works there), so the test also shows what a developer can do with
nothing but the exec API.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from mcp import types

from sandboxes.providers.base import ExecRequest, SandboxSpec, TemplateSpec
from sandboxes.providers.local import LocalProvider
from tests.integration.mcp.test_endpoint import connect
from tests.integration.sandboxes.conftest import Sandboxes, _admin
from tests.support import BOOT, Server

# The constructor runs wherever the loader preloads the library: it leaves a mark on
# the host path (only a host process can reach it) and one in /workspace (only a
# sandboxed process sees that path).
LIBRARY = r"""
#include <fcntl.h>
#include <unistd.h>
static void mark(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0666);
    if (fd >= 0) { (void)write(fd, "ran\n", 4); close(fd); }
}
__attribute__((constructor)) static void preloaded(void) {
    mark("HOST_MARKER");
    mark("/workspace/inside-marker");
}
"""


async def _sandbox(h: Sandboxes) -> tuple[str, LocalProvider, SandboxSpec]:
    sid = (await h.create(template="python"))["id"]
    provider = h.service.providers["local"]
    assert isinstance(provider, LocalProvider)
    row = await h.service.get(_admin(), sid)
    return sid, provider, h.service.spec(row)


async def _compile_library(h: Sandboxes, sid: str, marker: Path) -> None:
    source = LIBRARY.replace("HOST_MARKER", str(marker)).encode()
    assert (await h.put(sid, "e.c", source)).status_code == 200
    built = await h.exec(sid, command="gcc -shared -fPIC -o e.so e.c")
    assert built["exit_code"] == 0, built


def _workspace_on_host(provider: LocalProvider, spec: SandboxSpec) -> Path:
    workspace = provider._workspace(spec)
    assert (workspace / "e.so").is_file(), "the workspace's host path changed"
    return workspace


async def test_rest_refuses_loader_variables(sbx: Sandboxes, tmp_path: Path) -> None:
    """REST exec and templates refuse LD_* & co. (422 env_not_allowed, the name, never the
    value); module search paths are fine inside a sandbox."""
    sid = (await sbx.create(template="python"))["id"]
    for field, name in [
        ("env", "LD_PRELOAD"),
        ("env", "ld_library_path"),
        ("secret_env", "LD_AUDIT"),
        ("env", "BASH_ENV"),
        ("env", "GCONV_PATH"),
        ("env", "NODE_OPTIONS"),
        ("env", "PYTHONSTARTUP"),
    ]:
        r = await sbx.client.post(
            f"/api/v1/sandboxes/{sid}/exec",
            json={"command": "true", field: {name: "/secret-value/e.so"}},
            headers=sbx.auth(),
        )
        assert r.status_code == 422, (name, r.text)
        body = r.json()
        assert body["code"] == "env_not_allowed" and name in body["message"], body
        assert "secret-value" not in r.text
    ok = await sbx.exec(
        sid,
        command='echo "$PYTHONPATH $FOO"',
        env={"PYTHONPATH": "/workspace/lib", "FOO": "bar baz"},
    )
    assert ok["stdout"] == "/workspace/lib bar baz\n", ok

    for env in ({"LD_PRELOAD": "/workspace/e.so"}, {"ENV": "/workspace/rc"}):
        r = await sbx.client.put(
            "/api/v1/sandboxes/templates/evil",
            json={"name": "evil", "env": env},
            headers=sbx.auth(),
        )
        assert r.status_code == 422 and r.json()["code"] == "env_not_allowed", r.text


@pytest.mark.parametrize("launcher", ["cgroup", "prlimit"])
async def test_ld_preload_never_runs_on_the_host(
    sbx: Sandboxes, tmp_path: Path, launcher: str
) -> None:
    """Bypassing the API's check (LocalProvider.exec directly), LD_PRELOAD naming the
    library's host path loads nowhere on the host, whichever launcher runs (``sh``
    joining the cgroup, or ``prlimit``); by its sandbox path it loads inside only."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the preload library: apt-get install -y gcc")
    sid, provider, spec = await _sandbox(sbx)
    marker = tmp_path / "host-marker"
    await _compile_library(sbx, sid, marker)
    host_library = _workspace_on_host(provider, spec) / "e.so"
    saved = (provider._cgroups, provider._cgroups_checked)
    if launcher == "prlimit":
        if provider.prlimit is None:
            pytest.fail("prlimit (util-linux) is needed for this launcher")
        provider._cgroups, provider._cgroups_checked = None, True
    elif provider._cg() is None:
        pytest.fail("no usable cgroups here: the cgroup launcher cannot be tested")
    try:
        result = await provider.exec(
            spec,
            ExecRequest(
                ["/bin/sh", "-c", "echo in-sandbox"],
                env={"LD_PRELOAD": str(host_library), "BASH_ENV": str(host_library)},
            ),
        )
        assert result.exit_code == 0 and result.stdout == b"in-sandbox\n", result
        assert not marker.exists(), "the preloaded library ran in a process on the host"

        inside = await provider.exec(
            spec, ExecRequest(["/bin/true"], env={"LD_PRELOAD": "/workspace/e.so"})
        )
        assert inside.exit_code == 0, inside
        assert (provider._workspace(spec) / "inside-marker").read_text() == "ran\n"
        assert not marker.exists()
    finally:
        provider._cgroups, provider._cgroups_checked = saved


async def test_template_env_never_reaches_the_launcher(sbx: Sandboxes, tmp_path: Path) -> None:
    """A template's variables (set by an admin, stored before this check existed, or
    written to the database directly) reach the sandboxed command only."""
    sid, provider, spec = await _sandbox(sbx)
    marker = tmp_path / "host-marker"
    await _compile_library(sbx, sid, marker)
    host_library = _workspace_on_host(provider, spec) / "e.so"
    evil = SandboxSpec(
        id=spec.id,
        template=TemplateSpec(
            "evil",
            None,
            ("sh",),
            env={"LD_PRELOAD": str(host_library), "SHOWN": "to the command"},
        ),
        limits=spec.limits,
        state=spec.state,
    )
    result = await provider.exec(evil, ExecRequest(["/bin/sh", "-c", 'echo "$SHOWN"']))
    assert result.stdout == b"to the command\n", result
    assert not marker.exists(), "the template's LD_PRELOAD ran in a process on the host"


async def test_sandbox_sees_no_host_paths(sbx: Sandboxes, tmp_path: Path) -> None:
    """mountinfo, PID 1's argv and the environment name no host path of the gateway.

    The generated /etc files come from memory (``--ro-bind-data``), bwrap's options
    (host paths, variables) from ``--args FD``, the environment from ``--clearenv``.
    One line may still name a host path: the workspace bind's ``root`` field when the
    workspace is a plain directory (``MCPGW_SANDBOX_DISK_LIMIT=measured``, or no loop
    devices); on a loop-mounted image it is ``/``. That line is checked only then."""
    sid, provider, spec = await _sandbox(sbx)
    workspace = str(provider._workspace(spec))
    data_dirs = {str(tmp_path), str(provider.root), workspace}
    out = await sbx.exec(
        sid,
        command="cat /proc/self/mountinfo; echo ---; tr '\\0' ' ' < /proc/1/cmdline; "
        "echo; echo ---; env; echo ---; ls -l /proc/self/fd",
    )
    assert out["exit_code"] == 0, out
    mountinfo, cmdline, env, fds = out["stdout"].split("---\n")
    for line in mountinfo.splitlines():
        fields = line.split()
        if fields[4] == "/workspace" and fields[3] != "/":
            # a plain directory bound: its root is its host path (no loop image here)
            assert fields[3] == os.path.realpath(workspace), line
            continue
        assert not any(d in line for d in data_dirs), line
    assert any(f.split()[4] == "/etc/passwd" for f in mountinfo.splitlines())
    assert cmdline.split()[1:3] == ["--args", cmdline.split()[2]], cmdline
    for text in (cmdline, env):
        assert not any(d in text for d in data_dirs), text
    assert "PWD=/workspace\n" in env and "MCPGW" not in env, env
    assert "memfd" not in fds, fds  # bwrap closed the memory files it read
    passwd = await sbx.exec(sid, command="cat /etc/passwd /etc/hostname; id -un")
    assert "sandbox:x:1000:1000" in passwd["stdout"] and passwd["stdout"].endswith(
        "sandbox\nsandbox\n"
    ), passwd


async def test_mcp_sandbox_exec_refuses_loader_variables(
    server_factory: Callable[..., Server],
) -> None:
    """SANDBOX_EXEC on /mcp is refused the same way (a tool error naming the code)."""
    server = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT, MCPGW_SANDBOX_PROVIDER="local")
    server.wait_ready()
    async with connect(f"{server.url}/mcp", key=BOOT, mode="auto") as client:
        refused = await client.call_tool(
            "SANDBOX_EXEC", {"command": "true", "env": {"LD_PRELOAD": "/workspace/e.so"}}
        )
        shown = "\n".join(c.text for c in refused.content if isinstance(c, types.TextContent))
        assert refused.is_error and "env_not_allowed" in shown and "LD_PRELOAD" in shown, shown
