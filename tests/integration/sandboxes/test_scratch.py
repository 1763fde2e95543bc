"""Throwaway sandboxes (sandboxes/scratch.py), on the real `local` provider (bubblewrap):
a script runs with its package's files, without network, and nothing is left behind."""

from __future__ import annotations

from pathlib import Path

from gateway.config import Settings
from sandboxes.providers import sandbox_root
from sandboxes.scratch import run_script
from tests.integration.sandboxes.conftest import need_bwrap

PROBE = """import json, os, socket
print(open('/workspace/references/data.txt').read().strip())
try:
    socket.create_connection(('1.1.1.1', 53), timeout=2)
    print('network')
except OSError:
    print('no network')
print(os.getuid())
"""


async def test_a_script_runs_isolated_and_leaves_nothing(tmp_path: Path) -> None:
    need_bwrap()
    settings = Settings(data_dir=tmp_path / "data")
    files = {"scripts/probe.py": PROBE.encode(), "references/data.txt": b"the data\n"}
    run = await run_script(settings, files, "scripts/probe.py")
    assert run.ok, run
    assert run.stdout.split("\n")[:3] == ["the data", "no network", "1000"]
    root = sandbox_root(settings)
    assert not root.exists() or not any(p for p in root.iterdir() if p.name.startswith("gen-"))

    failing = await run_script(
        settings, {"scripts/x.sh": b"echo oops >&2; exit 4\n"}, "scripts/x.sh"
    )
    assert not failing.ok and failing.exit_code == 4 and failing.stderr == "oops\n"
    slow = await run_script(settings, {"scripts/s.sh": b"sleep 30\n"}, "scripts/s.sh", timeout=1)
    assert slow.timed_out and not slow.ok and slow.as_dict()["exit_code"] is None
