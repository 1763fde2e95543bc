"""The CLI's tables are written in one piece (gateway/cli_client.py).

Why it matters: docs/resilience.md's example pipes `mcpgw servers tools ev` into
`grep -qw` under `set -o pipefail`. grep -q exits at its first match; a table written
and flushed line by line then meets a closed pipe on a later line, click turns the
broken pipe into exit status 1, and the pipeline fails although the tool was listed:
on a busy CI machine the doc test failed so, looking as if the tools had vanished.
One write of the whole table lands in the pipe's buffer before grep can stop reading.
"""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from gateway.cli_client import print_table


class _Counting(io.StringIO):
    writes = 0

    def write(self, text: str) -> int:
        self.writes += bool(text)  # click probes the stream with empty writes
        return super().write(text)


def test_a_table_is_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _Counting()
    monkeypatch.setattr(sys, "stdout", out)
    rows = [{"tool": f"ev__tool-{i}", "description": "d" * i} for i in range(40)]
    print_table(rows, ["tool", "description"])
    assert out.writes == 1
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["TOOL", "DESCRIPTION"] and len(lines) == 41
    assert lines[5].startswith("ev__tool-4 ")


def test_piped_into_grep_q_under_pipefail_it_does_not_fail() -> None:
    """The doc's pattern, with a reader that stops at the first line: the command
    still exits 0 (the table was in the pipe before the reader went away)."""
    script = (
        "from gateway.cli_client import print_table\n"
        "print_table([{'tool': f'ev__t{i}'} for i in range(200)], ['tool'])\n"
    )
    shell = f'set -o pipefail; {sys.executable} -c "{script}" | grep -qw ev__t0'
    for _ in range(20):
        done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
