"""``docker`` adapter: an image run on the local engine, over stdio or as an HTTP server.

Hardened by default: read-only root with a tmpfs ``/tmp``, every capability
dropped, ``no-new-privileges``, pids/memory/CPU limits, no network unless the
server's config says ``bridge``. Env values travel in the docker CLI's
environment (``-e NAME``), never on its command line.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from gateway.servers.runtimes.base import BackendUnavailable, RuntimeContext, ServerSpec
from gateway.servers.runtimes.remote import streamable_http
from gateway.servers.runtimes.stdio import stdio_target


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
    for key in (*spec.env, *spec.secret_env):
        flags += ["-e", key]
    return flags


def _docker() -> str:
    docker = shutil.which("docker")
    if docker is None:
        raise BackendUnavailable("the docker CLI is not installed on the gateway host")
    return docker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    import os

    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
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
    code, out = await _run(
        docker,
        "run",
        "-d",
        *flags,
        "-p",
        f"127.0.0.1:{host_port}:{config['port']}",
        config["image"],
        *config.get("args", []),
        env={**spec.env, **spec.secret_env},
    )
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


class DockerConnector:
    async def targets(self, spec: ServerSpec, ctx: RuntimeContext) -> Sequence[Any]:
        if spec.config.get("mode", "stdio") == "http":
            return [http_container(spec, ctx)]
        docker = _docker()
        name = f"mcpgw-{spec.name}-{secrets.token_hex(3)}"
        argv = ["run", "-i", *hardened_flags(spec, name), spec.config["image"]]
        return [stdio_target(ctx, spec, docker, [*argv, *spec.config.get("args", [])])]
