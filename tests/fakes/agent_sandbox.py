"""A FAKE agent-sandbox controller for the fake API server (kube_api.py).

No Kubernetes API server can run here, so neither can the kubernetes-sigs/agent-sandbox
controller. This reconciler mimics the parts of it the ``agent-sandbox`` provider relies
on, following the controller's v1beta1 types and reconcilers:

- ``SandboxWarmPool`` (``extensions.agents.x-k8s.io``): keeps ``spec.replicas`` Sandboxes
  made from the pool's ``SandboxTemplate``, labelled ``agents.x-k8s.io/warm-pool-sandbox``;
- ``SandboxClaim``: binds to a Ready pool Sandbox (adoption: the claim becomes the
  controlling owner, the warm-pool label goes), or makes a cold one named after the claim
  when the pool has none ready; records ``agents.x-k8s.io/sandbox-name``, sets
  ``status.sandbox.name`` and mirrors the Sandbox's ``Ready`` condition;
  ``WarmPoolNotFound`` / ``TemplateNotFound`` otherwise;
- ``Sandbox`` (``agents.x-k8s.io``): one PVC per ``volumeClaimTemplates`` entry
  (``<template>-<sandbox>``), a Pod named after the Sandbox while ``spec.operatingMode``
  is ``Running`` (annotation ``agents.x-k8s.io/pod-name``); ``Suspended`` deletes the Pod
  and keeps the PVCs. Conditions ``Ready`` and ``Suspended`` carry ``observedGeneration``.

Deleting a claim removes its Sandbox, Pod and PVCs through owner references (the fake
API server's garbage collector), as on a cluster.
"""

from __future__ import annotations

import copy
import secrets
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.kube_api import FakeCluster

EXT = "extensions.agents.x-k8s.io"
CORE = "agents.x-k8s.io"
VERSION = "v1beta1"
TEMPLATES, POOLS, CLAIMS, SANDBOXES = (
    f"{EXT}/sandboxtemplates",
    f"{EXT}/sandboxwarmpools",
    f"{EXT}/sandboxclaims",
    f"{CORE}/sandboxes",
)
WARM_LABEL = "agents.x-k8s.io/warm-pool-sandbox"
LAUNCH_LABEL = "agents.x-k8s.io/launch-type"
POD_ANNOTATION = "agents.x-k8s.io/pod-name"
ASSIGNED = "agents.x-k8s.io/sandbox-name"


def install(cluster: FakeCluster) -> None:
    cluster.serve(EXT, VERSION, "sandboxtemplates", "SandboxTemplate")
    cluster.serve(EXT, VERSION, "sandboxwarmpools", "SandboxWarmPool")
    cluster.serve(EXT, VERSION, "sandboxclaims", "SandboxClaim")
    cluster.serve(CORE, VERSION, "sandboxes", "Sandbox")
    cluster.controllers.append(reconcile)


def owner(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controlled_by(obj: dict[str, Any], parent: dict[str, Any]) -> bool:
    uid = parent["metadata"]["uid"]
    return any(r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or [])


def set_condition(
    obj: dict[str, Any], kind: str, state: bool, reason: str, message: str = ""
) -> None:
    conditions = obj.setdefault("status", {}).setdefault("conditions", [])
    new = {
        "type": kind,
        "status": "True" if state else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": obj["metadata"].get("generation", 1),
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    for index, old in enumerate(conditions):
        if old["type"] == kind:
            conditions[index] = new
            return
    conditions.append(new)


def ready(obj: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (obj.get("status") or {}).get("conditions") or []
    )


def live(cluster: FakeCluster, key: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (ns, name, obj)
        for (ns, name), obj in sorted(cluster.store[key].items())
        if not obj["metadata"].get("deletionTimestamp")
    ]


def new_sandbox(
    cluster: FakeCluster,
    ns: str,
    name: str,
    template: dict[str, Any],
    parent: dict[str, Any],
    launch: str,
) -> dict[str, Any]:
    labels = {LAUNCH_LABEL: launch}
    if launch == "warm":
        labels[WARM_LABEL] = parent["metadata"]["name"]
    body = {
        "apiVersion": f"{CORE}/{VERSION}",
        "kind": "Sandbox",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"agents.x-k8s.io/sandbox-template-ref": template["metadata"]["name"]},
            "ownerReferences": [owner(parent)],
        },
        "spec": {
            "podTemplate": copy.deepcopy(template["spec"]["podTemplate"]),
            "volumeClaimTemplates": copy.deepcopy(
                template["spec"].get("volumeClaimTemplates") or []
            ),
            "operatingMode": "Running",
        },
    }
    return cluster.add(SANDBOXES, ns, body)


