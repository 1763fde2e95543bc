"""The ``kubernetes`` provider through the official ``kubernetes`` client — against a FAKE
API server.

No Kubernetes API server can run on this machine (TESTING.md), so these tests start
tests/fakes/kube_api.py on 127.0.0.1: a stand-in for only the API paths the provider
uses (pods, persistentvolumeclaims, networkpolicies, ``/version`` and the pods/exec
websocket with the ``v4.channel.k8s.io`` / ``v5.channel.k8s.io`` channel protocols).
The provider talks to it with the real client exactly as it would to a cluster; what
the fake cannot stand in for is the container: exec runs the command on the host
(``python3 -c`` is the host's Python) in per-pod directories that stand in for the PVC
and the emptyDir. What a real kubelet would enforce (non-root, read-only root, dropped
capabilities, limits) is checked on the manifests instead.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandboxes.providers.base import ExecRequest, FileProblem, ProviderError, ProviderUnavailable
from sandboxes.providers.kube_common import (
    DENY_ALL_POLICY,
    EGRESS_POLICY,
    NETWORK_LABEL,
    KubeOptions,
    network_policies,
    pod_manifest,
    pvc_manifest,
)
from sandboxes.providers.kubernetes import KubernetesProvider
from tests.fakes.kube_api import FakeCluster
from tests.integration.sandboxes.conftest import Sandboxes
from tests.integration.sandboxes.kube_checks import (
    LIMITS,
    NAMESPACE,
    alive,
    assert_hardened,
    eventually,
    make_spec,
)

POD = "mcpgw-sbx-k1"


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeCluster]:
    cluster = FakeCluster(tmp_path / "cluster")
    cluster.start()
    yield cluster
    cluster.stop()


def provider_for(fake: FakeCluster, **options: Any) -> KubernetesProvider:
    opts = KubeOptions(namespace=NAMESPACE, ready_timeout=20, api_timeout=10, **options)
    return KubernetesProvider(opts, configuration=fake.configuration())


@pytest.fixture
def provider(fake: FakeCluster) -> KubernetesProvider:
    return provider_for(fake)


def test_pod_pvc_and_policies_are_hardened() -> None:
    options = KubeOptions(namespace=NAMESPACE, storage_class="fast", runtime_class="gvisor")
    spec = make_spec("k1")
    pod = pod_manifest(spec, "img:1", {"A": "b"}, options)
    assert pod["metadata"]["name"] == POD and pod["metadata"]["namespace"] == NAMESPACE
    assert pod["metadata"]["labels"][NETWORK_LABEL] == "none"
    assert_hardened(pod["spec"])
    assert pod["spec"]["runtimeClassName"] == "gvisor"
    workspace = next(v for v in pod["spec"]["volumes"] if v["name"] == "workspace")
    assert workspace == {"name": "workspace", "persistentVolumeClaim": {"claimName": POD}}
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["A"] == "b" and env["HOME"] == "/workspace"
    pvc = pvc_manifest(spec, options)
    assert pvc["spec"]["resources"]["requests"]["storage"] == f"{LIMITS.disk_mb}Mi"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["storageClassName"] == "fast"
    deny, egress = network_policies(NAMESPACE)
    assert deny["metadata"]["name"] == DENY_ALL_POLICY
    assert deny["spec"]["podSelector"] == {"matchLabels": {NETWORK_LABEL: "none"}}
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert deny["spec"]["ingress"] == [] and deny["spec"]["egress"] == []  # nothing allowed
    assert egress["metadata"]["name"] == EGRESS_POLICY
    assert egress["spec"]["podSelector"] == {"matchLabels": {NETWORK_LABEL: "egress"}}
    public = egress["spec"]["egress"][0]["to"][0]["ipBlock"]
    assert public["cidr"] == "0.0.0.0/0" and "169.254.0.0/16" in public["except"]
    assert "10.0.0.0/8" in public["except"]
    assert (
        pod_manifest(make_spec("k1", "egress"), "i", {}, options)["metadata"]["labels"][
            NETWORK_LABEL
        ]
        == "egress"
    )


async def test_lifecycle_exec_files_stop_resume_destroy(
    fake: FakeCluster, provider: KubernetesProvider
) -> None:
    await provider.check()
    assert ("GET", "/version") in fake.requests
    spec = make_spec("k1")
    spec.state = await provider.create(spec)
    assert spec.state["pod"] == POD and spec.state["pvc"] == POD
    # what reached the API server is the hardened manifest
    pod = fake.get("pods", NAMESPACE, POD)
    assert pod is not None and pod["status"]["phase"] == "Running"
    assert_hardened(pod["spec"])
    assert pod["spec"]["containers"][0]["image"] == "mcpgw-sandbox-python:latest"
    pvc = fake.get("persistentvolumeclaims", NAMESPACE, POD)
    assert pvc is not None and pvc["spec"]["resources"]["requests"]["storage"] == "2048Mi"
    policies = {p["metadata"]["name"] for p in fake.objects("networking.k8s.io/networkpolicies")}
    assert policies == {DENY_ALL_POLICY, EGRESS_POLICY}

    # exec: exit code, both streams, env (from the template and the request), stdin, cwd
    await provider.write_file(spec, "sub/keep", b"")
    code = (
        "import os, sys; print(os.environ['GREETING'], os.environ['TEMPLATE_VAR'], "
        "os.path.basename(os.getcwd()), sys.stdin.read()); print('oops', file=sys.stderr); "
        "sys.exit(3)"
    )
    result = await provider.exec(
        spec,
        ExecRequest(
            ["python3", "-c", code],
            cwd="/workspace/sub",
            env={"GREETING": "it's $HOME `x`"},
            stdin=b"from stdin",
        ),
    )
    assert result.stdout == b"it's $HOME `x` t sub from stdin\n", result
    assert result.stderr == b"oops\n" and result.exit_code == 3
    assert not result.timed_out and not result.truncated and result.error is None
    ok = await provider.exec(spec, ExecRequest(["sh", "-c", "echo fine"]))
    assert (ok.stdout, ok.exit_code) == (b"fine\n", 0)
    # the secret-bearing env never travels in the exec URL (apiserver audit logs keep it)
    assert not any("it's $HOME" in arg for argv in fake.execs for arg in argv)

    # files go through exec as well: binary, large (several websocket frames), listing
    blob = os.urandom(3 * 1024 * 1024 + 17)
    await provider.write_file(spec, "data/blob.bin", blob)
    assert await provider.read_file(spec, "data/blob.bin", 10 * 1024 * 1024) == blob
    await provider.write_file(spec, "data/a.txt", b"a\0b\n")
    entries = await provider.list_files(spec, "data")
    assert entries is not None
    assert [(e.name, e.path, e.type, e.size) for e in entries] == [
        ("a.txt", "data/a.txt", "file", 4),
        ("blob.bin", "data/blob.bin", "file", len(blob)),
    ]
    assert await provider.list_files(spec, "data/a.txt") is None
    root = await provider.list_files(spec, "")
    assert root is not None and {e.name for e in root} >= {"data", "sub"}
    with pytest.raises(FileProblem) as missing:
        await provider.read_file(spec, "nope.txt", 100)
    assert missing.value.code == "sandbox_file_not_found"
    with pytest.raises(FileProblem) as large:
        await provider.read_file(spec, "data/blob.bin", 1000)
    assert large.value.code == "sandbox_file_too_large"
    with pytest.raises(FileProblem) as isdir:
        await provider.read_file(spec, "data", 1000)
    assert isdir.value.code == "sandbox_path_invalid"
    await provider.delete_file(spec, "data/blob.bin")
    with pytest.raises(FileProblem):
        await provider.delete_file(spec, "data/blob.bin")
    usage = await provider.usage(spec)
    assert usage.disk_bytes is not None and usage.disk_bytes >= 4

    # stop: the pod goes, the PVC (and the files) stay
    await provider.write_file(spec, "notes.txt", b"kept across stop")
    await provider.stop(spec)
    assert fake.get("pods", NAMESPACE, POD) is None
    assert fake.get("persistentvolumeclaims", NAMESPACE, POD) is not None
    with pytest.raises(ProviderError) as stopped:
        await provider.read_file(spec, "notes.txt", 100)
    assert stopped.value.code == "sandbox_stopped"
    assert (await provider.usage(spec)).disk_bytes is None
    await provider.stop(spec)  # again: nothing to do

    await provider.resume(spec)
    assert fake.get("pods", NAMESPACE, POD) is not None
    assert await provider.read_file(spec, "notes.txt", 100) == b"kept across stop"
    again = await provider.exec(
        spec, ExecRequest(["python3", "-c", "print(open('notes.txt').read())"])
    )
    assert again.stdout == b"kept across stop\n"

    # destroy removes the pod and the PVC; a second destroy is fine
    await provider.destroy(spec)
    await eventually(lambda: fake.get("pods", NAMESPACE, POD) is None, what="the pod to go")
    await eventually(
        lambda: fake.get("persistentvolumeclaims", NAMESPACE, POD) is None, what="the PVC to go"
    )
    assert not fake.pvc_dir(NAMESPACE, POD).exists()
    await provider.destroy(spec)


async def test_timeout_kills_every_process(fake: FakeCluster, provider: KubernetesProvider) -> None:
    spec = make_spec("k1")
    spec.state = await provider.create(spec)
    started = time.monotonic()
    result = await provider.exec(
        spec,
        ExecRequest(
            [
                "sh",
                "-c",
                "echo $$ > /workspace/pids; sleep 300 & echo $! >> /workspace/pids; echo up; wait",
            ],
            timeout=1.5,
        ),
    )
    assert result.timed_out and result.exit_code is None
    assert result.stdout == b"up\n"
    assert "timed out" in (result.error or "")
    assert time.monotonic() - started < 10
    pids = [int(x) for x in (await provider.read_file(spec, "pids", 100)).split()]
    assert len(pids) == 2
    await eventually(lambda: not any(alive(pid) for pid in pids), what="the processes to die")
    # the sandbox still works afterwards
    after = await provider.exec(spec, ExecRequest(["sh", "-c", "echo still here"], timeout=20))
    assert (after.stdout, after.exit_code) == (b"still here\n", 0), after


async def test_watchdog_kills_when_the_gateway_cannot(
    fake: FakeCluster, provider: KubernetesProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wrapper's own watchdog kills the group (gateway gone, pod at its process limit)."""
    spec = make_spec("k1")
    spec.state = await provider.create(spec)

    async def cannot_kill(pod: str, marker: str) -> None:
        return None

    monkeypatch.setattr(provider, "_kill", cannot_kill)
    started = time.monotonic()
    result = await provider.exec(
        spec, ExecRequest(["sh", "-c", "echo $$ > /workspace/pid; exec sleep 300"], timeout=1)
    )
    assert result.timed_out and time.monotonic() - started < 9
    pid = int(await provider.read_file(spec, "pid", 100))
    await eventually(lambda: not alive(pid), what="the watchdog's kill")


