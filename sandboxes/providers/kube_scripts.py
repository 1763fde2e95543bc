"""What runs inside a Kubernetes sandbox's pod: the exec wrapper and the file scripts.

They need ``sh``, coreutils (``head``, ``stat``, ``realpath``, ``du``), GNU findutils
and ``setsid`` (util-linux), as Debian-based images have. Paths and values come as
positional arguments, never inside the script text.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex

from sandboxes.providers.base import ProviderError

WRAP = (
    'm=$1 h=$2 n=$3 t=$4 d=$5; shift 5; f="/tmp/.mcpgw-exec-$m"; echo $$ > "$f"; '
    'if [ "$h" -gt 0 ]; then eval "$(head -c "$h")" || exit 126; fi; '
    'cd -- "$d" || exit 126; p=$$; '
    # the watchdog: SIGKILL to the whole group once t seconds pass; gone within a second
    # of the command's end (no trap, so no race that leaves a sleeper behind)
    '(while [ "$t" -gt 0 ] && kill -0 "$p" 2>/dev/null; do sleep 1; t=$((t - 1)); done; '
    'kill -0 "$p" 2>/dev/null && kill -9 0) </dev/null >/dev/null 2>&1 & w=$!; '
    'if [ "$n" -ge 0 ]; then head -c "$n" | "$@"; else "$@" </dev/null; fi; '
    'c=$?; kill "$w" 2>/dev/null; rm -f "$f"; exit $c'
)
KILL = 'f="/tmp/.mcpgw-exec-$1"; [ -f "$f" ] && kill -9 -"$(cat "$f")"; rm -f "$f"'
# $1 the workspace, $2 the path: is the (existing) parent inside the workspace?
CONFINE = (
    'w=$(realpath -- "$1") || exit 1; p=$2; d=$(dirname -- "$p"); '
    'if [ "$p" != "$1" ] && [ -e "$d" ]; then r=$(realpath -- "$d"); '
    'case "$r" in "$w"|"$w"/*) ;; *) exit 7;; esac; fi; '
)
READ = CONFINE + (
    '[ -L "$p" ] && exit 3; [ -e "$p" ] || exit 2; [ -d "$p" ] && exit 4; [ -f "$p" ] || exit 5; '
    's=$(stat -c %s -- "$p") || exit 1; if [ "$s" -gt "$3" ]; then echo "$s"; exit 6; fi; '
    'exec cat -- "$p"'
)
WRITE = (
    'w=$(realpath -- "$1") || exit 1; p=$2; d=$(dirname -- "$p"); mkdir -p -- "$d" || exit 1; '
    'r=$(realpath -- "$d"); case "$r" in "$w"|"$w"/*) ;; *) exit 7;; esac; '
    '[ -d "$p" ] && [ ! -L "$p" ] && exit 4; t="$d/.mcpgw-upload.$$"; '
    'head -c "$3" > "$t" || { rm -f -- "$t"; exit 1; }; '
    '[ "$(stat -c %s -- "$t")" = "$3" ] || { rm -f -- "$t"; exit 8; }; mv -f -- "$t" "$p"'
)
LIST = CONFINE + (
    '[ -e "$p" ] || [ -L "$p" ] || exit 2; [ -L "$p" ] && exit 4; [ -d "$p" ] || exit 4; '
    'r=$(realpath -- "$p"); case "$r" in "$w"|"$w"/*) ;; *) exit 7;; esac; '
    "exec find \"$p\" -mindepth 1 -maxdepth 1 -printf '%y\\t%s\\t%T@\\t%f\\0'"
)
DELETE = CONFINE + '[ -e "$p" ] || [ -L "$p" ] || exit 2; rm -rf -- "$p"'
USAGE = (
    'printf "disk=%s\\n" "$(du -sb -- "$1" 2>/dev/null | cut -f1)"; c=/sys/fs/cgroup; '
    '[ -r $c/cpu.stat ] && sed -n "s/^usage_usec /cpu_usec=/p" $c/cpu.stat; '
    "for k in memory.current memory.peak pids.current; do "
    '[ -r $c/$k ] && printf "%s=%s\\n" "$k" "$(cat $c/$k)"; done; true'
)
FILE_ERRORS = {
    3: ("{path!r} is a symlink; the files API does not follow symlinks", "sandbox_path_invalid"),
    4: ("{path!r} is a directory", "sandbox_path_invalid"),
    5: ("{path!r} is not a regular file", "sandbox_path_invalid"),
    7: ("{path!r} leads out of the workspace through a symlink", "sandbox_path_invalid"),
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def exit_status(raw: bytes) -> tuple[int | None, str | None]:
    """(exit code, failure message) from the error channel's ``Status``."""
    if not raw:
        return None, "the exec stream ended without an exit status"
    try:
        status = json.loads(raw)
    except ValueError:
        return None, raw.decode(errors="replace")[:500]
    if status.get("status") == "Success":
        return 0, None
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            with contextlib.suppress(TypeError, ValueError):
                return int(cause.get("message")), None
    return None, str(status.get("message") or "the exec failed")


def env_header(env: dict[str, str]) -> bytes:
    lines = []
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise ProviderError(f"invalid environment variable name {name!r}")
        lines.append(f"export {name}={shlex.quote(value)}")
    return ("\n".join(lines) + "\n").encode() if lines else b""
