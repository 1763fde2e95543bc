"""A sandbox's disk limit holds while a command runs, on the real bubblewrap and Docker.

Each workspace is a loop-mounted ext4 image of ``disk_mb`` (the machine runs these
tests as root, with loop devices and mkfs.ext4): a write past the limit fails in the
sandbox with ENOSPC, the host's disk holds at most the image, and stop, resume,
destroy and a gateway restart leave no mount and no loop device behind. Where the
gateway cannot mount, workspaces fall back to measured usage, and say so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.sandboxes.conftest import Sandboxes, docker_cli, need_bwrap

MiB = 1024 * 1024
DD = "dd if=/dev/zero of=/workspace/big bs=1M count=200"


def need_loop() -> None:
    """These tests need what the machine has (TESTING.md): root, loop devices, mkfs.ext4."""
    from sandboxes.providers.diskimage import unavailable_reason

    need_bwrap()
    if why := unavailable_reason():
        pytest.fail(f"workspace images cannot be mounted here: {why}")


def _mounted(path: Path) -> bool:
    """Whether something is mounted at ``path`` (this process's mount table)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as table:
        return any(line.split(" ")[4] == str(path) for line in table)


def _loop_attached(image: Path) -> bool:
    out = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True)
    return bool(out.stdout.strip())


def _on_host(base: Path) -> int:
    """Bytes allocated under ``base`` on the host's own filesystem (mounts not entered)."""
    device, total = os.stat(base).st_dev, 0
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if os.lstat(Path(dirpath, d)).st_dev == device]
        for name in filenames:
            total += os.lstat(Path(dirpath, name)).st_blocks * 512
    return total


async def _released(base: Path) -> None:
    """Wait until the workspace is unmounted and its loop device freed (the kernel frees
    it once the last exec's mount namespace is gone)."""
    deadline = time.monotonic() + 10
    while _mounted(base / "workspace") or _loop_attached(base / "disk.img"):
        assert time.monotonic() < deadline, (
            f"still mounted or attached: {base}",
            subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout,
        )
        await asyncio.sleep(0.1)


@pytest.fixture(params=["local", "docker"])
async def gateway(request: pytest.FixtureRequest, sbx_factory: Callable[..., Any]) -> Sandboxes:
    need_loop()
    if request.param == "docker":
        request.getfixturevalue("python_image")
    api: Sandboxes = await sbx_factory(sandbox_provider=request.param)
    return api


def _base(api: Sandboxes, sandbox_id: str) -> Path:
    root = api.service.settings.sandbox_dir
    if api.service.settings.sandbox_provider == "docker":
        return root / "docker" / sandbox_id  # type: ignore[no-any-return]
    return root / sandbox_id  # type: ignore[no-any-return]


async def test_a_write_past_the_limit_fails_with_enospc(gateway: Sandboxes) -> None:
    api = gateway
    sb = await api.create(template="python", limits={"disk_mb": 20})
    other = await api.create(template="python", limits={"disk_mb": 20})
    ran = await api.exec(sb["id"], command=DD)
    assert ran["exit_code"] != 0 and "No space left on device" in ran["stderr"], ran
    # the host holds the image (at most its size), never the 200 MB
    base = _base(api, sb["id"])
    assert _on_host(base) <= 21 * MiB, _on_host(base)
    if api.service.settings.sandbox_provider == "docker":
        assert docker_cli("volume", "inspect", f"mcpgw-sbx-{sb['id']}").returncode != 0
    # nothing else notices: another sandbox, the gateway
    ok = await api.exec(other["id"], command="echo fine > f && cat f")
    assert ok["exit_code"] == 0 and ok["stdout"] == "fine\n", ok
    # the files API: an upload that does not fit is 413, and leaves nothing behind
    refused = await api.put(sb["id"], "more.bin", b"x" * MiB)
    assert refused.status_code == 413 and refused.json()["code"] == "sandbox_disk_full"
    names = [e["name"] for e in (await api.get(sb["id"], "")).json()["entries"]]
    assert names == ["big"], names
    await api.service.activity.settle()
    usage = await api.client.get(f"/api/v1/sandboxes/{sb['id']}/usage", headers=api.auth())
    assert 15 * MiB <= usage.json()["disk_bytes"] <= 20 * MiB, usage.json()
    # deleting frees the room again
    assert (await api.exec(sb["id"], command="rm big"))["exit_code"] == 0
    await api.service.activity.settle()
    assert (await api.put(sb["id"], "more.bin", b"x" * MiB)).status_code == 200


