"""``kubernetes``: one Pod and one PersistentVolumeClaim per sandbox, via the API server.

The Pod runs ``sleep infinity`` as uid/gid 1000 with a read-only root filesystem, no
capabilities, no privilege escalation, the runtime's default seccomp profile, no
service account token and CPU/memory limits from the sandbox's limits; ``/workspace``
is the PVC (sized by ``disk_mb``), ``/tmp`` a memory-backed emptyDir. Every exec goes
through the pods/exec subresource (see kube_exec.py). ``stop`` deletes the Pod and
keeps the PVC; ``resume`` makes the Pod again; ``destroy`` deletes both.

Network: the pod carries ``mcpgw.sandbox/network=none|egress``; two shared
NetworkPolicies in the namespace deny everything to ``none`` pods and allow ``egress``
pods public addresses and the cluster DNS only (see kube_common.network_policies).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from sandboxes.providers.base import ProviderError, SandboxSpec
from sandboxes.providers.kube_common import (
    CONTAINER,
    KubeAPI,
    KubeOptions,
    network_policies,
    pod_manifest,
    pod_problem,
    pod_waiting,
    pvc_manifest,
    resource_name,
)
from sandboxes.providers.kube_exec import KubeExec


class KubernetesProvider(KubeExec):
    name = "kubernetes"
    container = CONTAINER

    def __init__(
        self, options: KubeOptions | None = None, configuration: Any | None = None
    ) -> None:
        """``configuration``: a ``kubernetes.client.Configuration`` to use instead of the
        kubeconfig / in-cluster service account (tests point it at a local fake)."""
        self.options = options or KubeOptions()
        self.api = KubeAPI(self.options, configuration)

    async def check(self) -> None:
        await self.api.version()

    def describe(self) -> dict[str, Any]:
        return {
            "provider": self.name,
            "namespace": self.options.namespace,
            "isolation": [
                "one Pod per sandbox (container `sandbox`, `sleep infinity`)",
                "runAsNonRoot, runAsUser/runAsGroup/fsGroup 1000",
                "allowPrivilegeEscalation false, privileged false, capabilities drop ALL",
                "readOnlyRootFilesystem; /tmp a memory emptyDir",
                "seccompProfile RuntimeDefault",
                "automountServiceAccountToken false, enableServiceLinks false",
                "/workspace a PersistentVolumeClaim (ReadWriteOnce, size = disk limit)",
                "NetworkPolicy by label mcpgw.sandbox/network: none denies all traffic, "
                "egress allows public addresses and the cluster DNS only"
                + ("" if self.options.network_policies else " (disabled here)"),
                *(
                    [f"runtimeClassName {self.options.runtime_class}"]
                    if self.options.runtime_class
                    else []
                ),
            ],
            "limits": "pod resources (requests = limits: cpu, memory); the process limit "
            "is the kubelet's podPidsLimit",
        }

    # --- names ------------------------------------------------------------------------------
    async def _pod_name(self, spec: SandboxSpec) -> str:
        return str(spec.state.get("pod") or resource_name(spec.id))

    def _pvc_name(self, spec: SandboxSpec) -> str:
        return str(spec.state.get("pvc") or resource_name(spec.id))

    # --- lifecycle --------------------------------------------------------------------------
    async def create(self, spec: SandboxSpec) -> dict[str, Any]:
        await self.check()
        image = spec.template.image
        if not image:
            raise ProviderError(f"template {spec.template.name!r} names no image for kubernetes")
        env = dict(spec.template.env)
        name = resource_name(spec.id)
        try:
            if self.options.network_policies:
                await self._ensure_policies()
            await self.api.create(
                "core",
                "create_namespaced_persistent_volume_claim",
                self.options.namespace,
                pvc_manifest(spec, self.options),
            )
            await self._start_pod(spec, image, env)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.destroy(spec))
            raise
        return {
            "pod": name,
            "pvc": name,
            "namespace": self.options.namespace,
            "image": self.options.image(image),
            "template_image": image,
            "env": env,
        }

    async def _ensure_policies(self) -> None:
        for policy in network_policies(self.options.namespace):
            await self.api.create(
                "networking", "create_namespaced_network_policy", self.options.namespace, policy
            )

    async def _start_pod(self, spec: SandboxSpec, image: str, env: dict[str, str]) -> None:
        name = resource_name(spec.id)
        manifest = pod_manifest(spec, image, env, self.options)
        if not await self.api.create(
            "core", "create_namespaced_pod", self.options.namespace, manifest
        ):
            existing = await self._read_pod(name)
            if existing is not None and (existing.get("metadata") or {}).get("deletionTimestamp"):
                await self._wait_gone(name)
                await self.api.create(
                    "core", "create_namespaced_pod", self.options.namespace, manifest
                )
        await self._wait_ready(name)

    async def _read_pod(self, name: str) -> dict[str, Any] | None:
        return await self.api.get("core", "read_namespaced_pod", name, self.options.namespace)

    async def _wait_ready(self, name: str) -> None:
        deadline = time.monotonic() + self.options.ready_timeout
        delay = 0.05
        pod: dict[str, Any] | None = None
        while True:
            pod = await self._read_pod(name)
            if pod is None:
                raise ProviderError(f"the pod {name} disappeared while it was starting")
            ready, problem = pod_problem(pod)
            if ready:
                return
            if problem:
                raise ProviderError(f"the pod {name} cannot start: {problem}")
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"the pod {name} was not ready after {self.options.ready_timeout:g} s "
                    f"({pod_waiting(pod)})"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    async def _wait_gone(self, name: str) -> None:
        deadline = time.monotonic() + self.options.ready_timeout
        delay = 0.05
        while await self._read_pod(name) is not None:
            if time.monotonic() > deadline:
                raise ProviderError(f"the pod {name} was still terminating after the timeout")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    async def stop(self, spec: SandboxSpec) -> None:
        name = await self._pod_name(spec)
        await self.api.delete(
            "core",
            "delete_namespaced_pod",
            name,
            self.options.namespace,
            grace_period_seconds=1,
        )
        await self._wait_gone(name)

    async def resume(self, spec: SandboxSpec) -> None:
        name = await self._pod_name(spec)
        pod = await self._read_pod(name)
        if pod is not None and pod_problem(pod)[0]:
            return
        image = str(spec.state.get("template_image") or spec.template.image or "")
        if not image:
            raise ProviderError(f"sandbox {spec.id} has no image to resume from")
        env = dict(spec.state.get("env") or spec.template.env)
        await self._start_pod(spec, image, env)

    async def _heal(self, spec: SandboxSpec) -> bool:
        """Exec found no pod although the sandbox runs (evicted, node drained): remake it."""
        await self.resume(spec)
        return True

    async def destroy(self, spec: SandboxSpec) -> None:
        await self.api.delete(
            "core",
            "delete_namespaced_pod",
            await self._pod_name(spec),
            self.options.namespace,
            grace_period_seconds=0,
        )
        await self.api.delete(
            "core",
            "delete_namespaced_persistent_volume_claim",
            self._pvc_name(spec),
            self.options.namespace,
        )
