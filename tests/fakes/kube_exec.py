"""The FAKE API server's ``pods/{name}/exec``: the channel protocol, a host subprocess.

The websocket side is what a real API server speaks (``v4.channel.k8s.io``, and
``v5.channel.k8s.io`` when the fake enables it): every frame starts with its channel
byte — 0 stdin, 1 stdout, 2 stderr, 3 the final ``v1.Status`` JSON, 4 resize, and in v5
255 CLOSE (``[255, channel]``: no more input on that channel). The command itself runs
on the host (see kube_api.py for what that does and does not stand in for).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.fakes.kube_api import chosen_protocol, exit_status, mount_rewriter, status

if TYPE_CHECKING:
    from tests.fakes.kube_api import FakeCluster

V5 = "v5.channel.k8s.io"


async def _deny(websocket: WebSocket, code: int, reason: str, message: str) -> None:
    await websocket.send_denial_response(JSONResponse(status(code, reason, message), code))


def _mounts(
    cluster: FakeCluster, namespace: str, pod: dict[str, Any], container: dict[str, Any]
) -> dict[str, Path]:
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"]) or {}
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim:
            mounts[mount["mountPath"]] = cluster.pvc_dir(namespace, claim)
        elif "emptyDir" in volume:
            mounts[mount["mountPath"]] = (
                cluster.pod_dir(namespace, pod["metadata"]["name"]) / mount["name"]
            )
    return mounts


async def run_exec(cluster: FakeCluster, websocket: WebSocket) -> None:
    namespace, name = websocket.path_params["namespace"], websocket.path_params["name"]
    query = websocket.query_params
    argv = query.getlist("command")
    want_stdin = query.get("stdin") == "true"
    cluster.requests.append(("EXEC", websocket.url.path))
    with cluster.lock:
        pod = cluster.get("pods", namespace, name)
        pod = json.loads(json.dumps(pod)) if pod else None
    if pod is None:
        return await _deny(websocket, 404, "NotFound", f'pods "{name}" not found')
    if pod["status"].get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
        return await _deny(websocket, 400, "BadRequest", f"pod {name} is not running")
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    wanted = query.get("container")
    if wanted is None and len(containers) > 1:
        return await _deny(websocket, 400, "BadRequest", "a container name must be specified")
    container = containers.get(wanted) if wanted else next(iter(containers.values()))
    if container is None:
        return await _deny(
            websocket, 400, "BadRequest", f"container {wanted} is not valid for pod {name}"
        )
    if not argv:
        return await _deny(websocket, 400, "BadRequest", "you must specify at least 1 command")
    protocol = chosen_protocol(websocket.scope.get("subprotocols") or [], cluster.protocols)
    if protocol is None:
        return await _deny(websocket, 400, "BadRequest", "no supported channel protocol")
    await websocket.accept(subprotocol=protocol)
    cluster.execs.append(argv)

    rewrite = mount_rewriter(_mounts(cluster, namespace, pod, container))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    env.update({e["name"]: rewrite(str(e.get("value", ""))) for e in container.get("env") or []})
    cwd = rewrite(container.get("workingDir") or "/")
    lock = asyncio.Lock()
    gone = False

    async def send(channel: int, data: bytes) -> None:
        nonlocal gone
        if gone:
            return
        async with lock:
            try:
                await websocket.send_bytes(bytes([channel]) + data)
            except Exception:
                gone = True

    try:
        proc = await asyncio.create_subprocess_exec(
            *[rewrite(arg) for arg in argv],
            stdin=asyncio.subprocess.PIPE if want_stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env,
        )
    except OSError as exc:  # what runc reports for a missing executable
        message = f"OCI runtime exec failed: exec failed: unable to start container process: {exc}"
        await send(3, json.dumps({**exit_status(126), "message": message}).encode())
        await websocket.close()
        return
    cluster._procs.setdefault((namespace, name), set()).add(proc.pid)

    async def pump(reader: asyncio.StreamReader | None, channel: int) -> None:
        assert reader is not None
        while chunk := await reader.read(64 * 1024):
            await send(channel, chunk)

    async def feed() -> None:
        writer = proc.stdin
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("bytes") or (message.get("text") or "").encode()
                if not data:
                    continue
                if data[0] == 0 and writer is not None and not writer.is_closing():
                    with contextlib.suppress(ConnectionError):
                        writer.write(data[1:])
                        await writer.drain()
                elif (
                    data[0] == 255 and protocol == V5 and data[1:2] == b"\0" and writer is not None
                ):
                    writer.close()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if writer is not None and not writer.is_closing():
                writer.close()

    feeder = asyncio.ensure_future(feed())
    await asyncio.gather(pump(proc.stdout, 1), pump(proc.stderr, 2))
    code = await proc.wait()
    cluster._procs.get((namespace, name), set()).discard(proc.pid)
    await send(3, json.dumps(exit_status(code if code >= 0 else 128 - code)).encode())
    feeder.cancel()
    with contextlib.suppress(Exception):
        await websocket.close()