async def test_stop_resume_destroy_leave_no_mount_and_no_loop_device(
    gateway: Sandboxes,
) -> None:
    api = gateway
    sb = await api.create(template="python", limits={"disk_mb": 20})
    base = _base(api, sb["id"])
    assert _mounted(base / "workspace") and _loop_attached(base / "disk.img")
    assert (await api.exec(sb["id"], command="echo kept > kept.txt"))["exit_code"] == 0

    assert (await api.action(sb["id"], "stop")).status_code == 200
    await _released(base)
    # the files API still reaches a stopped sandbox, and lets go of the image after
    listing = (await api.get(sb["id"], "")).json()["entries"]
    assert [e["name"] for e in listing] == ["kept.txt"]
    assert (await api.get(sb["id"], "kept.txt")).content == b"kept\n"
    await _released(base)

    assert (await api.action(sb["id"], "resume")).status_code == 200
    assert _mounted(base / "workspace")
    again = await api.exec(sb["id"], command="cat kept.txt")
    assert again["stdout"] == "kept\n", again

    assert (await api.destroy(sb["id"])).status_code == 204
    await _released(base)
    assert not base.exists()


async def test_a_restarted_gateway_serves_the_files(
    sbx_factory: Callable[..., Any],
) -> None:
    """A new gateway on the same sandbox directory, after a host restart too (the
    mount gone): the image is mounted again before anything touches the workspace."""
    need_loop()
    first: Sandboxes = await sbx_factory()
    sb = await first.create(limits={"disk_mb": 20})
    assert (await first.exec(sb["id"], command="echo kept > k"))["exit_code"] == 0
    workspace = _base(first, sb["id"]) / "workspace"
    assert _mounted(workspace)
    subprocess.run(["umount", str(workspace)], check=True)  # as after a reboot
    assert not _mounted(workspace)

    second: Sandboxes = await sbx_factory()
    assert (await second.get(sb["id"], "k")).content == b"kept\n"
    ran = await second.exec(sb["id"], command="cat k; dd if=/dev/zero of=big bs=1M count=50")
    assert ran["stdout"] == "kept\n" and "No space left on device" in ran["stderr"], ran
    assert _mounted(workspace)
    assert _on_host(_base(first, sb["id"])) <= 21 * MiB


async def test_gateway_shutdown_unmounts_and_the_next_use_mounts_again(
    sbx_factory: Callable[..., Any],
) -> None:
    need_loop()
    api: Sandboxes = await sbx_factory()
    sb = await api.create(limits={"disk_mb": 20})
    base = _base(api, sb["id"])
    assert (await api.exec(sb["id"], command="echo kept > k"))["exit_code"] == 0
    await api.service.close()  # what the app's shutdown calls
    await _released(base)
    assert (await api.exec(sb["id"], command="cat k"))["stdout"] == "kept\n"
    assert _mounted(base / "workspace")


async def test_mountinfo_in_the_sandbox_shows_no_host_path(
    sbx_factory: Callable[..., Any],
) -> None:
    need_loop()
    api: Sandboxes = await sbx_factory()
    sb = await api.create(limits={"disk_mb": 20})
    ran = await api.exec(sb["id"], command="cat /proc/self/mountinfo")
    (line,) = [x for x in ran["stdout"].splitlines() if x.split(" ")[4] == "/workspace"]
    assert line.split(" ")[3] == "/" and " - ext4 " in line, line  # the image's own root
    assert str(api.service.settings.sandbox_dir) not in ran["stdout"], ran["stdout"]


async def test_the_users_total_is_the_sum_of_disk_limits(
    sbx_factory: Callable[..., Any],
) -> None:
    need_loop()
    api: Sandboxes = await sbx_factory(sandbox_max_disk_mb_per_user=50)
    await api.create(limits={"disk_mb": 30})
    r = await api.client.post(
        "/api/v1/sandboxes", json={"limits": {"disk_mb": 30}}, headers=api.auth()
    )
    assert r.status_code == 409 and r.json()["code"] == "sandbox_quota_exceeded", r.text
    assert "50 MiB" in r.json()["message"] and "30" in r.json()["message"]
    await api.create(limits={"disk_mb": 20})  # exactly the total


