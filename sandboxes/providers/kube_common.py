"""What the ``kubernetes`` and ``agent-sandbox`` providers share: the API client, error
mapping and the hardened manifests (Pod, PVC, NetworkPolicy).

The official ``kubernetes`` client is imported lazily (the gateway starts without it
being touched) and blocks, so every call runs on a thread of the sandboxes pillar's own
(:mod:`sandboxes.blocking`, never the default executor). Responses are read
as raw JSON (``_preload_content=False``) rather than the client's generated models:
the code needs a handful of fields and stays independent of model validation.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sandboxes import blocking
from sandboxes.providers.base import (
    WORKSPACE,
    ProviderError,
    ProviderUnavailable,
    SandboxSpec,
)

CONTAINER = "sandbox"
UID = 1000
# The container writes only to /workspace (the PVC, sized by disk_mb) and /tmp (memory):
# its node-disk use is its log and the runtime's few files. The cap makes the kubelet
# evict a pod that fills the node's disk some other way.
EPHEMERAL_STORAGE_MB = 64
MANAGED_BY = {"app.kubernetes.io/managed-by": "mcpgw"}
SANDBOX_LABEL = "mcpgw.sandbox/id"
NETWORK_LABEL = "mcpgw.sandbox/network"
DENY_ALL_POLICY = "mcpgw-sandbox-deny-all"
EGRESS_POLICY = "mcpgw-sandbox-egress"
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": WORKSPACE,
    "USER": "sandbox",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
}
# Private and link-local ranges (cluster pods/services, cloud metadata) that an
# egress-allowed sandbox still may not reach.
PRIVATE_RANGES = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
]
CLUSTER_HINT = (
    "run the gateway in a pod whose service account has the RBAC in docs/sandboxes.md, "
    "or set MCPGW_SANDBOX_KUBE_KUBECONFIG (and MCPGW_SANDBOX_KUBE_CONTEXT) to a kubeconfig"
)
_NAME_CHARS = re.compile(r"[^a-z0-9-]+")
_APIS = {
    "core": "CoreV1Api",
    "custom": "CustomObjectsApi",
    "networking": "NetworkingV1Api",
    "version": "VersionApi",
}


def resource_name(sandbox_id: str) -> str:
    """``mcpgw-sbx-<id>``: a valid DNS-1123 label (pod, PVC and claim names, label values)."""
    clean = _NAME_CHARS.sub("-", sandbox_id.lower()).strip("-")
    return f"mcpgw-sbx-{clean}"[:63].rstrip("-")


def mebibytes(value: int) -> str:
    return f"{int(value)}Mi"


_SUFFIXES = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
}  # fmt: skip


def quantity_bytes(quantity: str) -> float | None:
    """A Kubernetes storage quantity (``2Gi``, ``500M``, ``1048576``) in bytes; None if
    it is not one."""
    text = str(quantity).strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix):
            text, factor = text[: -len(suffix)], _SUFFIXES[suffix]
            break
    else:
        factor = 1
    try:
        return float(text) * factor
    except ValueError:
        return None


def cpu_quantity(cpus: float) -> str:
    return f"{max(1, round(cpus * 1000))}m"


@dataclass
class KubeOptions:
    """The cluster settings both providers read (``MCPGW_SANDBOX_KUBE_*``)."""

    namespace: str = "default"
    kubeconfig: str | None = None
    context: str | None = None
    api_timeout: float = 30.0
    ready_timeout: float = 180.0
    storage_class: str | None = None
    image_registry: str = ""
    image_pull_policy: str = "IfNotPresent"
    runtime_class: str | None = None
    network_policies: bool = True

    def image(self, image: str) -> str:
        registry = self.image_registry.strip().rstrip("/")
        return f"{registry}/{image}" if registry else image


def status_message(body: Any) -> str:
    """The ``message`` of a Kubernetes ``Status`` body, or the body itself."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])
    return text.strip()[:500]