async def test_output_is_capped_per_stream(fake: FakeCluster, provider: KubernetesProvider) -> None:
    spec = make_spec("k1")
    spec.state = await provider.create(spec)
    code = "import sys; sys.stdout.write('o' * 200000); sys.stderr.write('e' * 50)"
    result = await provider.exec(spec, ExecRequest(["python3", "-c", code], max_output=1000))
    assert result.truncated and result.exit_code == 0
    assert result.stdout == b"o" * 1000 and result.stderr == b"e" * 50
    seen: list[tuple[str, bytes]] = []

    async def sink(stream: str, chunk: bytes) -> None:
        seen.append((stream, chunk))

    await provider.exec(spec, ExecRequest(["sh", "-c", "echo a; echo b >&2"]), sink)
    assert b"".join(c for s, c in seen if s == "stdout") == b"a\n"
    assert b"".join(c for s, c in seen if s == "stderr") == b"b\n"


async def test_oom_kill_is_reported(fake: FakeCluster, provider: KubernetesProvider) -> None:
    spec = make_spec("k1")
    spec.state = await provider.create(spec)
    run = asyncio.ensure_future(provider.exec(spec, ExecRequest(["sh", "-c", "sleep 30"])))
    await asyncio.sleep(0.5)
    fake.oom_kill(NAMESPACE, POD)  # what the kubelet reports after the memory cgroup kills
    result = await asyncio.wait_for(run, 10)
    assert result.oom_killed and result.exit_code == 137
    assert "memory" in (result.error or "") and "300 MiB" in (result.error or "")


