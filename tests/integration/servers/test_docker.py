"""The docker adapter on the real local engine: stdio and HTTP servers, hardened."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.integration.servers.conftest import Gateway, text_of

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
BASE_IMAGE = "mcpgw-sandbox-base:bookworm"
TEST_IMAGE = "mcpgw-test-stdio:latest"


def _docker(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def test_image() -> str:
    if shutil.which("docker") is None or _docker("info", timeout=20).returncode != 0:
        pytest.fail(
            "a Docker engine is needed: apt-get install -y docker.io && (dockerd >/var/log/dockerd.log 2>&1 &)"
        )
    if _docker("image", "inspect", BASE_IMAGE).returncode != 0:
        pytest.fail(
            f"the base image {BASE_IMAGE} is missing: run scripts/docker-base-image.sh (needs debootstrap)"
        )
    built = _docker(
        "build",
        "-q",
        "-f",
        str(FIXTURES / "Dockerfile.stdio-server"),
        "-t",
        TEST_IMAGE,
        str(FIXTURES),
    )
    assert built.returncode == 0, built.stderr
    return TEST_IMAGE


def _containers(server: str) -> list[str]:
    out = _docker("ps", "-q", "--filter", f"label=mcpgw.server={server}").stdout
    return out.split()


async def test_docker_stdio_server_is_hardened(gw: Gateway, test_image: str) -> None:
    r = await gw.register(
        {
            "name": "boxed",
            "type": "docker",
            "config": {"image": test_image},
            "env": {"GREETING": "hi"},
        }
    )
    assert r.status_code == 201, r.text
    assert r.json()["health"]["status"] == "healthy", r.json()["health"]
    assert sorted(await gw.tools("boxed")) == ["add", "echo", "grow", "whoami"]
    assert text_of(await gw.execute("boxed__add", {"a": 2, "b": 3})) == "5"
    facts = json.loads(text_of(await gw.execute("boxed__whoami")))
    assert facts == {"uid": 65534, "gid": 65534, "greeting": "hi", "root_writable": False}
    (container,) = _containers("boxed")
    inspect = json.loads(_docker("inspect", container).stdout)[0]["HostConfig"]
    assert inspect["CapDrop"] == ["ALL"]
    assert inspect["ReadonlyRootfs"] is True
    assert inspect["NetworkMode"] == "none"
    assert "no-new-privileges" in inspect["SecurityOpt"]
    assert inspect["PidsLimit"] == 256 and inspect["Memory"] == 512 * 1024 * 1024
    # removing the server removes its container
    assert (await gw.client.delete("/api/v1/servers/boxed", headers=gw.auth())).status_code == 204
    assert _containers("boxed") == []


async def test_docker_http_server(gw: Gateway, test_image: str) -> None:
    r = await gw.register(
        {
            "name": "boxed-http",
            "type": "docker",
            "config": {
                "image": test_image,
                "mode": "http",
                "port": 8080,
                "args": ["--http", "8080"],
            },
        }
    )
    assert r.status_code == 201, r.text
    assert r.json()["health"]["status"] == "healthy", r.json()["health"]
    assert text_of(await gw.execute("boxed-http__echo", {"message": "over http"})) == "over http"
    (container,) = _containers("boxed-http")
    ports = json.loads(_docker("inspect", container).stdout)[0]["HostConfig"]["PortBindings"]
    assert all(b["HostIp"] == "127.0.0.1" for b in ports["8080/tcp"])  # loopback only
    await gw.client.delete("/api/v1/servers/boxed-http", headers=gw.auth())
    assert _containers("boxed-http") == []


async def test_missing_image_is_a_clear_health_error(gw: Gateway) -> None:
    r = await gw.register(
        {"name": "ghost", "type": "docker", "config": {"image": "mcpgw-no-such-image:1"}}
    )
    assert r.status_code == 201
    health = r.json()["health"]
    assert health["status"] == "unhealthy"
    result = await gw.execute("ghost__x")
    assert result["isError"] is True and "ghost" in text_of(result)


def _host_holders(value: str) -> list[tuple[int, str]]:
    """Processes in the gateway's own PID namespace whose argv or environ holds ``value``
    (a container's processes live in a namespace of their own)."""
    ours = os.readlink("/proc/self/ns/pid")
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        for part in ("cmdline", "environ"):
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") != ours:
                    continue
                data = Path(f"/proc/{entry}/{part}").read_bytes()
            except OSError:
                continue
            if value.encode() in data:
                found.append((int(entry), part))
    return found


async def test_docker_env_reaches_the_container_only(gw: Gateway, test_image: str) -> None:
    """The docker CLI reads the env from an fd: no value on its argv or in its environ,
    and a server's DOCKER_HOST or loader variable cannot configure the CLI itself."""
    greeting = f"hello-{uuid.uuid4().hex}"
    secret = f"secret-{uuid.uuid4().hex}"
    r = await gw.register(
        {
            "name": "envbox",
            "type": "docker",
            "config": {"image": test_image},
            "env": {"GREETING": greeting, "DOCKER_HOST": "tcp://127.0.0.1:9"},
            "secrets": {"TOKEN": secret},
        }
    )
    assert r.status_code == 201, r.text
    assert r.json()["health"]["status"] == "healthy", r.json()["health"]  # local engine used
    facts = json.loads(text_of(await gw.execute("envbox__whoami")))
    assert facts["greeting"] == greeting
    for value in (greeting, secret):
        assert _host_holders(value) == [], value


async def test_docker_env_value_with_a_line_break_is_a_clear_error(
    gw: Gateway, test_image: str
) -> None:
    r = await gw.register(
        {
            "name": "multiline",
            "type": "docker",
            "config": {"image": test_image},
            "secrets": {"PEM": "-----BEGIN-----\nabc\n-----END-----"},
        }
    )
    assert r.status_code == 201, r.text
    health = r.json()["health"]
    assert health["status"] == "unhealthy" and "PEM" in health["last_error"]
    assert "abc" not in r.text