class KubeAPI:
    """A lazily built client for one namespace; ``call`` runs a request in a thread."""

    def __init__(self, options: KubeOptions, configuration: Any | None = None) -> None:
        self.options = options
        self.namespace = options.namespace
        self._configuration = configuration
        self._client: Any | None = None
        self._apis: dict[str, Any] = {}
        self._lock = threading.RLock()

    # --- the client -------------------------------------------------------------------------
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._build()
            return self._client

    def _build(self) -> Any:
        from kubernetes import client, config

        if self._configuration is not None:
            return client.ApiClient(self._configuration)
        cfg = client.Configuration()
        try:
            if (
                not self.options.kubeconfig
                and not self.options.context
                and os.environ.get("KUBERNETES_SERVICE_HOST")
            ):
                config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            else:
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=self.options.kubeconfig,
                    context=self.options.context,
                    client_configuration=cfg,
                    persist_config=False,
                )
        except Exception as exc:  # ConfigException, a missing or unreadable file
            raise ProviderUnavailable(
                f"no Kubernetes cluster is configured: {CLUSTER_HINT} ({exc})"
            ) from exc
        return client.ApiClient(cfg)

    @property
    def host(self) -> str:
        client = self._client
        return str(getattr(getattr(client, "configuration", None), "host", "") or "the cluster")

    def apis(self, which: str) -> Any:
        """``core``, ``custom``, ``networking`` or ``version``: the client's API object (the
        first of each costs about a second to build, so only worker threads call this)."""
        with self._lock:
            found = self._apis.get(which)
            if found is None:
                from kubernetes import client

                found = getattr(client, _APIS[which])(self.client())
                self._apis[which] = found
            return found

    def exec_api(self) -> Any:
        """A CoreV1Api on an ApiClient of its own, for one exec stream: ``kubernetes.stream``
        swaps ``call_api`` on the client it is given for the length of the call, which
        would turn concurrent requests on a shared client into websocket calls."""
        from kubernetes import client

        return client.CoreV1Api(client.ApiClient(self.client().configuration))

    # --- requests ---------------------------------------------------------------------------
    def request(self, api: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Blocking: ``apis(api).method(*args)``; the decoded JSON body. Errors become
        ProviderErrors (404 included: see :meth:`get`)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        kwargs.setdefault("_request_timeout", self.options.api_timeout)
        try:
            response = getattr(self.apis(api), method)(*args, _preload_content=False, **kwargs)
        except ApiException as exc:
            raise self.error(exc) from exc
        except (HTTPError, OSError) as exc:  # refused, reset, timed out, TLS
            raise ProviderUnavailable(
                f"cannot reach the Kubernetes API at {self.host}: {exc}; {CLUSTER_HINT}"
            ) from exc
        data = getattr(response, "data", b"")
        return json.loads(data) if data else {}

    def error(self, exc: Any) -> ProviderError:
        status = int(getattr(exc, "status", 0) or 0)
        message = status_message(getattr(exc, "body", None)) or str(getattr(exc, "reason", ""))
        return self.failure(status, message)

    @staticmethod
    def failure(status: int, message: str, what: str = "Kubernetes API") -> ProviderError:
        if status in (401, 403):
            return ProviderError(
                f"{what}: the Kubernetes API refused the gateway ({status}): {message}. Grant "
                "its service account the RBAC rules listed in docs/sandboxes.md",
                code="sandbox_provider_forbidden",
            )
        if status == 404:
            return _NotFound(message)
        if status == 409:
            return _Conflict(message)
        return ProviderError(f"{what} ({status or 'no answer'}): {message}")

    async def call(self, api: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return await blocking.to_thread(self.request, api, method, *args, **kwargs)

    async def get(self, api: str, method: str, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        """Like :meth:`call`, but ``None`` when the object does not exist."""
        try:
            result: dict[str, Any] = await self.call(api, method, *args, **kwargs)
        except _NotFound:
            return None
        return result

    async def create(self, api: str, method: str, *args: Any, **kwargs: Any) -> bool:
        """Create an object; False if it already exists."""
        try:
            await self.call(api, method, *args, **kwargs)
        except _Conflict:
            return False
        return True

    async def delete(self, api: str, method: str, *args: Any, **kwargs: Any) -> bool:
        """Delete an object; False if it was already gone."""
        try:
            await self.call(api, method, *args, **kwargs)
        except _NotFound:
            return False
        return True

    async def version(self) -> dict[str, Any]:
        """``GET /version``: proves the API answers and the credentials are accepted."""
        try:
            result: dict[str, Any] = await self.call("version", "get_code")
        except ProviderUnavailable:
            raise
        except ProviderError as exc:
            raise ProviderUnavailable(exc.message) from exc
        return result


class _NotFound(ProviderError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="sandbox_kube_not_found")


class _Conflict(ProviderError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="sandbox_kube_conflict")


NotFoundError = _NotFound


# --- manifests ------------------------------------------------------------------------------
def labels(spec: SandboxSpec) -> dict[str, str]:
    return {
        **MANAGED_BY,
        SANDBOX_LABEL: resource_name(spec.id).removeprefix("mcpgw-sbx-"),
        NETWORK_LABEL: spec.network,
    }


def container_manifest(
    image: str, env: dict[str, str], limits: Any, options: KubeOptions
) -> dict[str, Any]:
    """The sandbox container: ``sleep infinity`` as uid 1000, nothing to escalate with."""
    resources = {
        "cpu": cpu_quantity(limits.cpus),
        "memory": mebibytes(limits.memory_mb),
        "ephemeral-storage": mebibytes(EPHEMERAL_STORAGE_MB),
    }
    return {
        "name": CONTAINER,
        "image": options.image(image),
        "imagePullPolicy": options.image_pull_policy,
        "command": ["sleep", "infinity"],
        "workingDir": WORKSPACE,
        "env": [{"name": k, "value": v} for k, v in {**BASE_ENV, **env}.items()],
        # requests = limits: Guaranteed QoS, so a sandbox is not evicted first under pressure
        "resources": {"limits": dict(resources), "requests": dict(resources)},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "workspace", "mountPath": WORKSPACE},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
        ],
    }


def pod_spec_manifest(
    image: str,
    env: dict[str, str],
    limits: Any,
    options: KubeOptions,
    workspace: dict[str, Any] | None,
) -> dict[str, Any]:
    """A hardened pod spec; ``workspace`` is the volume source of ``/workspace`` (None when a
    controller adds it from a volume claim template)."""
    tmp_mb = min(limits.memory_mb, 1024)
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": mebibytes(tmp_mb)}}
    ]
    if workspace is not None:
        volumes.insert(0, {"name": "workspace", **workspace})
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 1,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container_manifest(image, env, limits, options)],
        "volumes": volumes,
    }
    if options.runtime_class:
        spec["runtimeClassName"] = options.runtime_class
    return spec


