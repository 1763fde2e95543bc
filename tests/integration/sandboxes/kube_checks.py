"""Shared pieces of the Kubernetes provider tests: the fake API server fixture's helpers
and the checks a sandbox pod spec must pass (see tests/fakes/kube_api.py for the fake)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandboxes.providers.base import Limits, SandboxSpec, TemplateSpec
from tests.support import wait_for

NAMESPACE = "sandboxes"
LIMITS = Limits(cpus=0.5, memory_mb=300, pids=64, disk_mb=2048)


def make_spec(
    sandbox_id: str, network: str = "none", image: str = "mcpgw-sandbox-python:latest"
) -> SandboxSpec:
    template = TemplateSpec("python", image, ("python", "bash", "sh"), env={"TEMPLATE_VAR": "t"})
    return SandboxSpec(id=sandbox_id, template=template, limits=LIMITS, network=network)  # type: ignore[arg-type]


async def eventually(
    check: Callable[[], Any], timeout: float = 10.0, what: str = "condition"
) -> Any:
    """Poll ``check()`` until it returns something truthy (tests/support.py)."""
    return await wait_for(check, timeout, what=what)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def assert_hardened(pod_spec: dict[str, Any], limits: Limits = LIMITS) -> None:
    """What the issue asks of a sandbox pod, field by field."""
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["enableServiceLinks"] is False
    assert (
        not pod_spec.get("hostNetwork")
        and not pod_spec.get("hostPID")
        and not pod_spec.get("hostIPC")
    )
    pod_sc = pod_spec["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] == 1000
    assert pod_sc["runAsGroup"] == 1000 and pod_sc["fsGroup"] == 1000
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod_spec["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 1000
    assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    resources = container["resources"]
    assert resources["limits"] == {
        "cpu": f"{int(limits.cpus * 1000)}m",
        "memory": f"{limits.memory_mb}Mi",
        # the node's disk: only logs and the runtime's files (workspace and /tmp are not)
        "ephemeral-storage": "64Mi",
    }
    assert resources["requests"] == resources["limits"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/workspace": "workspace", "/tmp": "tmp"}
    tmp = next(v for v in pod_spec["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"]["medium"] == "Memory"
    assert tmp["emptyDir"]["sizeLimit"] == f"{min(limits.memory_mb, 1024)}Mi"
    assert container["command"] == ["sleep", "infinity"]
    assert container["workingDir"] == "/workspace"
