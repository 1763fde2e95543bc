"""Shallow, sandboxed ``git`` clones for skill imports.

The real ``git`` binary runs as a child process with: an empty HOME and no system or
global config (so the gateway host's credential helpers and tokens are never offered
to a repository someone else named), no terminal prompts, only the http(s) transports
(plus ``file`` when local imports are allowed), hooks off, symlinks checked out as plain
files (a link to ``/etc/passwd`` must not become an imported file), redirects off and
the host pinned to the addresses the SSRF guard approved (no DNS rebinding between the
check and the fetch), a deadline for the whole clone and a cap on bytes written.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from gateway.backend_errors import BackendError
from gateway.ssrf import check_url
from skills.sources.errors import (
    SourceError,
    SourceNotFound,
    SourceUnavailable,
    mask_credentials,
    strip_credentials,
)

# Host variables git may need to reach a repository (trust stores, proxies); nothing else
# of the gateway's environment reaches the child.
INHERITED_ENV = (
    "PATH",
    "LANG",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
SHA = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$", re.I)
WATCH_INTERVAL = 0.2

_NOT_FOUND = (
    "repository not found",
    "not found",
    "does not appear to be a git repository",
    "returned error: 404",
    "returned error: 410",
    "could not read username",
    "authentication failed",
    "returned error: 401",
    "returned error: 403",
)
_MISSING_REF = (
    "remote branch",
    "couldn't find remote ref",
    "not our ref",
    "unadvertised object",
)
_UNREACHABLE = (
    "could not resolve host",
    "failed to connect",
    "connection refused",
    "connection timed out",
    "operation timed out",
    "network is unreachable",
    "ssl",
    "empty reply",
)


def is_commit_sha(ref: str) -> bool:
    """The tool's ``isCommitSha`` (plus SHA-256 object names)."""
    return SHA.match(ref) is not None


def _error_text(stderr: str) -> str:
    """git's last few meaningful lines, masked, for a message."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.lower().startswith(("cloning into", "hint:"))]
    return mask_credentials(" | ".join(lines[-3:]))[:500] or "no output"


def classify_failure(stderr: str, url: str, ref: str | None) -> SourceError:
    """Turn a failed git command into the error a caller should see."""
    text = stderr.lower()
    shown = strip_credentials(url)
    if ref and any(marker in text for marker in _MISSING_REF):
        return SourceNotFound(f"ref {ref!r} not found in {shown}", code="ref_not_found")
    if any(marker in text for marker in _UNREACHABLE):
        return SourceUnavailable(f"cannot reach {shown}: {_error_text(stderr)}")
    if any(marker in text for marker in _NOT_FOUND):
        # Hosts answer 401/403 for private and missing repositories alike.
        return SourceNotFound(f"repository {shown} not found (or not public)")
    return SourceUnavailable(f"git could not fetch {shown}: {_error_text(stderr)}")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _ip_literal(address: str) -> str:
    return f"[{address}]" if ":" in address else address


async def guard_url(url: str, *, allow_private: bool) -> list[str]:
    """Refuse ``url`` when its host is loopback/private (unless allowed) via the gateway's
    SSRF guard, and return git ``-c`` settings that pin the host to the checked addresses
    and turn redirects off, so neither DNS rebinding nor a redirect reaches another host.
    """
    if allow_private:
        return []
    shown = strip_credentials(url)
    try:
        # One resolution: the addresses checked are the addresses git connects to.
        pin = await check_url(url, allow_private=False)
    except BackendError as exc:
        if str(exc).startswith("cannot resolve"):
            raise SourceUnavailable(f"cannot fetch {shown}: {exc}") from None
        raise SourceError(f"{shown} is refused: {exc}", code="url_refused") from None
    if pin is None or _is_ip(pin.host):
        return ["http.followRedirects=false"]  # nothing to resolve, nothing to pin
    pinned = ",".join(_ip_literal(a) for a in pin.addresses)
    return [f"http.curloptResolve={pin.host}:{pin.port}:{pinned}", "http.followRedirects=false"]


def _tree_bytes(root: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


@dataclass
class Git:
    """Runs git commands for one import under one deadline and one disk budget."""

    home: Path
    timeout: float
    max_bytes: int
    allow_file: bool = False
    extra_config: list[str] = field(default_factory=list)
    deadline: float = 0.0

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.timeout

    def env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env.setdefault("PATH", os.defpath)
        protocols = "http:https:file" if self.allow_file else "http:https"
        env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home),
            LC_ALL="C",
            GIT_CONFIG_NOSYSTEM="1",
            GIT_CONFIG_GLOBAL=os.devnull,
            GIT_TERMINAL_PROMPT="0",
            GIT_ASKPASS="",
            SSH_ASKPASS="",
            GIT_ALLOW_PROTOCOL=protocols,
            GIT_PROTOCOL_FROM_USER="0",
            GIT_LFS_SKIP_SMUDGE="1",
            GIT_OPTIONAL_LOCKS="0",
        )
        return env

    def config(self) -> list[str]:
        file_policy = "always" if self.allow_file else "never"
        settings = [
            "core.hooksPath=" + os.devnull,
            "core.symlinks=false",
            "core.fsmonitor=false",
            "credential.helper=",
            "protocol.allow=never",
            "protocol.http.allow=always",
            "protocol.https.allow=always",
            f"protocol.file.allow={file_policy}",
            "submodule.recurse=false",
            *self.extra_config,
        ]
        return [arg for item in settings for arg in ("-c", item)]

    async def run(self, *args: str, cwd: Path | None = None, watch: Path | None = None) -> str:
        """Run ``git args``; stdout on success, else :class:`GitFailed` with stderr."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise SourceUnavailable(f"the clone took longer than {self.timeout:g}s")
        proc = await asyncio.create_subprocess_exec(
            "git",
            *self.config(),
            *args,
            cwd=cwd,
            env=self.env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # Its own process group: git forks git-remote-http and index-pack, and a
            # timeout or the size cap must stop all of them.
            start_new_session=True,
        )
        watcher = asyncio.create_task(self._watch(proc, watch)) if watch is not None else None
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), remaining)
        except TimeoutError:
            _kill(proc)
            await proc.wait()
            raise SourceUnavailable(f"the clone took longer than {self.timeout:g}s") from None
        except BaseException:
            _kill(proc)
            await proc.wait()
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        if watch is not None and await asyncio.to_thread(_tree_bytes, watch) > self.max_bytes:
            raise self._too_large()
        if proc.returncode != 0:
            raise GitFailed(stderr.decode("utf-8", "replace"))
        return stdout.decode("utf-8", "replace")

    def _too_large(self) -> SourceError:
        return SourceError(
            f"the source is larger than {self.max_bytes} bytes "
            "(MCPGW_SKILLS_MAX_SOURCE_BYTES); name a sub-path or a single skill's folder",
            code="source_too_large",
        )

    async def _watch(self, proc: asyncio.subprocess.Process, folder: Path) -> None:
        """Stop the clone as soon as it writes more than the budget."""
        while proc.returncode is None:
            await asyncio.sleep(WATCH_INTERVAL)
            if await asyncio.to_thread(_tree_bytes, folder) > self.max_bytes:
                _kill(proc)
                return