def pod_manifest(
    spec: SandboxSpec, image: str, env: dict[str, str], options: KubeOptions
) -> dict[str, Any]:
    name = resource_name(spec.id)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": options.namespace, "labels": labels(spec)},
        "spec": pod_spec_manifest(
            image,
            env,
            spec.limits,
            options,
            {"persistentVolumeClaim": {"claimName": name}},
        ),
    }


def pvc_spec(disk_mb: int, options: KubeOptions) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "volumeMode": "Filesystem",
        "resources": {"requests": {"storage": mebibytes(disk_mb)}},
    }
    if options.storage_class:
        spec["storageClassName"] = options.storage_class
    return spec


def pvc_manifest(spec: SandboxSpec, options: KubeOptions) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": resource_name(spec.id),
            "namespace": options.namespace,
            "labels": labels(spec),
        },
        "spec": pvc_spec(spec.limits.disk_mb, options),
    }


def network_policies(namespace: str) -> list[dict[str, Any]]:
    """Two shared policies, chosen by the pod's ``mcpgw.sandbox/network`` label.

    ``none``: no ingress, no egress at all (not even DNS). ``egress``: no ingress; egress to
    public addresses and to the cluster DNS only (no pods, services, node or cloud metadata
    addresses). They take effect only where the CNI enforces NetworkPolicy."""
    base = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy"}
    deny = {
        **base,
        "metadata": {"name": DENY_ALL_POLICY, "namespace": namespace, "labels": dict(MANAGED_BY)},
        "spec": {
            "podSelector": {"matchLabels": {NETWORK_LABEL: "none"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [],
        },
    }
    egress = {
        **base,
        "metadata": {"name": EGRESS_POLICY, "namespace": namespace, "labels": dict(MANAGED_BY)},
        "spec": {
            "podSelector": {"matchLabels": {NETWORK_LABEL: "egress"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE_RANGES}}]},
                {
                    "to": [
                        {
                            "namespaceSelector": {},
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                        }
                    ],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                },
            ],
        },
    }
    return [deny, egress]


def pod_problem(pod: dict[str, Any]) -> tuple[bool, str | None]:
    """(ready, why it never will be): reads a Pod's status."""
    status = pod.get("status") or {}
    phase = status.get("phase")
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False, "the pod is being deleted"
    if phase in ("Failed", "Succeeded"):
        return (
            False,
            f"the pod ended ({phase}): {status.get('message') or status.get('reason') or ''}",
        )
    containers = status.get("containerStatuses") or []
    for container in containers:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in (
            "ErrImagePull",
            "ImagePullBackOff",
            "InvalidImageName",
            "CreateContainerConfigError",
            "CreateContainerError",
            "CrashLoopBackOff",
        ):
            return False, f"{reason}: {waiting.get('message') or ''}".strip()
    ready = phase == "Running" and bool(containers) and all(c.get("ready") for c in containers)
    return ready, None


def pod_waiting(pod: dict[str, Any]) -> str:
    """A short account of why a pod is not ready yet (for timeout messages)."""
    status = pod.get("status") or {}
    parts = [str(status.get("phase") or "Unknown")]
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True" and condition.get("message"):
            parts.append(f"{condition.get('type')}: {condition['message']}")
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            parts.append(f"{waiting['reason']} {waiting.get('message') or ''}".strip())
    return "; ".join(parts)


def oom_killed(pod: dict[str, Any], since: float) -> bool:
    """Whether the pod's sandbox container was stopped by the memory limit at or after
    ``since`` (epoch seconds)."""
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        for key in ("state", "lastState"):
            terminated = (container.get(key) or {}).get("terminated") or {}
            if terminated.get("reason") != "OOMKilled":
                continue
            finished = terminated.get("finishedAt")
            try:
                when = datetime.fromisoformat(str(finished).replace("Z", "+00:00")).timestamp()
            except ValueError:
                return True  # no usable time: trust the reason
            if when >= since - 1:
                return True
    return False
