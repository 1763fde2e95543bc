"""One real gateway (`mcpgw serve`) for the whole interop matrix, and the matrix so far.

tests/interop/matrix.py runs all of a backend's rows at once. The backends the
selected tests need are run ahead, a few at a time ($MCPGW_INTEROP_PARALLEL, default
4), on an event loop of their own: most of a row is waiting (server starts, answers,
notifications that must arrive within a few seconds), so running backends side by
side takes the matrix from about 35 minutes to a fraction of that. A test waits for
its backend's rows. The table of every row run is printed at the end of the session
and written to test-artifacts/interop-matrix.txt and .json.

In a run of the whole suite (`make test`) the matrix starts as soon as collection ends,
beside the other tests, which it barely loads (it is waiting most of the time): its
rows are ready, or nearly, when pytest reaches them, instead of adding their 15
minutes at the end. `MCPGW_INTEROP_EARLY=0` starts it at the first interop test.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.interop.agents import node24
from tests.interop.backends import Missing, inspector_installed
from tests.interop.matrix import Gateway, Matrix, Row, route_table, table
from tests.support import BOOT, Server

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
GATEWAY_ENV = {
    "MCPGW_BOOTSTRAP_API_KEY": BOOT,
    "MCPGW_ALLOW_PRIVATE_URLS": "true",  # the backends are on loopback
    "MCPGW_INTERFACE_MODE": "list",  # every tool listed, however many backends
}
_RUN: list[Matrix] = []
_WANTED: list[str] = []  # the backends of the selected tests, in test order
_BACKEND_TIMEOUT = 1800.0  # seconds a test waits for its backend's rows
_PARALLEL = 4  # backends at a time (each row of one backend runs alone)


@dataclass
class Interop:
    gateway: Gateway
    server: Server
    matrix: Matrix = field(default_factory=Matrix)
    done: dict[str, list[Row] | str] = field(default_factory=dict)
    ready: dict[str, threading.Event] = field(default_factory=dict)
    thread: threading.Thread | None = None  # running the prefetched backends
    tmp: Path | None = None  # its own directory, when started before any fixture

    async def _run(self, backend: str) -> None:
        try:
            self.done[backend] = await self.matrix.run_backend(self.gateway, backend)
        except Missing as exc:
            self.done[backend] = str(exc)
        except Exception as exc:  # one backend's breakage fails its rows, not the others
            self.done[backend] = f"running backend {backend} failed: {exc!r}"
        finally:
            self.ready[backend].set()

    def prefetch(self, backends: list[str], parallel: int) -> threading.Thread:
        """Run ``backends`` ``parallel`` at a time on a thread of their own."""
        for name in backends:
            self.ready[name] = threading.Event()

        async def all_of_them() -> None:
            gate = asyncio.Semaphore(parallel)

            async def one(name: str) -> None:
                async with gate:
                    await self._run(name)

            await asyncio.gather(*(one(name) for name in backends))

        thread = threading.Thread(target=asyncio.run, args=(all_of_them(),), daemon=True)
        thread.start()
        return thread

    def rows_of(self, backend: str) -> list[Row]:
        """The rows of ``backend`` (a setup failure fails them all)."""
        if backend not in self.ready:  # not foreseen at collection: run it here
            self.ready[backend] = threading.Event()
            asyncio.run(self._run(backend))
        if not self.ready[backend].wait(_BACKEND_TIMEOUT):
            pytest.fail(f"backend {backend} did not finish in {_BACKEND_TIMEOUT:.0f} s")
        found = self.done[backend]
        if isinstance(found, str):
            pytest.fail(found, pytrace=False)
        return found


_EARLY: list[Interop | str] = []  # the matrix started at collection end (or why not)


def _start(tmp: Path) -> tuple[Interop, threading.Thread]:
    """A gateway for the matrix, and the thread running the wanted backends' rows."""
    launcher = inspector_installed()
    server = Server(tmp, None, **GATEWAY_ENV)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    gateway = Gateway(server.url, BOOT, tmp, inspector=launcher, node=node24())
    found = Interop(gateway, server)
    _RUN.append(found.matrix)
    parallel = int(os.environ.get("MCPGW_INTEROP_PARALLEL", str(_PARALLEL)))
    found.thread = found.prefetch(list(_WANTED), parallel)
    return found, found.thread


@pytest.fixture(scope="session")
def interop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Interop]:
    if _EARLY:
        early = _EARLY[0]
        if isinstance(early, str):
            pytest.fail(early, pytrace=False)
        yield early
        return  # stopped at session finish
    try:
        found, thread = _start(tmp_path_factory.mktemp("interop"))
    except Missing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield found
        thread.join(timeout=_BACKEND_TIMEOUT)
    finally:
        found.server.stop()


def _start_early(session: pytest.Session) -> None:
    """Start the matrix now when the run holds other tests too (see the docstring)."""
    selected = {item.path.parent == Path(__file__).parent for item in session.items}
    if selected != {True, False} or os.environ.get("MCPGW_INTEROP_EARLY", "1") == "0":
        return
    tmp = Path(tempfile.mkdtemp(prefix="mcpgw-interop-"))
    try:
        found, _ = _start(tmp)
    except Exception as exc:  # each interop test fails with it; the others run
        _EARLY.append(f"the interop matrix could not start: {exc}")
        return
    found.tmp = tmp
    _EARLY.append(found)


def pytest_sessionfinish(session: pytest.Session) -> None:
    for early in _EARLY:
        if isinstance(early, Interop) and early.thread is not None:
            early.thread.join(timeout=_BACKEND_TIMEOUT)
            early.server.stop()
            if early.tmp is not None and session.testsfailed == 0:
                shutil.rmtree(early.tmp, ignore_errors=True)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Note the backends of the tests that will run (after `-k`/`-m` deselection)."""
    _WANTED.clear()
    here = Path(__file__).parent
    for item in session.items:
        if item.path.parent != here:
            continue
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec is not None else None
        if isinstance(backend, str) and backend not in _WANTED:
            _WANTED.append(backend)
    if _WANTED and not _EARLY:
        _start_early(session)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    rows = [row for matrix in _RUN for row in matrix.rows]
    if not rows:
        return
    text = table(rows) + "\n\n" + route_table({k: v for m in _RUN for k, v in m.routes.items()})
    terminalreporter.write_sep("=", "interop matrix")
    terminalreporter.write_line(text)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "interop-matrix.txt").write_text(text + "\n")
    merged = {"rows": [r for m in _RUN for r in m.to_json()["rows"]]}
    (ARTIFACTS / "interop-matrix.json").write_text(json.dumps(merged, indent=1))
