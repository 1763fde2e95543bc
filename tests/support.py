"""Helpers for tests that run the `mcpgw` command and a real server process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

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


def spawn_http(args: list[str], port: int, timeout: float = 30) -> subprocess.Popen[bytes]:
    """Start a process that serves HTTP on 127.0.0.1:``port`` and wait until it answers."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[type[Server]]:
    started: list[Server] = []

    class Tracked(Server):
        def __init__(self, port: int | None = None, **env: str) -> None:
            super().__init__(tmp_path, port, **env)
            started.append(self)

    yield Tracked  # type: ignore[misc]
    for server in started:
        server.stop()
