"""What sandboxed code leaves in its workspace cannot stall the gateway (``local``, real bwrap).

A FIFO opened without ``O_NONBLOCK`` blocks until a writer comes, and the files API
used to open workspace files on the process's default executor (six threads on two
cores): a handful of reads of FIFOs stalled every user's file reads and skill
uploads. A test that would hang on such code bounds each request and unblocks any
reader still waiting at the end (it opens the FIFO's other end).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandboxes.providers.local import LocalProvider
from tests.integration.sandboxes.conftest import Sandboxes, _admin, need_bwrap
from tests.support import BOOT, GRACEFUL, _env, free_port, skill_md

PROMPT = 10.0  # seconds: far more than any of these needs, far less than "forever"


@pytest.fixture
def fifos() -> Iterator[list[Path]]:
    """FIFOs a test made; any reader or writer still blocked on one is released."""
    made: list[Path] = []
    yield made
    for path in made:
        for flags in (os.O_WRONLY, os.O_RDONLY):
            with contextlib.suppress(OSError):
                os.close(os.open(path, flags | os.O_NONBLOCK))


async def _workspace(h: Sandboxes, sid: str) -> Path:
    provider = h.service.providers["local"]
    assert isinstance(provider, LocalProvider)
    return provider._workspace(h.service.spec(await h.service.get(_admin(), sid)))


async def _user_key(h: Sandboxes, email: str) -> str:
    r = await h.client.post(
        "/api/v1/users", json={"email": email, "role": "developer"}, headers=h.auth()
    )
    assert r.status_code == 201, r.text
    r = await h.client.post(
        "/api/v1/keys", json={"name": "t", "user_id": r.json()["id"]}, headers=h.auth()
    )
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


async def test_fifos_and_sockets_are_refused_at_once(sbx: Sandboxes, fifos: list[Path]) -> None:
    """Reading a FIFO or a socket: 422 sandbox_path_invalid, in well under a second.
    Listing shows it as "other", deleting removes it, writing replaces it with a file;
    a FIFO where the old upload code put its temporary file blocks nothing either."""
    sid = (await sbx.create(template="python"))["id"]
    made = await sbx.exec(
        sid,
        command="mkfifo pipe target .up.txt.mcpgw-upload-$MCPGW_PID && python3 -c "
        "\"import socket; socket.socket(socket.AF_UNIX).bind('sock')\"",
        env={"MCPGW_PID": str(os.getpid())},
    )
    assert made["exit_code"] == 0, made
    workspace = await _workspace(sbx, sid)
    fifos += [workspace / n for n in ("pipe", "target", f".up.txt.mcpgw-upload-{os.getpid()}")]

    for name, kind in (("pipe", "a FIFO"), ("sock", "a socket")):
        started = time.monotonic()
        r = await asyncio.wait_for(sbx.get(sid, name), PROMPT)
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "sandbox_path_invalid" and kind in r.json()["message"]
        assert time.monotonic() - started < 2
    listing = (await sbx.get(sid, "")).json()["entries"]
    assert {e["name"]: e["type"] for e in listing}["pipe"] == "other"

    put = await asyncio.wait_for(sbx.put(sid, "target", b"now a file"), PROMPT)
    assert put.status_code == 200, put.text
    assert (await sbx.get(sid, "target")).content == b"now a file"
    put = await asyncio.wait_for(sbx.put(sid, "up.txt", b"uploaded"), PROMPT)
    assert put.status_code == 200, put.text
    assert (await sbx.get(sid, "up.txt")).content == b"uploaded"

    gone = await sbx.client.delete(
        f"/api/v1/sandboxes/{sid}/files", params={"path": "pipe"}, headers=sbx.auth()
    )
    assert gone.status_code == 204, gone.text
    assert not (workspace / "pipe").exists()


async def test_hostile_reads_do_not_stall_other_users(sbx: Sandboxes, fifos: list[Path]) -> None:
    """Twelve concurrent reads of FIFOs by one user; another user's file read and skill
    upload still answer promptly."""
    hostile = (await sbx.create(template="python"))["id"]
    names = [f"p{i}" for i in range(12)]
    assert (await sbx.exec(hostile, command="mkfifo " + " ".join(names)))["exit_code"] == 0
    workspace = await _workspace(sbx, hostile)
    fifos += [workspace / n for n in names]

    bob = await _user_key(sbx, "bob@example.com")
    r = await sbx.client.post(
        "/api/v1/sandboxes", json={"template": "python"}, headers=sbx.auth(bob), timeout=60
    )
    assert r.status_code == 201, r.text
    theirs = r.json()["id"]
    put = await sbx.client.put(
        f"/api/v1/sandboxes/{theirs}/files",
        params={"path": "notes.txt"},
        content=b"mine",
        headers=sbx.auth(bob),
    )
    assert put.status_code == 200, put.text

    attacks = [asyncio.ensure_future(sbx.get(hostile, n)) for n in names]
    await asyncio.sleep(0.5)  # the reads are in flight (or blocked, on the old code)

    async def bobs_work() -> tuple[httpx.Response, httpx.Response]:
        read = await sbx.client.get(
            f"/api/v1/sandboxes/{theirs}/files",
            params={"path": "notes.txt"},
            headers=sbx.auth(bob),
        )
        upload = await sbx.client.post(
            "/api/v1/skills/upload",
            files={"file": ("SKILL.md", skill_md("bobs-skill").encode())},
            headers=sbx.auth(bob),
        )
        return read, upload

    try:
        read, upload = await asyncio.wait_for(bobs_work(), PROMPT)
        assert read.status_code == 200 and read.content == b"mine", read.text
        assert upload.status_code in (200, 201), upload.text
        done = await asyncio.wait_for(asyncio.gather(*attacks), PROMPT)
        assert {r.status_code for r in done} == {422}
    finally:
        for task in attacks:
            task.cancel()


async def test_workspace_io_never_uses_the_default_executor(sbx: Sandboxes) -> None:
    """Every file operation and the disk measurement run on the sandboxes' own threads."""
    sid = (await sbx.create(template="python"))["id"]
    provider = sbx.service.providers["local"]
    spec = sbx.service.spec(await sbx.service.get(_admin(), sid))
    await sbx.service.activity.settle()

    class Forbidden(concurrent.futures.ThreadPoolExecutor):
        def submit(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("sandbox file I/O on the default executor")

    loop = asyncio.get_running_loop()
    forbidden = Forbidden(max_workers=1)
    loop.set_default_executor(forbidden)
    try:
        await provider.write_file(spec, "a/b.txt", b"data")
        assert await provider.read_file(spec, "a/b.txt", 100) == b"data"
        assert [e.name for e in await provider.list_files(spec, "a") or []] == ["b.txt"]
        assert (await provider.usage(spec)).disk_bytes
        await provider.delete_file(spec, "a")
    finally:
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor())
        forbidden.shutdown(wait=False)


