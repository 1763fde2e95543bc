"""CPU, memory and process limits for ``local`` sandboxes through Linux cgroups.

One cgroup per sandbox under ``mcpgw-sandboxes/`` in every controller hierarchy
(cgroup v1: pids, memory, cpu, cpuacct; v2: one unified group). Every exec joins
it before ``bwrap`` starts, so every process of the sandbox is counted together.
Where cgroups cannot be written (no root, no delegation), :func:`detect` returns
``None`` and the provider falls back to rlimits (``prlimit``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from sandboxes.providers.base import Limits

log = logging.getLogger("sandboxes.cgroups")

GROUP = "mcpgw-sandboxes"
_PERIOD_US = 100_000


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _keyed(text: str | None, key: str) -> int | None:
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            with contextlib.suppress(ValueError):
                return int(value)
    return None


def _mounts() -> list[tuple[str, str, list[str]]]:
    rows = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
            rows.append((parts[1], parts[2], parts[3].split(",")))
    return rows


@dataclass
class Measure:
    cpu_seconds: float | None
    memory_bytes: int | None
    memory_peak_bytes: int | None
    processes: int | None


class Cgroups:
    """Base class: the operations the local provider uses."""

    version = ""

    def dirs(self, sandbox_id: str) -> list[Path]:
        raise NotImplementedError

    def create(self, sandbox_id: str, limits: Limits) -> None:
        raise NotImplementedError

    def procs_files(self, sandbox_id: str) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs(sandbox_id)]

    def oom_kills(self, sandbox_id: str) -> int:
        raise NotImplementedError

    def pids_hits(self, sandbox_id: str) -> int:
        raise NotImplementedError

    def measure(self, sandbox_id: str) -> Measure:
        raise NotImplementedError

    def pids(self, sandbox_id: str) -> list[int]:
        found: set[int] = set()
        for d in self.dirs(sandbox_id):
            for line in (_read(d / "cgroup.procs") or "").split():
                with contextlib.suppress(ValueError):
                    found.add(int(line))
        return sorted(found)

    def kill(self, sandbox_id: str) -> None:
        """SIGKILL every process in the sandbox's group, until none is left."""
        for _ in range(100):
            pids = self.pids(sandbox_id)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def remove(self, sandbox_id: str) -> None:
        self.kill(sandbox_id)
        for d in self.dirs(sandbox_id):
            for _ in range(50):
                try:
                    if d.exists():
                        d.rmdir()
                    break
                except OSError:  # a process is still exiting
                    time.sleep(0.02)


