"""Sandbox providers: one adapter per runtime behind ``SandboxProvider`` (see base.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config import Settings
from sandboxes.providers.base import SandboxProvider

if TYPE_CHECKING:
    from sandboxes.providers.kube_common import KubeOptions

log = logging.getLogger("sandboxes")


def sandbox_root(settings: Settings) -> Path:
    return (settings.sandbox_dir or settings.data_dir / "sandboxes").resolve()


def kube_options(settings: Settings) -> KubeOptions:
    """The cluster settings of the ``kubernetes`` and ``agent-sandbox`` providers."""
    from sandboxes.providers.kube_common import KubeOptions

    return KubeOptions(
        namespace=settings.sandbox_kube_namespace,
        kubeconfig=str(settings.sandbox_kube_kubeconfig)
        if settings.sandbox_kube_kubeconfig
        else None,
        context=settings.sandbox_kube_context,
        api_timeout=settings.sandbox_kube_api_timeout_seconds,
        ready_timeout=settings.sandbox_kube_ready_timeout_seconds,
        storage_class=settings.sandbox_kube_storage_class,
        image_registry=settings.sandbox_kube_image_registry,
        image_pull_policy=settings.sandbox_kube_image_pull_policy,
        runtime_class=settings.sandbox_kube_runtime_class,
        network_policies=settings.sandbox_kube_network_policies,
    )


def build_providers(settings: Settings) -> dict[str, SandboxProvider]:
    """Every provider this gateway offers; none touches its runtime until first used."""
    from sandboxes.blocking import BlockingPool
    from sandboxes.providers.agent_sandbox import AgentSandboxOptions, AgentSandboxProvider
    from sandboxes.providers.docker import DockerProvider
    from sandboxes.providers.kubernetes import KubernetesProvider
    from sandboxes.providers.local import LocalProvider

    options = kube_options(settings)
    pools = AgentSandboxOptions(
        warm_pool=settings.sandbox_agent_sandbox_warm_pool,
        manage=settings.sandbox_agent_sandbox_manage,
        pool_size=settings.sandbox_agent_sandbox_pool_size,
    )
    root = sandbox_root(settings)
    # the sandboxes' own threads for blocking workspace I/O (never the default executor)
    fs = BlockingPool(
        "sandbox-fs",
        workers=settings.sandbox_fs_workers,
        timeout=settings.sandbox_fs_timeout_seconds,
    )
    local = LocalProvider(root, disk_limit=settings.sandbox_disk_limit, fs=fs)
    docker = DockerProvider(disk_root=root / "docker", disk_limit=settings.sandbox_disk_limit)
    disks = {"local": local.disks, "docker": docker.disks}.get(settings.sandbox_provider)
    if disks is not None and disks.reason:
        log.warning(
            "sandbox disk limits are measured, not enforced: a command can write past its "
            "disk_mb until the next measurement (MCPGW_SANDBOX_DISK_LIMIT)",
            extra={"provider": settings.sandbox_provider, "reason": disks.reason},
        )
    return {
        "local": local,
        "docker": docker,
        "kubernetes": KubernetesProvider(options),
        "agent-sandbox": AgentSandboxProvider(options, pools),
    }
