"""What bubblewrap shows of the host, shared by the two things the gateway runs in it:
package servers (pillar 1) and ``local`` sandboxes (pillar 3)."""

from __future__ import annotations

import os

# Top-level host paths made visible read-only (symlinks, as on merged-/usr systems, are
# recreated as symlinks).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def system_binds() -> list[str]:
    """``--ro-bind``/``--symlink`` arguments for the host's system directories."""
    args: list[str] = []
    for top in SYSTEM_DIRS:
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    return args


def etc_binds(entries: tuple[str, ...]) -> list[str]:
    """``--ro-bind`` arguments for the ``/etc`` entries among ``entries`` that exist."""
    args: list[str] = []
    for entry in entries:
        host = f"/etc/{entry}"
        if os.path.exists(host):
            args += ["--ro-bind", host, host]
    return args