class GitFailed(Exception):
    """A git command exited non-zero; ``stderr`` is its raw (unmasked) output."""

    def __init__(self, stderr: str) -> None:
        super().__init__(mask_credentials(stderr))
        self.stderr = stderr


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


async def clone(
    git: Git, url: str, dest: Path, *, ref: str | None = None, subpath: str | None = None
) -> str:
    """Check out ``url`` at ``ref`` (default branch when None) into ``dest``; the commit.

    Depth 1 always. A branch or tag goes through ``--branch``; a commit sha is fetched
    by itself. With a ``subpath`` the clone is partial (``--filter=blob:none``) and
    sparse, so only that folder's files are downloaded from a large repository.
    """
    sparse = ["--filter=blob:none", "--sparse"] if subpath else []
    try:
        if ref is not None and is_commit_sha(ref):
            await git.run("init", "--quiet", "--template=", str(dest))
            await git.run("remote", "add", "origin", url, cwd=dest)
            if subpath:
                # What `clone --filter --sparse` would set up, for a fetch by commit.
                for key, value in (
                    ("extensions.partialClone", "origin"),
                    ("remote.origin.promisor", "true"),
                    ("remote.origin.partialclonefilter", "blob:none"),
                ):
                    await git.run("config", key, value, cwd=dest)
                await git.run("sparse-checkout", "set", "--", subpath, cwd=dest)
            fetch = ["fetch", "--quiet", "--depth", "1", "--no-tags"]
            if subpath:
                fetch.append("--filter=blob:none")
            await git.run(*fetch, "origin", ref, cwd=dest, watch=dest)
            await git.run("checkout", "--quiet", "--detach", "FETCH_HEAD", cwd=dest, watch=dest)
        else:
            branch = ["--branch", ref] if ref is not None else []
            args = ["clone", "--quiet", "--depth", "1", "--no-tags", "--single-branch"]
            args += ["--template=", *branch, *sparse, "--", url, str(dest)]
            await git.run(*args, watch=dest.parent)
            if subpath:
                await git.run("sparse-checkout", "set", "--", subpath, cwd=dest, watch=dest)
        commit = (await git.run("rev-parse", "HEAD", cwd=dest)).strip()
    except GitFailed as exc:
        raise classify_failure(exc.stderr, url, ref) from None
    return commit


async def head_commit(git: Git, path: Path) -> str | None:
    """The commit checked out in the work tree holding ``path``; None if not a git tree."""
    try:
        inside = (await git.run("rev-parse", "--is-inside-work-tree", cwd=path)).strip()
        if inside != "true":
            return None
        return (await git.run("rev-parse", "HEAD", cwd=path)).strip() or None
    except GitFailed:
        return None