async def test_concurrent_execs_and_requests(
    fake: FakeCluster, provider: KubernetesProvider
) -> None:
    """Streams and plain requests at once (``kubernetes.stream`` patches the client it uses,
    so a shared client would turn the plain requests into websocket calls)."""
    spec = make_spec("k1")
    spec.state = await provider.create(spec)
    await provider.write_file(spec, "f.txt", b"shared")
    execs = [
        provider.exec(spec, ExecRequest(["sh", "-c", f"sleep 0.2; echo {i}"], stdin=b"x"))
        for i in range(6)
    ]
    reads = [provider.read_file(spec, "f.txt", 100) for _ in range(4)]
    others = [provider.usage(spec), provider.resume(spec), provider.resume(spec)]
    ran, read, (usage, _, _) = await asyncio.gather(
        asyncio.gather(*execs), asyncio.gather(*reads), asyncio.gather(*others)
    )
    assert [r.stdout for r in ran] == [f"{i}\n".encode() for i in range(6)]
    assert read == [b"shared"] * 4 and usage is not None and usage.disk_bytes is not None


async def test_v5_protocol_and_stdin_close(tmp_path: Path) -> None:
    cluster = FakeCluster(tmp_path / "v5", protocols=("v5.channel.k8s.io", "v4.channel.k8s.io"))
    cluster.start()
    try:
        provider = provider_for(cluster)
        spec = make_spec("k1")
        spec.state = await provider.create(spec)
        result = await provider.exec(spec, ExecRequest(["cat"], stdin=b"x" * 300000))
        assert result.stdout == b"x" * 300000 and result.exit_code == 0
    finally:
        cluster.stop()


