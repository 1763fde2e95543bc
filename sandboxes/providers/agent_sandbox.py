"""``agent-sandbox``: sandboxes from the kubernetes-sigs/agent-sandbox controller's CRDs.

Each gateway sandbox is a ``SandboxClaim`` (``extensions.agents.x-k8s.io/v1beta1``)
against a ``SandboxWarmPool``; the controller binds the claim to a pre-warmed
``Sandbox`` (``agents.x-k8s.io/v1beta1``) of the pool — or, when the pool is empty,
makes one from the pool's ``SandboxTemplate`` — and mirrors the Sandbox's ``Ready``
condition on the claim. The provider waits for ``Ready``, then runs everything through
the pods/exec subresource of the Sandbox's pod (see kube_exec.py).

Suspension is the Sandbox's ``spec.operatingMode`` (``Running``/``Suspended``; the
claim has no such field): ``stop`` sets ``Suspended`` on the bound Sandbox and waits for
its ``Suspended`` condition; the controller deletes the pod and keeps the volumes made
from the template's ``volumeClaimTemplates`` (``/workspace``). ``resume`` sets
``Running`` and waits for ``Ready``. ``destroy`` deletes the claim; the Sandbox, its pod
and its PVC are garbage-collected through their owner references.

With ``manage`` on (the default) the provider creates, when missing, one
SandboxTemplate and one SandboxWarmPool per gateway template and network mode
(``mcpgw-python``, ``mcpgw-python-egress``), with the same hardened pod as the
``kubernetes`` provider; otherwise the pool named by ``warm_pool`` must exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass
from typing import Any

from sandboxes.providers.base import ProviderError, ProviderUnavailable, SandboxSpec
from sandboxes.providers.kube_common import (
    CONTAINER,
    MANAGED_BY,
    NETWORK_LABEL,
    KubeAPI,
    KubeOptions,
    network_policies,
    pod_problem,
    pod_spec_manifest,
    pvc_spec,
    quantity_bytes,
    resource_name,
)
from sandboxes.providers.kube_exec import KubeExec, PodMissing

EXTENSIONS = "extensions.agents.x-k8s.io"
CORE_GROUP = "agents.x-k8s.io"
VERSION = "v1beta1"
POD_NAME_ANNOTATION = "agents.x-k8s.io/pod-name"
# Ready=False reasons the claim controller does not recover from by itself.
TERMINAL_REASONS = {
    "TemplateNotFound",
    "WarmPoolNotFound",
    "InvalidMetadata",
    "EnvVarsInjectionRejected",
    "VolumeClaimTemplatesError",
    "ClaimExpired",
    "SandboxExpired",
}
CONTROLLER_HINT = (
    "the agent-sandbox CRDs (v1beta1) are not installed in the cluster: install the "
    "kubernetes-sigs/agent-sandbox controller with its extensions, v0.5.0 or later "
    "(kubectl apply -f the release's sandbox-with-extensions.yaml; see docs/sandboxes.md)"
)
_NAME = re.compile(r"[^a-z0-9-]+")


@dataclass
class AgentSandboxOptions:
    warm_pool: str = "mcpgw-{template}"  # ``{template}`` is the gateway template's name
    manage: bool = True  # create the SandboxTemplate and SandboxWarmPool when missing
    pool_size: int = 1  # replicas of the warm pools the provider creates


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return {}


def _generation(obj: dict[str, Any]) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


class AgentSandboxProvider(KubeExec):
    name = "agent-sandbox"

    def __init__(
        self,
        options: KubeOptions | None = None,
        pools: AgentSandboxOptions | None = None,
        configuration: Any | None = None,
    ) -> None:
        self.options = options or KubeOptions()
        self.pools = pools or AgentSandboxOptions()
        self.api = KubeAPI(self.options, configuration)
        self.container = CONTAINER if self.pools.manage else None
        self._pods: dict[str, str] = {}  # sandbox id -> pod name (warm pods keep theirs)

    async def check(self) -> None:
        await self.api.version()
        try:
            await self.api.call(
                "custom",
                "list_namespaced_custom_object",
                EXTENSIONS,
                VERSION,
                self.options.namespace,
                "sandboxclaims",
                limit=1,
            )
        except ProviderError as exc:
            if exc.code == "sandbox_kube_not_found":
                raise ProviderUnavailable(CONTROLLER_HINT) from exc
            raise

    def describe(self) -> dict[str, Any]:
        return {
            "provider": self.name,
            "namespace": self.options.namespace,
            "warm_pool": self.pools.warm_pool,
            "isolation": [
                "a SandboxClaim per sandbox, bound to a pre-warmed Sandbox of a SandboxWarmPool",
                "pod spec from the SandboxTemplate"
                + (
                    " the gateway made: uid 1000, no privilege escalation, capabilities drop "
                    "ALL, read-only root, seccomp RuntimeDefault, no service account token"
                    if self.pools.manage
                    else " (admin-provided)"
                ),
                "/workspace from the template's volumeClaimTemplates (kept while suspended)",
                "the template's managed NetworkPolicy: none denies all traffic, egress allows "
                "public addresses and the cluster DNS only",
            ],
            "limits": "the SandboxTemplate's pod resources (set from the gateway's default "
            "limits when the template is made)",
        }

    # --- names ------------------------------------------------------------------------------
    def pool_name(self, spec: SandboxSpec) -> str:
        base = self.pools.warm_pool.format(template=spec.template.name)
        name = _NAME.sub("-", base.lower()).strip("-")
        if spec.network == "egress" and self.pools.manage:
            name = f"{name[:56]}-egress"
        return name[:63].rstrip("-")

    def _claim(self, spec: SandboxSpec) -> str:
        return str(spec.state.get("claim") or resource_name(spec.id))

    async def _sandbox_name(self, spec: SandboxSpec) -> str:
        name = spec.state.get("sandbox")
        if name:
            return str(name)
        claim = await self._get("sandboxclaims", self._claim(spec))
        found = ((claim or {}).get("status") or {}).get("sandbox", {}).get("name")
        if not found:
            raise PodMissing(f"sandbox {spec.id} is not bound to an agent-sandbox Sandbox")
        return str(found)

    async def _pod_name(self, spec: SandboxSpec) -> str:
        cached = self._pods.get(spec.id)
        if cached:
            return cached
        name = await self._sandbox_name(spec)
        sandbox = await self._get("sandboxes", name)
        if sandbox is None:
            raise PodMissing(f"the Sandbox {name} of sandbox {spec.id} is gone")
        if (sandbox.get("spec") or {}).get("operatingMode") == "Suspended":
            raise PodMissing(f"sandbox {spec.id} is suspended: resume it first")
        annotations = (sandbox.get("metadata") or {}).get("annotations") or {}
        pod = str(annotations.get(POD_NAME_ANNOTATION) or name)
        self._pods[spec.id] = pod
        return pod

    async def _heal(self, spec: SandboxSpec) -> bool:
        """The pod is gone or not ready: the controller replaces pods of a Running Sandbox,
        so wait for the Sandbox's current pod to be ready (False if it is suspended)."""
        self._pods.pop(spec.id, None)
        name = await self._sandbox_name(spec)

        async def probe() -> bool | None:
            sandbox = await self._get("sandboxes", name)
            if sandbox is None or (sandbox.get("spec") or {}).get("operatingMode") == "Suspended":
                return False
            annotations = (sandbox.get("metadata") or {}).get("annotations") or {}
            pod = await self.api.get(
                "core",
                "read_namespaced_pod",
                str(annotations.get(POD_NAME_ANNOTATION) or name),
                self.options.namespace,
            )
            return True if pod is not None and pod_problem(pod)[0] else None

        healed: bool = await self._poll(f"the Sandbox {name} got no ready pod", probe)
        return healed

    async def _refresh(self, spec: SandboxSpec) -> bool:
        return await self._heal(spec)

    # --- API helpers ------------------------------------------------------------------------
    @staticmethod
    def _group(plural: str) -> str:
        return CORE_GROUP if plural == "sandboxes" else EXTENSIONS

    async def _get(self, plural: str, name: str) -> dict[str, Any] | None:
        return await self.api.get(
            "custom",
            "get_namespaced_custom_object",
            self._group(plural),
            VERSION,
            self.options.namespace,
            plural,
            name,
        )

    async def _create(self, plural: str, body: dict[str, Any]) -> bool:
        return await self.api.create(
            "custom",
            "create_namespaced_custom_object",
            self._group(plural),
            VERSION,
            self.options.namespace,
            plural,
            body,
        )

    async def _patch(self, plural: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.api.call(
            "custom",
            "patch_namespaced_custom_object",
            self._group(plural),
            VERSION,
            self.options.namespace,
            plural,
            name,
            body,
        )
        return result

    # --- pools ------------------------------------------------------------------------------
    def template_manifest(self, spec: SandboxSpec, name: str) -> dict[str, Any]:
        image = spec.template.image or ""
        pod_labels = {**MANAGED_BY, NETWORK_LABEL: spec.network}
        egress = network_policies(self.options.namespace)[1]["spec"]["egress"]
        return {
            "apiVersion": f"{EXTENSIONS}/{VERSION}",
            "kind": "SandboxTemplate",
            "metadata": {"name": name, "namespace": self.options.namespace, "labels": MANAGED_BY},
            "spec": {
                "podTemplate": {
                    "metadata": {"labels": pod_labels},
                    "spec": pod_spec_manifest(
                        image, dict(spec.template.env), spec.limits, self.options, None
                    ),
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "workspace"},
                        "spec": pvc_spec(spec.limits.disk_mb, self.options),
                    }
                ],
                "networkPolicyManagement": "Managed",
                # rules given = the controller's policy denies whatever they do not allow
                "networkPolicy": {"egress": egress} if spec.network == "egress" else {},
                "envVarsInjectionPolicy": "Disallowed",
                "volumeClaimTemplatesPolicy": "Disallowed",
            },
        }

    def pool_manifest(self, name: str) -> dict[str, Any]:
        return {
            "apiVersion": f"{EXTENSIONS}/{VERSION}",
            "kind": "SandboxWarmPool",
            "metadata": {"name": name, "namespace": self.options.namespace, "labels": MANAGED_BY},
            "spec": {"replicas": self.pools.pool_size, "sandboxTemplateRef": {"name": name}},
        }

    async def _ensure_pool(self, spec: SandboxSpec, pool: str) -> None:
        found = await self._get("sandboxwarmpools", pool)
        if found is not None:
            await self._check_disk(spec, pool, found)
            return
        if not self.pools.manage:
            raise ProviderError(
                f"there is no SandboxWarmPool {pool!r} in namespace {self.options.namespace!r}: "
                "create it (and its SandboxTemplate), or let the gateway manage pools "
                "(MCPGW_SANDBOX_AGENT_SANDBOX_MANAGE=true)",
                code="sandbox_warm_pool_missing",
            )
        if not spec.template.image:
            raise ProviderError(f"template {spec.template.name!r} names no image")
        await self._create("sandboxtemplates", self.template_manifest(spec, pool))
        await self._create("sandboxwarmpools", self.pool_manifest(pool))

    async def _check_disk(self, spec: SandboxSpec, pool: str, found: dict[str, Any]) -> None:
        """Refuse a pool whose workspace is larger than the sandbox's disk limit: a claim
        cannot resize it (``volumeClaimTemplatesPolicy: Disallowed``), and the PVC's size
        is the only hard disk limit a pod has."""
        ref = ((found.get("spec") or {}).get("sandboxTemplateRef") or {}).get("name")
        template = await self._get("sandboxtemplates", str(ref)) if ref else None
        for claim in ((template or {}).get("spec") or {}).get("volumeClaimTemplates") or []:
            if (claim.get("metadata") or {}).get("name") != "workspace":
                continue
            storage = ((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}
            size = quantity_bytes(storage.get("storage", ""))
            if size is not None and size > spec.limits.disk_mb * 1024 * 1024:
                raise ProviderError(
                    f"the SandboxWarmPool {pool!r} gives workspaces of {storage['storage']}, "
                    f"more than this sandbox's disk limit ({spec.limits.disk_mb} MiB): use "
                    "the pool's size, or a pool made for the smaller limit",
                    code="sandbox_disk_limit_mismatch",
                )

    # --- lifecycle --------------------------------------------------------------------------
    async def create(self, spec: SandboxSpec) -> dict[str, Any]:
        await self.check()
        pool = self.pool_name(spec)
        claim = resource_name(spec.id)
        try:
            await self._ensure_pool(spec, pool)
            await self._create(
                "sandboxclaims",
                {
                    "apiVersion": f"{EXTENSIONS}/{VERSION}",
                    "kind": "SandboxClaim",
                    "metadata": {
                        "name": claim,
                        "namespace": self.options.namespace,
                        "labels": {**MANAGED_BY, "agents.x-k8s.io/created-by": "mcpgw"},
                    },
                    "spec": {"warmPoolRef": {"name": pool}},
                },
            )
            sandbox = await self._wait_claim(claim)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.destroy(spec))
            raise
        return {
            "claim": claim,
            "sandbox": sandbox,
            "warm_pool": pool,
            "namespace": self.options.namespace,
        }

    async def _poll(self, what: str, probe: Any) -> Any:
        """Call ``probe()`` until it returns something other than None, or time out."""
        deadline = time.monotonic() + self.options.ready_timeout
        delay = 0.05
        while True:
            result = await probe()
            if result is not None:
                return result
            if time.monotonic() > deadline:
                raise ProviderError(f"{what} after {self.options.ready_timeout:g} s")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    async def _wait_claim(self, claim: str) -> str:
        last: dict[str, Any] = {}

        async def probe() -> str | None:
            obj = await self._get("sandboxclaims", claim)
            if obj is None:
                raise ProviderError(f"the SandboxClaim {claim} was deleted while starting")
            ready = condition(obj, "Ready")
            last.update(ready)
            if ready.get("status") == "False" and ready.get("reason") in TERMINAL_REASONS:
                raise ProviderError(
                    f"the SandboxClaim {claim} failed: {ready.get('reason')}: "
                    f"{ready.get('message') or ''}".rstrip(": ")
                )
            name = ((obj.get("status") or {}).get("sandbox") or {}).get("name")
            return str(name) if name and ready.get("status") == "True" else None

        try:
            result: str = await self._poll(f"the SandboxClaim {claim} was not Ready", probe)
        except ProviderError as exc:
            if last.get("reason") and "not Ready" in exc.message:
                exc.message += f" ({last.get('reason')}: {last.get('message') or ''})"
            raise
        return result

    async def _wait_sandbox(self, name: str, wanted: str, generation: int) -> None:
        """Wait for the Sandbox's ``Ready`` (or ``Suspended``) condition to be True for
        ``generation`` of its spec or a later one (older conditions may be stale)."""

        async def probe() -> bool | None:
            obj = await self._get("sandboxes", name)
            if obj is None:
                raise ProviderError(f"the Sandbox {name} is gone")
            found = condition(obj, wanted)
            seen = int(found.get("observedGeneration") or 0)
            return True if found.get("status") == "True" and seen >= generation else None

        await self._poll(f"the Sandbox {name} was not {wanted}", probe)

    async def stop(self, spec: SandboxSpec) -> None:
        name = await self._sandbox_name(spec)
        self._pods.pop(spec.id, None)
        patched = await self._patch("sandboxes", name, {"spec": {"operatingMode": "Suspended"}})
        await self._wait_sandbox(name, "Suspended", _generation(patched))

    async def resume(self, spec: SandboxSpec) -> None:
        name = await self._sandbox_name(spec)
        self._pods.pop(spec.id, None)
        patched = await self._patch("sandboxes", name, {"spec": {"operatingMode": "Running"}})
        await self._wait_sandbox(name, "Ready", _generation(patched))

    async def destroy(self, spec: SandboxSpec) -> None:
        self._pods.pop(spec.id, None)
        await self.api.delete(
            "custom",
            "delete_namespaced_custom_object",
            EXTENSIONS,
            VERSION,
            self.options.namespace,
            "sandboxclaims",
            self._claim(spec),
            propagation_policy="Foreground",
        )
