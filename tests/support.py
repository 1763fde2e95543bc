"""Helpers for tests that run the `mcpgw` command and a real server process."""

from __future__ import annotations

import asyncio
import http.server
import inspect
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

MCPGW = str(Path(sys.executable).parent / "mcpgw")
BOOT = "mgw_live_cli_test_bootstrap_key_42424242"
# uvicorn shuts down cleanly on SIGTERM, then re-raises the signal so supervisors see it.
GRACEFUL = (0, -signal.SIGTERM)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPGW_")}
    env.update({"MCPGW_DATA_DIR": str(tmp_path / "data"), **extra})
    return env


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MCPGW, *args],
        env=_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )


def spawn_http(
    args: list[str], port: int, timeout: float = 30, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a process that serves HTTP on 127.0.0.1:``port`` and wait until it answers
    (``env``: variables added to this process's environment)."""
    proc = subprocess.Popen(
        args,
        env={**os.environ, **env} if env else None,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
            return proc
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"{args} did not start serving on port {port}") from None
            time.sleep(0.05)


async def wait_for(
    check: Callable[[], Any],
    timeout: float = 30,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll ``check()`` (sync or async) until it returns something truthy; that value.
    Fails, naming ``what``, once ``timeout`` seconds pass. Tests wait with this, never
    with a sleep followed by one more try."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, tmp_path: Path, port: int | None = None, **env: str) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"serve-{self.port}-{time.monotonic_ns()}.log"
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [MCPGW, "serve", "--port", str(self.port)],
            env=_env(tmp_path, **env),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )

    def wait_ready(self, timeout: float = 30) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"not ready in {timeout}s:\n{self.output()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode

    def output(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log.read_text()


def _tracked(tmp_path: Path) -> Iterator[type[Server]]:
    started: list[Server] = []

    class Tracked(Server):
        def __init__(self, port: int | None = None, **env: str) -> None:
            super().__init__(tmp_path, port, **env)
            started.append(self)

    yield Tracked  # type: ignore[misc]
    for server in started:
        server.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[type[Server]]:
    """Gateway processes for one test, stopped after it."""
    yield from _tracked(tmp_path)


@pytest.fixture(scope="module")
def module_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[type[Server]]:
    """Gateway processes shared by a module's tests (starting one costs about a second):
    for tests that leave the gateway as they found it, or make names of their own."""
    yield from _tracked(tmp_path_factory.mktemp("gateway"))


# --- a real git server on loopback (`git http-backend` behind http.server) ----------------


def git(cwd: Path, *args: str) -> str:
    """Run git in a test repository with a fixed identity; its stdout."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"git {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def skill_md(name: str, description: str = "A test skill.", body: str = "Do the thing.\n") -> str:
    """A minimal valid SKILL.md."""
    return f"---\nname: {name}\ndescription: {description}\n---\n\n# {name}\n\n{body}"


class _GitCGI(http.server.BaseHTTPRequestHandler):
    """Runs `git http-backend` (smart HTTP, protocol v2) as a CGI script per request."""

    server: _GitHTTPD

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _cgi(self) -> None:
        path, _, query = self.path.partition("?")
        self.server.requests.append(self.path)
        # A slow or stalled host; a closed server answers nothing more.
        if self.server.closed.wait(self.server.delay):
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = done.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()


class _GitHTTPD(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _GitCGI)
        self.root = root
        self.requests: list[str] = []
        self.delay = 0.0
        self.closed = threading.Event()


class GitHttpServer:
    """Bare repositories under ``root`` served over smart HTTP on 127.0.0.1.

    ``base_url`` plays GitHub: set ``MCPGW_SKILLS_GITHUB_BASE`` (``skills_github_base``)
    to it and ``owner/repo`` resolves to ``{base_url}/owner/repo.git`` here. Remember
    ``allow_private_urls=True``: the SSRF guard refuses loopback otherwise.

    ``publish("owner/repo", files)`` creates (or updates with a new commit) a repository
    and returns the commit; ``work("owner/repo")`` is its work tree for custom commits
    followed by ``push("owner/repo")``. ``requests`` lists the paths asked for;
    setting ``delay`` (seconds) makes every answer that late.
    """

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "git-served"
        self.works = tmp_path / "git-work"
        self.root.mkdir()
        self.works.mkdir()
        self._httpd = _GitHTTPD(self.root)
        self.port = int(self._httpd.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def requests(self) -> list[str]:
        return self._httpd.requests

    @property
    def delay(self) -> float:
        return self._httpd.delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        self._httpd.delay = seconds

    def url(self, owner_repo: str) -> str:
        return f"{self.base_url}/{owner_repo}.git"

    def work(self, owner_repo: str) -> Path:
        path = self.works / owner_repo
        if not (path / ".git").exists():
            path.mkdir(parents=True, exist_ok=True)
            git(path, "init", "--quiet", "--initial-branch=main")
        return path

    def push(self, owner_repo: str) -> str:
        """Publish every branch and tag of the work tree; the work tree's HEAD commit."""
        bare = self.root / f"{owner_repo}.git"
        if not bare.exists():
            bare.mkdir(parents=True)
            git(bare, "init", "--quiet", "--bare", "--initial-branch=main")
            # What GitHub allows too: partial clones and fetching a commit by its sha.
            git(bare, "config", "uploadpack.allowFilter", "true")
            git(bare, "config", "uploadpack.allowAnySHA1InWant", "true")
        work = self.work(owner_repo)
        git(work, "push", "--quiet", "--force", str(bare), "refs/heads/*:refs/heads/*")
        git(work, "push", "--quiet", "--force", str(bare), "refs/tags/*:refs/tags/*")
        return git(work, "rev-parse", "HEAD").strip()

    def publish(
        self, owner_repo: str, files: dict[str, str], message: str = "update", branch: str = "main"
    ) -> str:
        """Write ``files`` (path → text) into ``branch``, commit, push; the new commit."""
        work = self.work(owner_repo)
        has_commits = (
            subprocess.run(
                ["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=work, capture_output=True
            ).returncode
            == 0
        )
        if has_commits:
            git(work, "checkout", "--quiet", "-B", branch)
        else:
            git(work, "checkout", "--quiet", "--orphan", branch)
        write_files(work, files)
        git(work, "add", "--all")
        git(work, "commit", "--quiet", "--allow-empty", "-m", message)
        return self.push(owner_repo)

    def close(self) -> None:
        self._httpd.closed.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def git_http_server(tmp_path: Path) -> Iterator[GitHttpServer]:
    """A real git smart-HTTP server on loopback (see :class:`GitHttpServer`).

    Import it into a test module or conftest: ``from tests.support import git_http_server``.
    """
    server = GitHttpServer(tmp_path)
    try:
        yield server
    finally:
        server.close()