async def test_exec_remakes_a_lost_pod(fake: FakeCluster, provider: KubernetesProvider) -> None:
    spec = make_spec("k1")
    spec.state = await provider.create(spec)
    await provider.write_file(spec, "f", b"still")
    fake.remove("pods", NAMESPACE, POD)  # evicted / node drained behind the gateway's back
    await eventually(lambda: fake.get("pods", NAMESPACE, POD) is None, what="the eviction")
    result = await provider.exec(spec, ExecRequest(["cat", "f"]))
    assert result.stdout == b"still"


async def test_failed_create_cleans_up(fake: FakeCluster, provider: KubernetesProvider) -> None:
    fake.missing_images.add("nope:1")
    spec = make_spec("k1", image="nope:1")
    with pytest.raises(ProviderError) as failed:
        await provider.create(spec)
    assert "ErrImagePull" in failed.value.message
    await eventually(lambda: fake.get("pods", NAMESPACE, POD) is None, what="the pod to go")
    await eventually(
        lambda: fake.get("persistentvolumeclaims", NAMESPACE, POD) is None, what="the PVC"
    )


async def test_check_says_what_to_configure(tmp_path: Path) -> None:
    nowhere = KubernetesProvider(KubeOptions(kubeconfig=str(tmp_path / "missing-kubeconfig")))
    with pytest.raises(ProviderUnavailable) as unconfigured:
        await nowhere.check()
    assert "MCPGW_SANDBOX_KUBE_KUBECONFIG" in unconfigured.value.message
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = "http://127.0.0.1:9"  # nothing listens there
    unreachable = KubernetesProvider(KubeOptions(api_timeout=2), configuration=cfg)
    with pytest.raises(ProviderUnavailable) as down:
        await unreachable.check()
    assert "cannot reach the Kubernetes API at http://127.0.0.1:9" in down.value.message
    described = unreachable.describe()
    assert described["provider"] == "kubernetes" and "capabilities drop ALL" in " ".join(
        described["isolation"]
    )


async def test_rest_api_on_kubernetes(fake: FakeCluster, sbx_factory: Callable[..., Any]) -> None:
    """POST /api/v1/sandboxes with provider kubernetes, then exec and files, via the gateway."""
    h: Sandboxes = await sbx_factory(sandbox_memory_mb=256)
    h.service.providers["kubernetes"] = provider_for(fake)
    sb = await h.create(template="python", provider="kubernetes")
    assert sb["provider"] == "kubernetes" and sb["status"] == "running"
    pod = f"mcpgw-sbx-{sb['id']}"
    created = fake.get("pods", NAMESPACE, pod)
    assert created is not None
    assert created["spec"]["containers"][0]["resources"]["limits"]["memory"] == "256Mi"
    r = await h.py(sb["id"], "import sys; print(sum(range(10))); sys.exit(4)")
    assert (r["stdout"], r["exit_code"], r["timed_out"]) == ("45\n", 4, False)
    assert (await h.put(sb["id"], "hello.txt", b"hi there")).status_code == 200
    stopped = await h.action(sb["id"], "stop")
    assert stopped.status_code == 200, stopped.text
    assert fake.get("pods", NAMESPACE, pod) is None
    assert (await h.action(sb["id"], "resume")).status_code == 200
    got = await h.get(sb["id"], "hello.txt")
    assert got.status_code == 200 and got.content == b"hi there"
    assert (await h.destroy(sb["id"])).status_code == 204
    await eventually(
        lambda: fake.get("persistentvolumeclaims", NAMESPACE, pod) is None, what="the PVC to go"
    )