class CgroupsV1(Cgroups):
    version = "cgroup-v1"

    def __init__(self, mounts: dict[str, Path]) -> None:
        self.mounts = mounts  # controller -> mount point

    def dirs(self, sandbox_id: str) -> list[Path]:
        seen: list[Path] = []
        for mount in self.mounts.values():
            d = mount / GROUP / sandbox_id
            if d not in seen:
                seen.append(d)
        return seen

    def _dir(self, controller: str, sandbox_id: str) -> Path | None:
        mount = self.mounts.get(controller)
        return mount / GROUP / sandbox_id if mount else None

    def create(self, sandbox_id: str, limits: Limits) -> None:
        for d in self.dirs(sandbox_id):
            d.mkdir(parents=True, exist_ok=True)
        pids = self._dir("pids", sandbox_id)
        if pids:
            _write(pids / "pids.max", str(limits.pids))
        memory = self._dir("memory", sandbox_id)
        if memory:
            limit = str(limits.memory_mb * 1024 * 1024)
            _write(memory / "memory.limit_in_bytes", limit)
            swap = memory / "memory.memsw.limit_in_bytes"
            if swap.exists():  # memory + swap = memory: no swapping out of the limit
                with contextlib.suppress(OSError):
                    _write(swap, limit)
        cpu = self._dir("cpu", sandbox_id)
        if cpu:
            _write(cpu / "cpu.cfs_period_us", str(_PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", str(max(1000, int(limits.cpus * _PERIOD_US))))

    def oom_kills(self, sandbox_id: str) -> int:
        memory = self._dir("memory", sandbox_id)
        if memory is None:
            return 0
        text = _read(memory / "memory.oom_control")
        kills = _keyed(text, "oom_kill")
        if kills is None:  # old kernels: count limit hits instead
            return int((_read(memory / "memory.failcnt") or "0").strip() or 0)
        return kills

    def pids_hits(self, sandbox_id: str) -> int:
        pids = self._dir("pids", sandbox_id)
        return (_keyed(_read(pids / "pids.events"), "max") or 0) if pids else 0

    def measure(self, sandbox_id: str) -> Measure:
        def number(controller: str, name: str) -> int | None:
            d = self._dir(controller, sandbox_id)
            text = _read(d / name) if d else None
            try:
                return int(text.strip()) if text else None
            except ValueError:
                return None

        cpu_ns = number("cpuacct", "cpuacct.usage")
        return Measure(
            cpu_seconds=cpu_ns / 1e9 if cpu_ns is not None else None,
            memory_bytes=number("memory", "memory.usage_in_bytes"),
            memory_peak_bytes=number("memory", "memory.max_usage_in_bytes"),
            processes=number("pids", "pids.current"),
        )


class CgroupsV2(Cgroups):
    version = "cgroup-v2"

    def __init__(self, root: Path) -> None:
        self.root = root

    def dirs(self, sandbox_id: str) -> list[Path]:
        return [self.root / GROUP / sandbox_id]

    def create(self, sandbox_id: str, limits: Limits) -> None:
        (d,) = self.dirs(sandbox_id)
        d.mkdir(parents=True, exist_ok=True)
        _write(d / "pids.max", str(limits.pids))
        _write(d / "memory.max", str(limits.memory_mb * 1024 * 1024))
        with contextlib.suppress(OSError):
            _write(d / "memory.swap.max", "0")
        _write(d / "cpu.max", f"{max(1000, int(limits.cpus * _PERIOD_US))} {_PERIOD_US}")

    def oom_kills(self, sandbox_id: str) -> int:
        (d,) = self.dirs(sandbox_id)
        return _keyed(_read(d / "memory.events"), "oom_kill") or 0

    def pids_hits(self, sandbox_id: str) -> int:
        (d,) = self.dirs(sandbox_id)
        return _keyed(_read(d / "pids.events"), "max") or 0

    def measure(self, sandbox_id: str) -> Measure:
        (d,) = self.dirs(sandbox_id)
        usec = _keyed(_read(d / "cpu.stat"), "usage_usec")

        def number(name: str) -> int | None:
            text = _read(d / name)
            try:
                return int(text.strip()) if text else None
            except ValueError:
                return None

        return Measure(
            cpu_seconds=usec / 1e6 if usec is not None else None,
            memory_bytes=number("memory.current"),
            memory_peak_bytes=number("memory.peak"),
            processes=number("pids.current"),
        )

    def kill(self, sandbox_id: str) -> None:
        (d,) = self.dirs(sandbox_id)
        with contextlib.suppress(OSError):
            _write(d / "cgroup.kill", "1")
        super().kill(sandbox_id)


def _probe(cg: Cgroups) -> bool:
    """Can we make, limit and remove a group here?"""
    probe = f"probe-{os.getpid()}"
    try:
        cg.create(probe, Limits(cpus=1, memory_mb=64, pids=16, disk_mb=1))
        return True
    except OSError as exc:
        log.info("cgroups not usable for sandboxes", extra={"error": str(exc)})
        return False
    finally:
        for d in cg.dirs(probe):
            with contextlib.suppress(OSError):
                d.rmdir()


def detect() -> Cgroups | None:
    """The cgroup hierarchy to use for sandbox limits, or None (use rlimits)."""
    try:
        mounts = _mounts()
    except OSError:
        return None
    v1: dict[str, Path] = {}
    for point, kind, options in mounts:
        if kind == "cgroup2" and Path(point) == Path("/sys/fs/cgroup"):
            root = Path(point)
            controllers = set((_read(root / "cgroup.controllers") or "").split())
            if {"memory", "pids", "cpu"} <= controllers:
                with contextlib.suppress(OSError):
                    _write(root / "cgroup.subtree_control", "+memory +pids +cpu")
                base = root / GROUP
                with contextlib.suppress(OSError):
                    base.mkdir(exist_ok=True)
                    _write(base / "cgroup.subtree_control", "+memory +pids +cpu")
                cg2 = CgroupsV2(root)
                if _probe(cg2):
                    return cg2
            return None
        if kind == "cgroup":
            for controller in ("pids", "memory", "cpu", "cpuacct"):
                if controller in options:
                    v1[controller] = Path(point)
    if {"pids", "memory", "cpu"} <= set(v1):
        cg1 = CgroupsV1(v1)
        if _probe(cg1):
            return cg1
    return None
