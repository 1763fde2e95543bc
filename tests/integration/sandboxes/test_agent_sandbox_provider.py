"""The ``agent-sandbox`` provider through the official ``kubernetes`` client — against a FAKE
API server and a FAKE agent-sandbox controller.

No Kubernetes API server can run on this machine (TESTING.md), so neither can the
kubernetes-sigs/agent-sandbox controller. These tests start tests/fakes/kube_api.py on
127.0.0.1 (only the API paths the providers use: pods, PVCs, ``/version``, pods/exec over
the channel websocket, and the custom objects below) with tests/fakes/agent_sandbox.py
reconciling SandboxTemplate, SandboxWarmPool and SandboxClaim
(``extensions.agents.x-k8s.io/v1beta1``) and Sandbox (``agents.x-k8s.io/v1beta1``) the way
the controller's v1beta1 reconcilers do: warm-pool adoption, the mirrored ``Ready``
condition, suspension through the Sandbox's ``spec.operatingMode``. Exec runs on the host
(``python3 -c`` is the host's Python) in directories standing in for the volumes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandboxes.providers.agent_sandbox import (
    AgentSandboxOptions,
    AgentSandboxProvider,
)
from sandboxes.providers.base import ExecRequest, ProviderError, ProviderUnavailable
from sandboxes.providers.kube_common import NETWORK_LABEL, KubeOptions
from tests.fakes import agent_sandbox as controller
from tests.fakes.kube_api import FakeCluster
from tests.integration.sandboxes.kube_checks import (
    LIMITS,
    NAMESPACE,
    assert_hardened,
    eventually,
    make_spec,
)

CLAIM = "mcpgw-sbx-a1"


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeCluster]:
    cluster = FakeCluster(tmp_path / "cluster")
    controller.install(cluster)
    cluster.start()
    yield cluster
    cluster.stop()


def provider_for(fake: FakeCluster, **pools: Any) -> AgentSandboxProvider:
    options = KubeOptions(namespace=NAMESPACE, ready_timeout=20, api_timeout=10)
    return AgentSandboxProvider(
        options, AgentSandboxOptions(**pools), configuration=fake.configuration()
    )


def sandbox_obj(fake: FakeCluster, name: str) -> dict[str, Any] | None:
    return fake.get(controller.SANDBOXES, NAMESPACE, name)


def test_template_and_pool_manifests() -> None:
    provider = AgentSandboxProvider(
        KubeOptions(namespace=NAMESPACE), AgentSandboxOptions(pool_size=3)
    )
    spec = make_spec("a1")
    assert provider.pool_name(spec) == "mcpgw-python"
    template = provider.template_manifest(spec, "mcpgw-python")
    assert template["apiVersion"] == "extensions.agents.x-k8s.io/v1beta1"
    assert template["kind"] == "SandboxTemplate"
    pod = template["spec"]["podTemplate"]
    assert pod["metadata"]["labels"][NETWORK_LABEL] == "none"
    assert_hardened(pod["spec"])
    # /workspace comes from the volume claim template, which the controller turns into a PVC
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["tmp"]
    (claim_template,) = template["spec"]["volumeClaimTemplates"]
    assert claim_template["metadata"]["name"] == "workspace"
    assert claim_template["spec"]["resources"]["requests"]["storage"] == f"{LIMITS.disk_mb}Mi"
    # rules given (none at all): the controller's shared policy then denies every flow
    assert template["spec"]["networkPolicyManagement"] == "Managed"
    assert template["spec"]["networkPolicy"] == {}
    assert template["spec"]["envVarsInjectionPolicy"] == "Disallowed"
    egress_spec = make_spec("a2", network="egress")
    assert provider.pool_name(egress_spec) == "mcpgw-python-egress"
    egress = provider.template_manifest(egress_spec, "mcpgw-python-egress")["spec"]["networkPolicy"]
    public = egress["egress"][0]["to"][0]["ipBlock"]
    assert public["cidr"] == "0.0.0.0/0" and "169.254.0.0/16" in public["except"]
    assert "ingress" not in egress  # nothing may connect in
    pool = provider.pool_manifest("mcpgw-python")
    assert pool["kind"] == "SandboxWarmPool"
    assert pool["spec"] == {"replicas": 3, "sandboxTemplateRef": {"name": "mcpgw-python"}}


async def test_lifecycle_with_managed_pool_suspend_resume_destroy(fake: FakeCluster) -> None:
    provider = provider_for(fake)
    await provider.check()
    spec = make_spec("a1")
    spec.state = await provider.create(spec)
    # the provider made the template and the pool, then a claim against the pool
    assert fake.get(controller.TEMPLATES, NAMESPACE, "mcpgw-python") is not None
    assert fake.get(controller.POOLS, NAMESPACE, "mcpgw-python") is not None
    claim = fake.get(controller.CLAIMS, NAMESPACE, CLAIM)
    assert claim is not None and claim["spec"] == {"warmPoolRef": {"name": "mcpgw-python"}}
    assert {"type": "Ready", "status": "True"}.items() <= claim["status"]["conditions"][0].items()
    name = spec.state["sandbox"]
    assert claim["status"]["sandbox"]["name"] == name
    pod = fake.get("pods", NAMESPACE, name)
    assert pod is not None
    assert_hardened(pod["spec"])

    result = await provider.exec(
        spec,
        ExecRequest(
            ["python3", "-c", "import os; print(os.environ['X'], os.environ['TEMPLATE_VAR'])"],
            env={"X": "from the request"},
        ),
    )
    assert (result.stdout, result.exit_code) == (b"from the request t\n", 0)
    await provider.write_file(spec, "work/notes.md", b"# survives suspension\n")
    entries = await provider.list_files(spec, "work")
    assert entries is not None and [e.name for e in entries] == ["notes.md"]

    # suspend = the Sandbox's spec.operatingMode; the pod goes, the workspace PVC stays
    await provider.stop(spec)
    suspended = sandbox_obj(fake, name)
    assert suspended is not None and suspended["spec"]["operatingMode"] == "Suspended"
    assert fake.get("pods", NAMESPACE, name) is None
    assert fake.get("persistentvolumeclaims", NAMESPACE, f"workspace-{name}") is not None
    with pytest.raises(ProviderError) as stopped:
        await provider.exec(spec, ExecRequest(["true"]))
    assert stopped.value.code == "sandbox_stopped"

    await provider.resume(spec)
    resumed = sandbox_obj(fake, name)
    assert resumed is not None and resumed["spec"]["operatingMode"] == "Running"
    assert await provider.read_file(spec, "work/notes.md", 100) == b"# survives suspension\n"
    again = await provider.exec(spec, ExecRequest(["cat", "work/notes.md"]))
    assert again.stdout == b"# survives suspension\n"
    usage = await provider.usage(spec)
    assert usage.disk_bytes is not None and usage.disk_bytes > 0

    # a second round: the Suspended condition of the first one must not fool the wait
    await provider.stop(spec)
    assert fake.get("pods", NAMESPACE, name) is None
    await provider.resume(spec)
    assert (await provider.exec(spec, ExecRequest(["cat", "work/notes.md"]))).exit_code == 0

    await provider.destroy(spec)
    assert fake.get(controller.CLAIMS, NAMESPACE, CLAIM) is None
    await eventually(lambda: sandbox_obj(fake, name) is None, what="the Sandbox to go")
    await eventually(lambda: fake.get("pods", NAMESPACE, name) is None, what="the pod to go")
    await eventually(
        lambda: fake.get("persistentvolumeclaims", NAMESPACE, f"workspace-{name}") is None,
        what="the workspace PVC to go",
    )
    await provider.destroy(spec)  # idempotent


async def test_claim_binds_a_prewarmed_sandbox(fake: FakeCluster) -> None:
    """An admin-provided pool (manage off): the claim adopts a sandbox warmed beforehand."""
    admin = AgentSandboxProvider(KubeOptions(namespace=NAMESPACE), AgentSandboxOptions(pool_size=2))
    spec = make_spec("a1")
    template = admin.template_manifest(spec, "team-pool")
    fake.add(controller.TEMPLATES, NAMESPACE, template)  # what `kubectl apply` would do
    fake.add(controller.POOLS, NAMESPACE, admin.pool_manifest("team-pool"))

    def warm_ready() -> list[str]:
        pool = fake.get(controller.POOLS, NAMESPACE, "team-pool") or {}
        if (pool.get("status") or {}).get("readyReplicas") != 2:
            return []
        return [
            s["metadata"]["name"]
            for s in fake.objects(controller.SANDBOXES, NAMESPACE)
            if s["metadata"]["labels"].get(controller.WARM_LABEL) == "team-pool"
        ]

    warm = await eventually(warm_ready, what="the warm pool to fill")
    provider = provider_for(fake, warm_pool="team-pool", manage=False)
    assert provider.container is None  # an admin's template may name its container as it likes
    spec.state = await provider.create(spec)
    bound = spec.state["sandbox"]
    assert bound in warm and spec.state["warm_pool"] == "team-pool"
    adopted = sandbox_obj(fake, bound)
    assert adopted is not None
    assert adopted["metadata"]["labels"][controller.LAUNCH_LABEL] == "warm"
    assert controller.WARM_LABEL not in adopted["metadata"]["labels"]
    assert adopted["metadata"]["ownerReferences"][0]["kind"] == "SandboxClaim"
    assert adopted["metadata"]["ownerReferences"][0]["name"] == CLAIM
    result = await provider.exec(spec, ExecRequest(["python3", "-c", "print(6 * 7)"]))
    assert result.stdout == b"42\n"
    # the pool warms a replacement; the claim never touched the template
    await eventually(lambda: len(warm_ready()) == 2, what="the pool to refill")
    assert bound not in warm_ready()
    await provider.stop(spec)
    await provider.resume(spec)
    assert (await provider.exec(spec, ExecRequest(["true"]))).exit_code == 0
    await provider.destroy(spec)
    await eventually(lambda: sandbox_obj(fake, bound) is None, what="the Sandbox to go")


async def test_a_lost_pod_is_replaced_by_the_controller(fake: FakeCluster) -> None:
    provider = provider_for(fake)
    spec = make_spec("a1")
    spec.state = await provider.create(spec)
    name = spec.state["sandbox"]
    await provider.write_file(spec, "kept", b"on the PVC")
    fake.remove("pods", NAMESPACE, name)  # evicted: the controller makes a new pod
    assert await provider.read_file(spec, "kept", 100) == b"on the PVC"
    fake.remove("pods", NAMESPACE, name)
    result = await provider.exec(spec, ExecRequest(["cat", "kept"]))
    assert (result.stdout, result.exit_code) == (b"on the PVC", 0)


async def test_timeout_and_truncation(fake: FakeCluster) -> None:
    provider = provider_for(fake)
    spec = make_spec("a1")
    spec.state = await provider.create(spec)
    slow = await provider.exec(spec, ExecRequest(["sleep", "60"], timeout=1))
    assert slow.timed_out and slow.exit_code is None
    loud = await provider.exec(
        spec, ExecRequest(["python3", "-c", "print('x' * 5000)"], max_output=100)
    )
    assert loud.truncated and loud.stdout == b"x" * 100


async def test_missing_pool_and_failed_claims(fake: FakeCluster) -> None:
    unmanaged = provider_for(fake, warm_pool="nobody-made-this", manage=False)
    with pytest.raises(ProviderError) as missing:
        await unmanaged.create(make_spec("a1"))
    assert missing.value.code == "sandbox_warm_pool_missing"
    assert fake.get(controller.CLAIMS, NAMESPACE, CLAIM) is None
    # a pool whose template is gone: the claim's Ready=False TemplateNotFound ends the wait
    admin = AgentSandboxProvider(KubeOptions(namespace=NAMESPACE))
    fake.add(controller.POOLS, NAMESPACE, admin.pool_manifest("orphan-pool"))
    broken = provider_for(fake, warm_pool="orphan-pool", manage=False)
    with pytest.raises(ProviderError) as failed:
        await broken.create(make_spec("a1"))
    assert "TemplateNotFound" in failed.value.message
    assert fake.get(controller.CLAIMS, NAMESPACE, CLAIM) is None  # cleaned up


async def test_check_without_the_crds(tmp_path: Path) -> None:
    bare = FakeCluster(tmp_path / "bare")  # an API server without agent-sandbox installed
    bare.start()
    try:
        provider = AgentSandboxProvider(
            KubeOptions(namespace=NAMESPACE), configuration=bare.configuration()
        )
        with pytest.raises(ProviderUnavailable) as unavailable:
            await provider.check()
        assert "agent-sandbox CRDs (v1beta1) are not installed" in unavailable.value.message
    finally:
        bare.stop()
    described = provider.describe()
    assert described["provider"] == "agent-sandbox" and described["warm_pool"] == "mcpgw-{template}"


async def test_a_pool_with_larger_workspaces_than_the_disk_limit_is_refused(
    fake: FakeCluster,
) -> None:
    """A claim cannot resize the pool's volume claim template, and the PVC is the pod's
    only hard disk limit: a sandbox is never bound to a workspace larger than its limit."""
    from dataclasses import replace

    from sandboxes.providers.kube_common import quantity_bytes

    assert quantity_bytes("2Gi") == 2 * 1024**3 and quantity_bytes("500M") == 500e6
    assert quantity_bytes("1048576") == 1024**2 and quantity_bytes("lots") is None
    provider = provider_for(fake)
    first = make_spec("a1")
    first.state = await provider.create(first)  # makes the pool with LIMITS.disk_mb
    template = fake.get(controller.TEMPLATES, NAMESPACE, "mcpgw-python")
    assert template is not None
    (claim_template,) = template["spec"]["volumeClaimTemplates"]
    assert claim_template["spec"]["resources"]["requests"]["storage"] == f"{LIMITS.disk_mb}Mi"
    smaller = make_spec("a2")
    smaller.limits = replace(LIMITS, disk_mb=LIMITS.disk_mb // 2)
    with pytest.raises(ProviderError) as refused:
        await provider.create(smaller)
    assert refused.value.code == "sandbox_disk_limit_mismatch"
    assert f"{LIMITS.disk_mb}Mi" in refused.value.message
    assert fake.get(controller.CLAIMS, NAMESPACE, "mcpgw-sbx-a2") is None
    same = make_spec("a3")  # the pool's own size is fine
    same.state = await provider.create(same)
    for spec in (first, same):
        await provider.destroy(spec)