# A `mcpgw serve` whose workspace read of "stuck.txt" never returns: a hung filesystem
# call cannot be produced on demand (FIFOs no longer block), so the test patches the
# provider's read function in the child process, nothing in the product.
_STUCK_SERVE = """
import sys, threading
import sandboxes.providers.localfs as localfs
real = localfs.read_file
def read_file(root, path, max_bytes):
    if path == "stuck.txt":
        threading.Event().wait()
    return real(root, path, max_bytes)
localfs.read_file = read_file
from gateway.cli import main
sys.argv = ["mcpgw", *sys.argv[1:]]
main()
"""


def test_sigterm_stops_the_gateway_while_a_file_call_hangs(tmp_path: Path) -> None:
    """The hung read answers 504 sandbox_fs_timeout after its deadline, and SIGTERM
    stops the gateway promptly although the thread is still stuck."""
    need_bwrap()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = _env(
        tmp_path,
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_SANDBOX_PROVIDER="local",
        MCPGW_SANDBOX_DISK_LIMIT="measured",  # nothing left mounted once it is killed
        MCPGW_SANDBOX_FS_TIMEOUT_SECONDS="2",
    )
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", _STUCK_SERVE, "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    auth = {"Authorization": f"Bearer {BOOT}"}
    try:
        _wait_ready(url, proc)
        r = httpx.post(f"{url}/api/v1/sandboxes", json={}, headers=auth, timeout=60)
        assert r.status_code == 201, r.text
        files = f"{url}/api/v1/sandboxes/{r.json()['id']}/files"
        for name in ("ok.txt", "stuck.txt"):
            put = httpx.put(files, params={"path": name}, content=b"x", headers=auth)
            assert put.is_success, put.text

        answers: list[httpx.Response] = []
        pending = _in_background(
            lambda: answers.append(
                httpx.get(files, params={"path": "stuck.txt"}, headers=auth, timeout=30)
            )
        )
        time.sleep(0.5)  # the read is stuck now
        ok = httpx.get(files, params={"path": "ok.txt"}, headers=auth, timeout=PROMPT)
        assert ok.content == b"x"  # other calls are still served

        proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError("the gateway ignored SIGTERM for 20 s") from None
        assert proc.returncode in GRACEFUL
        assert time.monotonic() - stopped < 15
        pending.join(timeout=5)
        # the stuck read got its answer before the gateway stopped
        assert [(r.status_code, r.json()["code"]) for r in answers] == [(504, "sandbox_fs_timeout")]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "serve exited"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError("serve did not become ready")


def _in_background(fn: Callable[[], object]) -> threading.Thread:
    def run() -> None:
        with contextlib.suppress(httpx.HTTPError):
            fn()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
