"""``docker`` adapter: an image run on the local engine, over stdio or as an HTTP server.

Hardened by default: read-only root with a tmpfs ``/tmp``, every capability
dropped, ``no-new-privileges``, pids/memory/CPU limits, no network unless the
server's config says ``bridge``. The server's env and secrets reach the container
only: the ``docker`` CLI reads them as ``--env-file /dev/fd/3`` from an anonymous
memory file (:mod:`~gateway.handoff`), so they are on no command
line and never configure the CLI itself (``DOCKER_HOST``, ``LD_PRELOAD``), which
runs with a fixed environment: the gateway's ``PATH``/``HOME`` and its own
``DOCKER_*`` settings.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from mcp.client.stdio import StdioServerParameters, stdio_client

from gateway.handoff import FD, Handoff
from gateway.servers.runtimes.base import BackendUnavailable, RuntimeContext, ServerSpec
from gateway.servers.runtimes.remote import streamable_http
from gateway.servers.runtimes.stdio import check_server_env, server_log


def hardened_flags(spec: ServerSpec, name: str) -> list[str]:
    config = spec.config
    flags = [
        "--rm",
        "--name",
        name,
        "--label",
        "mcpgw.server=" + spec.name,
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--pids-limit",
        str(config.get("pids_limit", 256)),
        "--memory",
        str(config.get("memory", "512m")),
        "--cpus",
        str(config.get("cpus", 1.0)),
        "--network",
        config.get("network", "none"),
    ]
    if config.get("read_only", True):
        flags += ["--read-only", "--tmpfs", "/tmp:rw,noexec,nosuid,size=64m"]  # noqa: S108
    return [*flags, "--env-file", f"/dev/fd/{FD}"]


def env_file(spec: ServerSpec) -> bytes:
    """The container's variables in ``docker --env-file`` form (one ``NAME=value`` a line).

    That format has no quoting, so a value with a line break cannot be passed.
    """
    lines = []
    for name, value in {**spec.env, **spec.secret_env}.items():
        if "\n" in value or "\r" in value:
            raise BackendUnavailable(
                f"not started: the value of {name} has a line break, which docker env "
                "files cannot carry"
            )
        lines.append(f"{name}={value}\n")
    return "".join(lines).encode()


def cli_env() -> dict[str, str]:
    """The ``docker`` CLI's own environment: fixed, whatever the server's env says."""
    keep = ("PATH", "HOME", "USER", "LANG", "XDG_RUNTIME_DIR")
    return {
        name: value
        for name, value in os.environ.items()
        if name in keep or name.startswith("DOCKER_")
    }


def _docker() -> str:
    docker = shutil.which("docker")
    if docker is None:
        raise BackendUnavailable("the docker CLI is not installed on the gateway host")
    return docker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _run(*argv: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=cli_env(),
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode(errors="replace").strip()


@asynccontextmanager
async def http_container(spec: ServerSpec, ctx: RuntimeContext) -> AsyncIterator[Any]:
    """Start the container detached with its port on loopback, yield Streamable HTTP streams."""
    docker = _docker()
    config = spec.config
    if not config.get("port"):
        raise BackendUnavailable("docker http mode needs config.port (the container's port)")
    name = f"mcpgw-{spec.name}-{secrets.token_hex(3)}"
    host_port = _free_port()
    flags = hardened_flags(spec, name)
    # Publishing a port needs a network; loopback-only keeps it off other interfaces.
    network_index = flags.index("--network") + 1
    if flags[network_index] == "none":
        flags[network_index] = "bridge"
    argv = [
        docker,
        "run",
        "-d",
        *flags,
        "-p",
        f"127.0.0.1:{host_port}:{config['port']}",
        config["image"],
        *config.get("args", []),
    ]
    with Handoff(env_file(spec)) as handoff:  # read by the CLI before it returns
        code, out = await _run(*handoff.wrap(argv))
    if code != 0:
        raise BackendUnavailable(f"docker run failed: {out[-300:]}")
    try:
        url = f"http://127.0.0.1:{host_port}{config.get('path', '/mcp')}"
        deadline = asyncio.get_running_loop().time() + ctx.connect_timeout
        while True:  # wait for the server inside to answer HTTP
            # (docker-proxy accepts on the host port before the container listens)
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", host_port)
                writer.write(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                await writer.drain()
                answered = (await asyncio.wait_for(reader.read(5), 2)).startswith(b"HTTP/")
                writer.close()
                if answered:
                    break
                raise OSError("no HTTP answer yet")
            except (OSError, TimeoutError):
                if asyncio.get_running_loop().time() > deadline:
                    raise BackendUnavailable("container did not open its port in time") from None
                await asyncio.sleep(0.1)
        async with streamable_http(url, {}) as streams:
            yield streams
    finally:
        await _run(docker, "rm", "-f", name)


@asynccontextmanager
async def stdio_container(spec: ServerSpec, ctx: RuntimeContext) -> AsyncIterator[Any]:
    """``docker run -i`` as a stdio transport; the env file stays open while it runs."""
    name = f"mcpgw-{spec.name}-{secrets.token_hex(3)}"
    argv = [_docker(), "run", "-i", *hardened_flags(spec, name), spec.config["image"]]
    with Handoff(env_file(spec)) as handoff, server_log(ctx, spec.name) as errlog:
        launcher = handoff.wrap([*argv, *spec.config.get("args", [])])
        # env: the SDK adds the gateway's PATH, HOME, USER, … to the CLI's fixed set.
        params = StdioServerParameters(command=launcher[0], args=launcher[1:], env=cli_env())
        async with stdio_client(params, errlog=errlog) as streams:
            yield streams


class DockerConnector:
    async def targets(self, spec: ServerSpec, ctx: RuntimeContext) -> Sequence[Any]:
        check_server_env(spec)
        env_file(spec)  # refuse values an env file cannot carry before anything starts
        if spec.config.get("mode", "stdio") == "http":
            return [http_container(spec, ctx)]
        _docker()
        return [stdio_container(spec, ctx)]