def reconcile(cluster: FakeCluster) -> None:
    """One pass over pools, claims and sandboxes (called with the cluster's lock held)."""
    for ns, name, pool in live(cluster, POOLS):
        template = cluster.store[TEMPLATES].get((ns, pool["spec"]["sandboxTemplateRef"]["name"]))
        members = [
            sb
            for _, _, sb in live(cluster, SANDBOXES)
            if controlled_by(sb, pool) and sb["metadata"]["labels"].get(WARM_LABEL) == name
        ]
        want = int(pool["spec"].get("replicas", 1))
        while template is not None and len(members) < want:
            members.append(
                new_sandbox(cluster, ns, f"{name}-{secrets.token_hex(3)}", template, pool, "warm")
            )
        pool["status"] = {"replicas": len(members), "readyReplicas": sum(ready(m) for m in members)}

    for ns, name, claim in live(cluster, CLAIMS):
        annotations = claim["metadata"].setdefault("annotations", {})
        if not annotations.get(ASSIGNED):
            source = cluster.store[POOLS].get((ns, claim["spec"]["warmPoolRef"]["name"]))
            if source is None:
                set_condition(
                    claim, "Ready", False, "WarmPoolNotFound", "SandboxWarmPool not found"
                )
                continue
            blueprint = cluster.store[TEMPLATES].get(
                (ns, source["spec"]["sandboxTemplateRef"]["name"])
            )
            if blueprint is None:
                set_condition(
                    claim, "Ready", False, "TemplateNotFound", "SandboxTemplate not found"
                )
                continue
            warm = [
                sb
                for _, _, sb in live(cluster, SANDBOXES)
                if controlled_by(sb, source)
                and WARM_LABEL in sb["metadata"]["labels"]
                and ready(sb)
            ]
            if warm:
                sandbox = warm[0]
                sandbox["metadata"]["ownerReferences"] = [owner(claim)]
                del sandbox["metadata"]["labels"][WARM_LABEL]
            else:
                sandbox = new_sandbox(cluster, ns, name, blueprint, claim, "cold")
            annotations[ASSIGNED] = sandbox["metadata"]["name"]
        bound = cluster.store[SANDBOXES].get((ns, annotations[ASSIGNED]))
        if bound is None:
            set_condition(claim, "Ready", False, "SandboxMissing", "Sandbox does not exist")
            continue
        claim.setdefault("status", {})["sandbox"] = {"name": bound["metadata"]["name"]}
        set_condition(
            claim,
            "Ready",
            ready(bound),
            "DependenciesReady" if ready(bound) else "SandboxNotReady",
        )

    for ns, name, sandbox in live(cluster, SANDBOXES):
        _reconcile_sandbox(cluster, ns, name, sandbox)


def _reconcile_sandbox(cluster: FakeCluster, ns: str, name: str, sandbox: dict[str, Any]) -> None:
    changed = cluster.changed.get((SANDBOXES, ns, name), 0.0)
    if time.monotonic() - changed < cluster.controller_delay:
        return  # the controller has not seen the new spec yet: status still tells the old one
    spec = sandbox["spec"]
    claims = []
    for template in spec.get("volumeClaimTemplates") or []:
        claim = f"{template['metadata']['name']}-{name}"
        claims.append((template["metadata"]["name"], claim))
        if (ns, claim) not in cluster.store["persistentvolumeclaims"]:
            cluster.add(
                "persistentvolumeclaims",
                ns,
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": claim, "ownerReferences": [owner(sandbox)]},
                    "spec": copy.deepcopy(template["spec"]),
                },
            )
    annotations = sandbox["metadata"].setdefault("annotations", {})
    pod_name = annotations.get(POD_ANNOTATION) or name
    pod = cluster.store["pods"].get((ns, pod_name))
    if spec.get("operatingMode", "Running") == "Suspended":
        if pod is not None and not pod["metadata"].get("deletionTimestamp"):
            cluster.remove("pods", ns, pod_name)
        annotations.pop(POD_ANNOTATION, None)
        gone = pod is None
        set_condition(sandbox, "Suspended", gone, "PodTerminated" if gone else "PodTerminating")
        set_condition(sandbox, "Ready", False, "SandboxSuspended", "Sandbox is suspended")
        return
    if pod is None:
        pod_spec = copy.deepcopy(spec["podTemplate"]["spec"])
        volumes = [v for v in pod_spec.get("volumes") or [] if v["name"] not in dict(claims)]
        volumes += [{"name": vct, "persistentVolumeClaim": {"claimName": c}} for vct, c in claims]
        pod_spec["volumes"] = volumes
        labels = dict((spec["podTemplate"].get("metadata") or {}).get("labels") or {})
        pod = cluster.add(
            "pods",
            ns,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": labels, "ownerReferences": [owner(sandbox)]},
                "spec": pod_spec,
            },
        )
        annotations[POD_ANNOTATION] = name
    up = (
        pod["status"].get("phase") == "Running"
        and not pod["metadata"].get("deletionTimestamp")
        and all(c.get("ready") for c in pod["status"].get("containerStatuses") or [])
    )
    # the controller's own note: a Suspended condition may linger after a resume, so only
    # Ready is authoritative; the fake leaves it stale on purpose
    if not any(c["type"] == "Suspended" for c in sandbox.get("status", {}).get("conditions", [])):
        set_condition(sandbox, "Suspended", False, "NotSuspended", "Sandbox is not suspended")
    set_condition(sandbox, "Ready", up, "DependenciesReady" if up else "DependenciesNotReady")
