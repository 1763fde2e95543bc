"""The sandboxes' own thread pool: bounded, fair per sandbox, time-limited, never joined.

Stuck calls are simulated with a :class:`threading.Event` the test holds (a hung
filesystem call cannot be produced on demand); every one is released at the end.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from typing import Any, cast

import pytest

from sandboxes.activity import Activity
from sandboxes.blocking import BlockingPool, FsTimeout, in_thread, to_thread


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # release every "stuck" call


async def test_results_and_errors_come_back() -> None:
    pool = BlockingPool("t", workers=2, timeout=5)
    assert await pool.run(lambda: 6 * 7) == 42
    with pytest.raises(ZeroDivisionError):
        await pool.run(lambda: 1 // 0)
    assert await to_thread(sorted, [3, 1, 2]) == [1, 2, 3]
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("t-"))


async def test_a_stuck_sandbox_times_out_alone(gate: threading.Event) -> None:
    """Its calls fail with sandbox_fs_timeout; other sandboxes are served at once, and a
    spare thread takes the stuck one's place."""
    pool = BlockingPool("stuck", workers=2, timeout=0.5, per_key=1)
    stuck = asyncio.ensure_future(pool.run(gate.wait, key="hostile"))
    await asyncio.sleep(0.05)
    with pytest.raises(FsTimeout) as caught:
        await pool.run(lambda: "never", key="hostile")  # waits for its one slot
    assert caught.value.code == "sandbox_fs_timeout" and "0.5 s" in caught.value.message
    with pytest.raises(FsTimeout):
        await stuck
    assert pool.stats()["stuck"] == 1

    started = time.monotonic()
    results = await asyncio.gather(*(pool.run(partial(int, i), key=f"ok{i}") for i in range(20)))
    assert results == list(range(20)) and time.monotonic() - started < 0.5
    assert pool.stats()["threads"] - pool.stats()["stuck"] <= 2

    gate.set()  # the stuck call returns: its thread leaves (the spare stays, two in all)
    for _ in range(100):
        if pool.stats()["stuck"] == 0 and pool.stats()["threads"] <= 2:
            break
        await asyncio.sleep(0.02)
    assert pool.stats() == {"threads": 2, "idle": 2, "stuck": 0, "queued": 0}
    assert await pool.run(lambda: "again", key="hostile") == "again"


async def test_threads_stay_bounded_when_many_calls_hang(gate: threading.Event) -> None:
    pool = BlockingPool("bounded", workers=2, timeout=0.2, per_key=8, spare=2)
    calls = [pool.run(gate.wait, key="k") for _ in range(12)]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(o, FsTimeout) for o in outcomes)
    assert pool.stats()["threads"] <= 4  # workers + spare, however many hung


async def test_a_cancelled_call_that_has_not_started_never_runs(gate: threading.Event) -> None:
    pool = BlockingPool("cancel", workers=1, timeout=None)
    ran: list[str] = []
    busy = asyncio.ensure_future(pool.run(gate.wait))
    await asyncio.sleep(0.05)
    waiting = asyncio.ensure_future(pool.run(lambda: ran.append("late")))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.set()
    await busy
    await pool.run(lambda: None)
    assert ran == [] and pool.stats()["queued"] == 0


async def test_in_thread_runs_on_its_own_daemon_thread() -> None:
    names: list[str] = []
    await in_thread(lambda: names.append(threading.current_thread().name), name="long-1")
    assert names == ["long-1"]
    with pytest.raises(RuntimeError):
        await in_thread(lambda: (_ for _ in ()).throw(RuntimeError("boom")), name="long-2")


def test_a_call_that_never_returns_does_not_keep_the_process_alive() -> None:
    """ThreadPoolExecutor joins its threads at exit (asyncio.run shuts the default
    executor down and waits); the pool's daemon threads do not hold the exit."""
    code = (
        "import asyncio, threading\n"
        "from sandboxes.blocking import BlockingPool\n"
        "pool = BlockingPool('exit', workers=1, timeout=0.2)\n"
        "async def main():\n"
        "    try:\n"
        "        await pool.run(threading.Event().wait)\n"
        "    except Exception as exc:\n"
        "        print(type(exc).__name__)\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "FsTimeout", done


async def test_a_hung_disk_measurement_does_not_hold_shutdown() -> None:
    """Shutdown waits for the measurements under way (``settle``); one that never ends
    is given up after its deadline."""
    activity = Activity(cast(Any, None), measure_timeout=0.2)  # no flush: no database
    never = asyncio.Event()

    async def hung() -> None:
        await never.wait()

    activity.measure_soon("sbx", hung)
    await asyncio.wait_for(activity.settle(), 5)
