"""A FAKE Kubernetes API server: only the paths the sandbox providers use.

No Kubernetes API server can run on this machine (TESTING.md), so the ``kubernetes`` and
``agent-sandbox`` providers are tested with the official ``kubernetes`` Python client
against this stand-in, served on 127.0.0.1 by uvicorn in a thread. It implements:

- ``GET /version``;
- pods, persistentvolumeclaims (``/api/v1/namespaces/{ns}/...``) and networkpolicies
  (``/apis/networking.k8s.io/v1/...``): create (409 when present), get, list, delete,
  JSON merge patch; ``Status`` bodies on errors, as the real server sends them;
- custom objects registered with :meth:`FakeCluster.serve` (``/apis/{group}/{version}/...``);
- ``pods/{name}/exec`` over a websocket with the channel protocols the client offers
  (``v4.channel.k8s.io`` by default; ``v5`` when enabled, with its stdin CLOSE frame):
  channel 0 stdin, 1 stdout, 2 stderr, 3 the final ``v1.Status`` (exit code in
  ``details.causes``). Refusals (no such pod, pod not running) are HTTP errors on the
  upgrade, as on a real cluster;
- owner-reference garbage collection and a little of the kubelet: a pod turns Running
  after ``start_delay`` when its PVCs exist and its image is not in ``missing_images``;
  a deleted pod lingers ``delete_delay`` (terminating), then its processes are killed.

What is NOT real: exec runs the command as a subprocess **on the host**, as the test's
user, with the PATH of the test process (so ``python3 -c`` is the host's Python). Each
PVC is a host directory (it outlives the pod, as a volume does); each emptyDir is a
directory removed with its pod. The container's mount paths (``/workspace``, ``/tmp``)
are rewritten to those directories in argv, the working directory and the pod's env
values — but not inside stdin. Nothing confines the process: no namespaces, no limits,
no uid 1000; the manifest tests check what a real kubelet would enforce.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import re
import shutil
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

CORE = {"pods": "Pod", "persistentvolumeclaims": "PersistentVolumeClaim"}
NETWORKING = ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class FakeCluster:
    def __init__(
        self,
        root: Path,
        *,
        protocols: tuple[str, ...] = ("v4.channel.k8s.io",),
        start_delay: float = 0.05,
        delete_delay: float = 0.1,
        controller_delay: float = 0.15,
    ) -> None:
        self.root = root
        self.protocols = protocols
        self.start_delay = start_delay
        self.delete_delay = delete_delay
        # how long a controller takes to notice a change (status lags behind spec)
        self.controller_delay = controller_delay
        self.changed: dict[tuple[str, str, str], float] = {}
        self.lock = threading.RLock()
        self.store: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self.kinds: dict[str, tuple[str, str, str]] = {}  # key -> (group, version, kind)
        self.requests: list[tuple[str, str]] = []
        self.execs: list[list[str]] = []
        self.missing_images: set[str] = set()
        self.controllers: list[Callable[[FakeCluster], None]] = []
        self._procs: dict[tuple[str, str], set[int]] = {}
        self._timers: dict[tuple[str, str, str], float] = {}
        self._rv = itertools.count(1)
        self._stop = threading.Event()
        for plural, kind in CORE.items():
            self.kinds[plural] = ("", "v1", kind)
            self.store[plural] = {}
        self.serve(*NETWORKING)
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._threads: list[threading.Thread] = []

    # --- resources ------------------------------------------------------------------------
    def serve(self, group: str, version: str, plural: str, kind: str) -> None:
        key = f"{group}/{plural}"
        self.kinds[key] = (group, version, kind)
        self.store.setdefault(key, {})

    def objects(self, key: str, namespace: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                copy.deepcopy(obj)
                for (ns, _), obj in sorted(self.store[key].items())
                if namespace is None or ns == namespace
            ]

    def get(self, key: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            return self.store[key].get((namespace, name))

    def add(self, key: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new object as the API server would (uid, resourceVersion, defaults)."""
        with self.lock:
            meta = obj.setdefault("metadata", {})
            meta.update(
                namespace=namespace,
                uid=str(uuid.uuid4()),
                resourceVersion=str(next(self._rv)),
                creationTimestamp=now(),
                generation=1,
            )
            if key == "pods":
                obj["status"] = {"phase": "Pending", "conditions": []}
                self._timers[(key, namespace, meta["name"])] = time.monotonic() + self.start_delay
            elif key == "persistentvolumeclaims":
                obj["status"] = {"phase": "Bound"}
                self.pvc_dir(namespace, meta["name"]).mkdir(parents=True, exist_ok=True)
            self.store[key][(namespace, meta["name"])] = obj
            return obj

    def update(self, key: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            obj = self.store[key][(namespace, name)]
            merged: dict[str, Any] = merge_patch(obj, patch)
            if merged.get("spec") != obj.get("spec"):
                merged["metadata"]["generation"] = int(obj["metadata"].get("generation", 1)) + 1
            merged["metadata"]["resourceVersion"] = str(next(self._rv))
            self.changed[(key, namespace, name)] = time.monotonic()
            self.store[key][(namespace, name)] = merged
            return merged

    def remove(self, key: str, namespace: str, name: str) -> dict[str, Any] | None:
        """Delete as the API server would: pods terminate for a while, PVCs in use wait."""
        with self.lock:
            obj = self.store[key].get((namespace, name))
            if obj is None:
                return None
            if key == "pods":
                obj["metadata"].setdefault("deletionTimestamp", now())
                self._timers[("gone", namespace, name)] = time.monotonic() + self.delete_delay
            elif key == "persistentvolumeclaims" and self._pvc_in_use(namespace, name):
                obj["metadata"].setdefault("deletionTimestamp", now())
                obj["metadata"]["finalizers"] = ["kubernetes.io/pvc-protection"]
            else:
                self._drop(key, namespace, name)
            return obj

    def _drop(self, key: str, namespace: str, name: str) -> None:
        self.store[key].pop((namespace, name), None)
        if key == "persistentvolumeclaims":
            shutil.rmtree(self.pvc_dir(namespace, name), ignore_errors=True)
        if key == "pods":
            self.kill_pod_processes(namespace, name)
            shutil.rmtree(self.pod_dir(namespace, name), ignore_errors=True)

    def _pvc_in_use(self, namespace: str, claim: str) -> bool:
        return any(
            ((v.get("persistentVolumeClaim") or {}).get("claimName") == claim)
            for (ns, _), pod in self.store["pods"].items()
            if ns == namespace
            for v in pod["spec"].get("volumes") or []
        )

    def pvc_dir(self, namespace: str, name: str) -> Path:
        return self.root / "pvc" / namespace / name

    def pod_dir(self, namespace: str, name: str) -> Path:
        return self.root / "pods" / namespace / name

    # --- the kubelet, the garbage collector, controllers ----------------------------------
    def tick(self) -> None:
        with self.lock:
            clock = time.monotonic()
            for (kind, namespace, name), due in list(self._timers.items()):
                if due > clock:
                    continue
                pod = self.store["pods"].get((namespace, name))
                if kind == "gone":
                    del self._timers[(kind, namespace, name)]
                    if pod is not None:
                        self._drop("pods", namespace, name)
                elif pod is None or self._start_pod(namespace, pod):
                    del self._timers[(kind, namespace, name)]
            for (namespace, name), pvc in list(self.store["persistentvolumeclaims"].items()):
                if pvc["metadata"].get("deletionTimestamp") and not self._pvc_in_use(
                    namespace, name
                ):
                    self._drop("persistentvolumeclaims", namespace, name)
            for controller in self.controllers:
                controller(self)
            self._collect()

    def _start_pod(self, namespace: str, pod: dict[str, Any]) -> bool:
        """Pending -> Running when the pod can start; False to try again later."""
        if pod["metadata"].get("deletionTimestamp"):
            return True
        spec = pod["spec"]
        for volume in spec.get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and (namespace, claim) not in self.store["persistentvolumeclaims"]:
                pod["status"]["conditions"] = [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": f'persistentvolumeclaim "{claim}" not found',
                    }
                ]
                return False
        statuses = []
        for container in spec["containers"]:
            missing = container["image"] in self.missing_images
            state = (
                {"waiting": {"reason": "ErrImagePull", "message": "image not found"}}
                if missing
                else {"running": {"startedAt": now()}}
            )
            statuses.append(
                {
                    "name": container["name"],
                    "image": container["image"],
                    "imageID": "",
                    "ready": not missing,
                    "restartCount": 0,
                    "started": not missing,
                    "state": state,
                }
            )
        ready = all(s["ready"] for s in statuses)
        pod["status"] = {
            "phase": "Running" if ready else "Pending",
            "podIP": "10.0.0.1",
            "podIPs": [{"ip": "10.0.0.1"}],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": statuses,
        }
        for volume in spec.get("volumes") or []:
            if "emptyDir" in volume:
                (self.pod_dir(namespace, pod["metadata"]["name"]) / volume["name"]).mkdir(
                    parents=True, exist_ok=True
                )
        return True

    def _collect(self) -> None:
        """Delete objects whose controlling owner is gone (background propagation)."""
        while True:
            uids = {o["metadata"]["uid"] for objs in self.store.values() for o in objs.values()}
            orphans = [
                (key, ns, name)
                for key, objs in self.store.items()
                for (ns, name), obj in objs.items()
                if any(
                    ref.get("uid") not in uids
                    for ref in obj["metadata"].get("ownerReferences") or []
                )
                and not obj["metadata"].get("deletionTimestamp")
            ]
            if not orphans:
                return
            for key, ns, name in orphans:
                self.remove(key, ns, name)

    def oom_kill(self, namespace: str, name: str) -> None:
        """What a memory cgroup with oom.group does: the container dies and restarts."""
        with self.lock:
            pod = self.store["pods"][(namespace, name)]
            for container in pod["status"]["containerStatuses"]:
                container["lastState"] = {
                    "terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": now()}
                }
                container["restartCount"] += 1
        self.kill_pod_processes(namespace, name)

    def kill_pod_processes(self, namespace: str, name: str) -> None:
        for pid in self._procs.pop((namespace, name), set()):
            for victim in [pid, *_descendants(pid)]:
                with contextlib.suppress(OSError):
                    if victim == pid and os.getpgid(pid) == pid:
                        os.killpg(pid, signal.SIGKILL)
                    os.kill(victim, signal.SIGKILL)

    # --- HTTP -----------------------------------------------------------------------------
    def _key(self, request: Request) -> str:
        params = request.path_params
        group = params.get("group", "")
        key = params["plural"] if not group else f"{group}/{params['plural']}"
        if key not in self.kinds or self.kinds[key][1] != params.get("version", "v1"):
            raise KeyError(key)
        return key

    async def _resource(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path))
        try:
            key = self._key(request)
        except KeyError:
            return JSONResponse(
                status(404, "NotFound", "the server could not find the requested resource"), 404
            )
        namespace, name = request.path_params["namespace"], request.path_params.get("name")
        plural = request.path_params["plural"]
        body: dict[str, Any] = await request.json() if request.method in ("POST", "PATCH") else {}
        with self.lock:
            if request.method == "POST":
                name = (body.get("metadata") or {}).get("name")
                group, version, kind = self.kinds[key]
                expected = f"{group}/{version}" if group else version
                if body.get("kind") != kind or body.get("apiVersion") != expected or not name:
                    return JSONResponse(
                        status(400, "BadRequest", f"not a {kind}: {body.get('kind')}"), 400
                    )
                if (namespace, name) in self.store[key]:
                    return JSONResponse(
                        status(409, "AlreadyExists", f'{plural} "{name}" already exists'), 409
                    )
                obj = self.add(key, namespace, body)
                return JSONResponse(obj, 201)
            if name is None:
                items = self.objects(key, namespace)
                return JSONResponse(
                    {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items}
                )
            if (namespace, name) not in self.store[key]:
                return JSONResponse(
                    status(404, "NotFound", f'{plural} "{name}" not found', name=name, kind=plural),
                    404,
                )
            if request.method == "GET":
                return JSONResponse(self.store[key][(namespace, name)])
            if request.method == "PATCH":
                if "merge-patch" not in request.headers.get("content-type", ""):
                    return JSONResponse(
                        status(415, "UnsupportedMediaType", "merge patch only"), 415
                    )
                return JSONResponse(self.update(key, namespace, name, body))
            return JSONResponse(self.remove(key, namespace, name))

    async def _version(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path))
        return JSONResponse(
            {"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64"}
        )

    # --- exec -----------------------------------------------------------------------------
    async def _exec(self, websocket: WebSocket) -> None:
        from tests.fakes.kube_exec import run_exec

        await run_exec(self, websocket)

    # --- the server -----------------------------------------------------------------------
    def app(self) -> Starlette:
        ns = "/namespaces/{namespace}/{plural}"
        methods = ["GET", "POST", "PATCH", "DELETE"]
        return Starlette(
            routes=[
                Route("/version", self._version),
                WebSocketRoute("/api/v1/namespaces/{namespace}/pods/{name}/exec", self._exec),
                Route("/api/{version}" + ns, self._resource, methods=methods),
                Route("/api/{version}" + ns + "/{name}", self._resource, methods=methods),
                Route("/apis/{group}/{version}" + ns, self._resource, methods=methods),
                Route("/apis/{group}/{version}" + ns + "/{name}", self._resource, methods=methods),
            ]
        )

    def start(self) -> str:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        # the plain asyncio loop: uvloop's spawn lets descriptors of the test process leak into
        # the "container" processes (a real runtime starts them with stdio only)
        config = uvicorn.Config(
            self.app(), log_level="warning", lifespan="off", ws="websockets-sansio", loop="asyncio"
        )
        self._server = server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the fake Kubernetes API did not start")
            time.sleep(0.01)
        ticker = threading.Thread(target=self._tick_loop, daemon=True)
        ticker.start()
        self._threads = [thread, ticker]
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self.url

    def _tick_loop(self) -> None:
        while not self._stop.wait(0.02):
            self.tick()

    def stop(self) -> None:
        self._stop.set()
        for namespace, name in list(self._procs):
            self.kill_pod_processes(namespace, name)
        if self._server is not None:
            self._server.should_exit = True
        for thread in self._threads:
            thread.join(timeout=10)

    def configuration(self) -> Any:
        """A ``kubernetes.client.Configuration`` that points at this fake."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        return cfg


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def mount_rewriter(mounts: dict[str, Path]) -> Callable[[str], str]:
    """Rewrite the container's mount paths (``/workspace``, ``/tmp``) to host directories."""
    if not mounts:
        return lambda text: text
    names = "|".join(re.escape(m.rstrip("/")) for m in sorted(mounts, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w.\-/])({names})(?=/|$|[^\w.\-])")
    return lambda text: pattern.sub(lambda m: str(mounts[m.group(1)]), text)


def chosen_protocol(offered: list[str], supported: tuple[str, ...]) -> str | None:
    for item in offered:
        for protocol in item.split(","):
            if protocol.strip() in supported:
                return protocol.strip()
    return None


def exit_status(code: int) -> dict[str, Any]:
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit status {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }
