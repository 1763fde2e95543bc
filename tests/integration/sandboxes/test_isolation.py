"""The same isolation guarantees on every provider, checked from inside real sandboxes.

``local`` runs real bubblewrap, ``docker`` the real local engine; a missing one
fails the test saying what to start (never a skip).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.sandboxes.conftest import Sandboxes, docker_cli, need_bwrap


@pytest.fixture(params=["local", "docker"])
async def box(
    request: pytest.FixtureRequest, sbx_factory: Callable[..., Any]
) -> tuple[Sandboxes, dict[str, Any]]:
    if request.param == "local":
        need_bwrap()
    else:
        request.getfixturevalue("python_image")
    h = await sbx_factory(sandbox_provider=request.param)
    created = await h.create(template="python")
    assert created["status"] == "running" and created["provider"] == request.param
    return h, created


def _host_has(pattern: str) -> bool:
    return (
        subprocess.run(["pgrep", "-f", pattern], capture_output=True, check=False).returncode == 0
    )


async def test_lifecycle_keeps_files_and_destroy_removes_everything(
    box: tuple[Sandboxes, dict[str, Any]], tmp_path: Path
) -> None:
    h, sb = box
    sid = sb["id"]
    r = await h.py(
        sid, "import sys; open('made.txt','w').write('by code'); print(sys.version_info[0])"
    )
    assert r["exit_code"] == 0 and r["stdout"] == "3\n" and r["timed_out"] is False, r
    assert r["duration_ms"] > 0
    assert (await h.put(sid, "dir/sub/up.bin", b"\x00\x01bytes")).status_code == 200

    stopped = await h.action(sid, "stop")
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    if h.service.settings.sandbox_provider == "docker":
        state = json.loads(docker_cli("inspect", f"mcpgw-sbx-{sid}").stdout)[0]["State"]
        assert state["Running"] is False  # compute freed
    refused = await h.client.post(
        f"/api/v1/sandboxes/{sid}/exec", json={"command": "true"}, headers=h.auth()
    )
    assert refused.status_code == 409 and refused.json()["code"] == "sandbox_stopped"

    resumed = await h.action(sid, "resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "running"
    r = await h.exec(sid, command="cat made.txt; echo; cat dir/sub/up.bin | od -An -c | tr -s ' '")
    assert r["stdout"].startswith("by code\n") and "b y t e s" in r["stdout"], r
    assert (await h.get(sid, "made.txt")).content == b"by code"
    listing = (await h.get(sid, "")).json()
    assert {e["name"]: e["type"] for e in listing["entries"]} == {"made.txt": "file", "dir": "dir"}

    assert (await h.destroy(sid)).status_code == 204
    got = await h.client.get(f"/api/v1/sandboxes/{sid}", headers=h.auth())
    assert got.json()["status"] == "destroyed"
    if h.service.settings.sandbox_provider == "docker":
        assert docker_cli("ps", "-aq", "--filter", f"name=mcpgw-sbx-{sid}").stdout.strip() == ""
        assert docker_cli("volume", "inspect", f"mcpgw-sbx-{sid}").returncode != 0
    else:
        assert not (h.service.settings.sandbox_dir / sid).exists()


async def test_no_network(box: tuple[Sandboxes, dict[str, Any]]) -> None:
    h, sb = box
    accepted: list[object] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        code = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
            "    print('connected')\n"
            "except OSError as e:\n"
            "    print('refused', type(e).__name__)\n"
            "print(sorted(n for _, n in socket.if_nameindex()))\n"
        )
        r = await h.py(sb["id"], code)
        with contextlib.suppress(BlockingIOError):
            accepted.append(server.accept())
    assert r["stdout"].startswith("refused"), r
    assert r["stdout"].splitlines()[1] == "['lo']"  # no interface but its own loopback
    assert accepted == []


async def test_cannot_read_host_files(
    box: tuple[Sandboxes, dict[str, Any]], tmp_path: Path
) -> None:
    h, sb = box
    secret = tmp_path / "host-secret.txt"
    secret.write_text("host only")
    r = await h.exec(sb["id"], command=f"cat {secret}; ls /root; cat /etc/shadow; echo done")
    assert "host only" not in r["stdout"] and r["stdout"] == "done\n", r
    assert "No such file" in r["stderr"] or "Permission denied" in r["stderr"]
    # symlinks the sandbox makes never lead the files API to the host's files: `local`
    # refuses them; the Docker engine resolves them inside the container's own root
    await h.exec(sb["id"], command="ln -s /etc/passwd link; ln -s / root")
    host_hostname = Path("/etc/hostname").read_bytes() if Path("/etc/hostname").exists() else b""
    for path in ("link", "root/etc/hostname", "../x", "/etc/passwd"):
        r2 = await h.get(sb["id"], path)
        if h.service.settings.sandbox_provider == "local" or path != "root/etc/hostname":
            assert r2.status_code in (404, 422), (path, r2.status_code, r2.text)
        else:
            assert r2.content == b"sandbox\n" != host_hostname
        assert b"root:x:0:0" not in r2.content


async def test_non_root_without_capabilities(box: tuple[Sandboxes, dict[str, Any]]) -> None:
    h, sb = box
    r = await h.exec(
        sb["id"], command="id -u; id -g; grep -E '^Cap(Eff|Prm|Bnd):' /proc/self/status"
    )
    lines = r["stdout"].split("\n")
    assert lines[0] == "1000" and lines[1] == "1000", r
    caps = dict(line.split(":\t") for line in lines[2:5])
    assert caps == {
        "CapPrm": "0000000000000000",
        "CapEff": "0000000000000000",
        "CapBnd": "0000000000000000",
    }
    r = await h.exec(sb["id"], command="touch /usr/x 2>&1 || echo ro")
    assert r["stdout"].strip().endswith("ro")


async def test_fork_bomb_is_contained(box: tuple[Sandboxes, dict[str, Any]]) -> None:
    h, sb = box
    bomb = (
        "import os, time\n"
        "for _ in range(100000):\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        time.sleep(0.01)\n"
    )
    r = await h.py(sb["id"], bomb, timeout=8)
    assert r["timed_out"] or r["exit_code"] != 0, r
    assert r["error"], r  # says what happened (limit hit / timed out)
    assert (await h.client.get("/healthz")).status_code == 200
    r = await h.exec(sb["id"], command="echo alive")
    assert r["stdout"] == "alive\n"


async def test_memory_hog_is_killed_and_reported(box: tuple[Sandboxes, dict[str, Any]]) -> None:
    h, sb = box
    r = await h.py(
        sb["id"], "x = bytearray(1024 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096])", timeout=60
    )
    assert r["exit_code"] != 0 and r["oom_killed"] is True, r
    assert "memory" in r["error"], r
    assert (await h.exec(sb["id"], command="echo alive"))["stdout"] == "alive\n"


async def test_timeout_kills_every_process(box: tuple[Sandboxes, dict[str, Any]]) -> None:
    h, sb = box
    marker = f"{random.randint(100000, 999999)}"
    r = await h.exec(sb["id"], command=f"sleep 1{marker} & sleep 2{marker}", timeout=1)
    assert r["timed_out"] is True and r["exit_code"] is None, r
    assert r["duration_ms"] < 8000
    for _ in range(50):
        if not _host_has(f"sleep [12]{marker}"):
            break
        await asyncio.sleep(0.1)
    assert not _host_has(f"sleep [12]{marker}"), "a timed-out process survived"