async def test_measured_fallback_and_older_workspaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a way to mount (not root, say) workspaces are plain directories whose usage
    is measured; so are those made before images existed. Both keep working."""
    need_loop()
    from gateway.config import Settings
    from sandboxes.providers import build_providers, diskimage
    from sandboxes.providers.base import ExecRequest, Limits, ProviderUnavailable, SandboxSpec
    from sandboxes.providers.local import LocalProvider
    from sandboxes.templates import BUILTIN

    limits = Limits(cpus=1, memory_mb=256, pids=64, disk_mb=20)
    measured = LocalProvider(tmp_path / "m", disk_limit="measured")
    assert measured.describe()["disk"] == "measured"
    spec = SandboxSpec(id="m1", template=BUILTIN["python"], limits=limits)
    await measured.create(spec)
    assert not (tmp_path / "m" / "m1" / "disk.img").exists()
    ran = await measured.exec(spec, ExecRequest(argv=["sh", "-c", "head -c 30000000 /dev/zero >f"]))
    assert ran.exit_code == 0  # not a hard limit: measured afterwards
    assert ((await measured.usage(spec)).disk_bytes or 0) >= 30_000_000
    await measured.destroy(spec)
    assert not (tmp_path / "m" / "m1").exists()

    # a workspace from before images (a plain directory) under a loop-capable provider
    loop = LocalProvider(tmp_path / "l")
    assert loop.describe()["disk"] == "loop-ext4"
    old = SandboxSpec(id="old", template=BUILTIN["python"], limits=limits)
    (tmp_path / "l" / "old" / "workspace").mkdir(parents=True)
    (tmp_path / "l" / "old" / "workspace" / "a.txt").write_text("from before")
    await loop.resume(old)
    ran = await loop.exec(old, ExecRequest(argv=["cat", "a.txt"]))
    assert ran.stdout == b"from before"
    await loop.write_file(old, "b.txt", b"new")
    assert [e.name for e in await loop.list_files(old, "") or []] == ["a.txt", "b.txt"]
    assert (await loop.usage(old)).disk_bytes
    await loop.stop(old)
    assert await loop.read_file(old, "b.txt", 10) == b"new"
    await loop.destroy(old)
    assert not (tmp_path / "l" / "old").exists()

    # no root: measured, said in describe() and in a warning at start
    monkeypatch.setattr(diskimage.os, "geteuid", lambda: 1000)
    laptop = LocalProvider(tmp_path / "n")
    assert laptop.describe()["disk"] == "measured"
    assert "root" in laptop.describe()["disk_fallback_reason"]
    with caplog.at_level(logging.WARNING, logger="sandboxes"):
        build_providers(Settings(sandbox_dir=tmp_path / "n", data_dir=tmp_path))
    assert any("measured, not enforced" in r.getMessage() for r in caplog.records)
    strict = LocalProvider(tmp_path / "n", disk_limit="loop")
    with pytest.raises(ProviderUnavailable, match="root"):
        await strict.create(SandboxSpec(id="s1", template=BUILTIN["python"], limits=limits))
    assert not (tmp_path / "n" / "s1").exists()


async def test_auto_falls_back_when_mounting_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Root without the right to mount (a container without CAP_SYS_ADMIN): the first
    create finds out, warns, and that sandbox and the next are measured."""
    need_bwrap()
    from sandboxes.providers import diskimage
    from sandboxes.providers.base import ExecRequest, Limits, SandboxSpec
    from sandboxes.providers.local import LocalProvider
    from sandboxes.templates import BUILTIN

    real = diskimage._tool
    monkeypatch.setattr(
        diskimage, "_tool", lambda name: "/bin/false" if name == "mount" else real(name)
    )
    provider = LocalProvider(tmp_path / "r")
    spec = SandboxSpec(
        id="r1",
        template=BUILTIN["python"],
        limits=Limits(cpus=1, memory_mb=256, pids=64, disk_mb=20),
    )
    with caplog.at_level(logging.WARNING, logger="sandboxes.disk"):
        state = await provider.create(spec)
    assert state["disk"] == "measured" and provider.describe()["disk"] == "measured"
    assert any("fall back to measured" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "r" / "r1" / "disk.img").exists()
    ran = await provider.exec(spec, ExecRequest(argv=["sh", "-c", "echo ok > f; cat f"]))
    assert ran.stdout == b"ok\n"
    await provider.destroy(spec)


async def test_stop_racing_an_exec_leaves_no_process_and_no_write_outside_the_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Security review: stop landing while an exec is between mounting the workspace and
    registering its bwrap missed the process and unmounted the image under it; the
    command then wrote into the host directory under the mount point, unlimited, until
    its timeout. The exec is held exactly there while stop runs (no cgroups: with them
    the cgroup join usually failed first, hiding the race)."""
    need_loop()
    from sandboxes.providers import local
    from sandboxes.providers.base import ExecRequest, Limits, ProviderError, SandboxSpec
    from sandboxes.templates import BUILTIN

    provider = local.LocalProvider(tmp_path / "race", disk_limit="loop")
    provider._cgroups, provider._cgroups_checked = None, True
    spec = SandboxSpec(
        id="race1",
        template=BUILTIN["python"],
        limits=Limits(cpus=1, memory_mb=256, pids=64, disk_mb=20),
    )
    await provider.create(spec)
    workspace = provider.disks.workspace(spec.id)
    real = asyncio.create_subprocess_exec
    reached, release = asyncio.Event(), asyncio.Event()
    spawned: list[asyncio.subprocess.Process] = []

    async def held(*argv: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        if "--args" in argv:  # the exec's bwrap; mount and umount go straight through
            reached.set()
            await release.wait()
        proc = await real(*argv, **kwargs)
        spawned.append(proc)
        return proc

    monkeypatch.setattr(asyncio, "create_subprocess_exec", held)
    command = "echo escaped > /workspace/escaped; exec sleep 30"
    running = asyncio.ensure_future(
        provider.exec(spec, ExecRequest(argv=["sh", "-c", command], timeout=60))
    )
    try:
        await asyncio.wait_for(reached.wait(), 10)
        stopping = asyncio.ensure_future(provider.stop(spec))
        await asyncio.wait({stopping}, timeout=1)  # the old code stops (and unmounts) here
        release.set()
        await asyncio.wait_for(stopping, 15)
        assert not _mounted(workspace)
        # every process of the exec is gone once stop returns, and the exec with it
        done, _ = await asyncio.wait({running}, timeout=10)
        # nothing landed in the host directory under the (unmounted) mount point
        assert os.listdir(workspace) == []
        assert done, "the exec outlived stop"
        assert all(p.returncode is not None for p in spawned), "a process outlived stop"
        assert running.result().exit_code != 0  # killed
        # a stopped sandbox refuses a new exec instead of binding that directory
        with pytest.raises(ProviderError) as refused:
            await provider.exec(spec, ExecRequest(argv=["true"]))
        assert refused.value.code == "sandbox_stopped"
    finally:
        release.set()
        if not running.done():
            for proc in spawned:
                provider._kill(proc)
            await asyncio.wait({running}, timeout=10)
        await provider.destroy(spec)


async def test_an_exec_never_binds_an_unmounted_image_workspace(tmp_path: Path) -> None:
    """Defence in depth: a sandbox with an image whose workspace is not the mounted image
    (whatever unmounted it) refuses the exec rather than bind the host directory."""
    need_loop()
    from sandboxes.providers.base import ExecRequest, Limits, ProviderError, SandboxSpec
    from sandboxes.providers.local import LocalProvider
    from sandboxes.templates import BUILTIN

    provider = LocalProvider(tmp_path / "unmounted", disk_limit="loop")
    spec = SandboxSpec(
        id="u1",
        template=BUILTIN["python"],
        limits=Limits(cpus=1, memory_mb=256, pids=64, disk_mb=20),
    )
    await provider.create(spec)
    try:
        await provider.disks.detach(spec.id)

        async def no_mount(sandbox_id: str) -> Path:
            return provider.disks.workspace(sandbox_id)

        provider.disks.attach = no_mount  # type: ignore[method-assign]
        with pytest.raises(ProviderError) as refused:
            await provider.exec(spec, ExecRequest(argv=["sh", "-c", "echo x > /workspace/x"]))
        assert refused.value.code == "sandbox_disk_unavailable"
        assert os.listdir(provider.disks.workspace(spec.id)) == []
    finally:
        await provider.destroy(spec)
