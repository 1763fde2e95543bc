"""REST for pillar 3: ``/sandboxes``. HTTP in and out only; the service does the work."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from gateway.auth.deps import CurrentPrincipal
from gateway.errors import ERROR_RESPONSES, AppError, error_responses
from gateway.jobs.schemas import JobAccepted
from gateway.paging import Limit, Offset
from gateway.provided import provided
from gateway.schemas import Page
from sandboxes.image_job import ImageGenerator, ImageInput
from sandboxes.models import Sandbox, SandboxTemplate
from sandboxes.providers.base import ExecResult, Usage
from sandboxes.schemas import (
    BulkItem,
    BulkRequest,
    BulkResult,
    DirectoryOut,
    EventOut,
    ExecRequestIn,
    ExecResultOut,
    FileEntryOut,
    FileWritten,
    LimitsOut,
    SandboxCreate,
    SandboxOut,
    TemplateIn,
    TemplateOut,
    UsageOut,
)
from sandboxes.service import SandboxService

router = APIRouter(tags=["sandboxes"])

PathQuery = Annotated[
    str, Query(max_length=4096, description="Relative to /workspace, or absolute under it.")
]


def _sandboxes(request: Request) -> SandboxService:
    return provided(request, "sandboxes", SandboxService)


def sandbox_out(service: SandboxService, row: Sandbox, usage: Usage | None = None) -> SandboxOut:
    spec = service.spec(row)
    return SandboxOut(
        id=row.id,
        name=row.name,
        owner_id=row.owner_id,
        team_id=row.team_id,
        template=row.template,
        image=row.image,
        provider=row.provider,
        status=row.status,
        error=row.error,
        limits=LimitsOut(**spec.limits.as_dict()),
        network=row.network,
        session_key=row.session_key,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_activity_at=row.last_activity_at,
        stopped_at=row.stopped_at,
        destroyed_at=row.destroyed_at,
        usage=UsageOut(
            cpu_seconds=usage.cpu_seconds if usage else row.cpu_seconds,
            memory_bytes=usage.memory_bytes if usage else None,
            memory_peak_bytes=usage.memory_peak_bytes if usage else None,
            disk_bytes=usage.disk_bytes if usage else row.disk_bytes,
            processes=usage.processes if usage else None,
            exec_count=service.exec_count(row),
        ),
    )


def result_out(result: ExecResult) -> ExecResultOut:
    return ExecResultOut(
        stdout=result.stdout.decode("utf-8", "replace"),
        stderr=result.stderr.decode("utf-8", "replace"),
        exit_code=result.exit_code,
        duration_ms=round(result.duration_ms, 3),
        timed_out=result.timed_out,
        truncated=result.truncated,
        oom_killed=result.oom_killed,
        error=result.error,
    )


def _template_out(row: SandboxTemplate | None, name: str, builtin: Any = None) -> TemplateOut:
    if row is not None:
        return TemplateOut(
            name=row.name,
            description=row.description,
            image=row.image,
            languages=[str(x) for x in row.languages],
            env=dict(row.env or {}),
            limits=dict(row.limits or {}),
            builtin=False,
        )
    return TemplateOut(
        name=name,
        description=builtin.description,
        image=builtin.image,
        languages=list(builtin.languages),
        env=dict(builtin.env),
        limits={},
        builtin=True,
    )


@router.get("/sandboxes", response_model=Page[SandboxOut], responses=ERROR_RESPONSES)
async def list_sandboxes(
    request: Request,
    principal: CurrentPrincipal,
    all: Annotated[bool, Query(description="Every user's sandboxes (admins).")] = False,
    status: Annotated[
        str | None, Query(pattern="^(creating|running|stopped|error|destroyed)$")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[SandboxOut]:
    service = _sandboxes(request)
    rows, total = await service.list_sandboxes(
        principal, all_users=all, status=status, limit=limit, offset=offset
    )
    return Page[SandboxOut](
        items=[sandbox_out(service, r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.post(
    "/sandboxes",
    response_model=SandboxOut,
    status_code=201,
    responses=error_responses(404, 409, 502, 503),
    summary="Create a sandbox from a template",
)
async def create_sandbox(
    request: Request, principal: CurrentPrincipal, body: SandboxCreate
) -> SandboxOut:
    service = _sandboxes(request)
    return sandbox_out(service, await service.create(principal, body))


@router.post(
    "/sandboxes/bulk",
    response_model=BulkResult,
    responses=ERROR_RESPONSES,
    summary="Stop, resume or destroy many sandboxes (the admin fleet view)",
)
async def bulk_action(
    request: Request, principal: CurrentPrincipal, body: BulkRequest
) -> BulkResult:
    results = await _sandboxes(request).bulk(principal, body.action, body.ids)
    return BulkResult(
        action=body.action,
        results=[
            BulkItem(id=i, ok=error is None, status=row.status if row else None, error=error)
            for i, row, error in results
        ],
    )


@router.get("/sandboxes/templates", response_model=list[TemplateOut], responses=ERROR_RESPONSES)
async def list_templates(request: Request, principal: CurrentPrincipal) -> list[TemplateOut]:
    principal.require("sandboxes:read")
    rows, builtin = await _sandboxes(request).templates.list()
    custom = {r.name: r for r in rows}
    out = [_template_out(None, n, t) for n, t in builtin.items() if n not in custom]
    return out + [_template_out(r, r.name) for r in rows]


@router.put(
    "/sandboxes/templates/{name}",
    response_model=TemplateOut,
    responses=ERROR_RESPONSES,
    summary="Define or replace an admin template",
)
async def put_template(
    request: Request, principal: CurrentPrincipal, name: str, body: TemplateIn
) -> TemplateOut:
    if body.name != name:
        raise AppError("the name in the path and the body differ", code="name_mismatch")
    row = await _sandboxes(request).templates.put(principal, body)
    return _template_out(row, row.name)


@router.delete("/sandboxes/templates/{name}", status_code=204, responses=ERROR_RESPONSES)
async def delete_template(request: Request, principal: CurrentPrincipal, name: str) -> Response:
    await _sandboxes(request).templates.remove(principal, name)
    return Response(status_code=204)


@router.post(
    "/sandboxes/images/generate",
    status_code=202,
    response_model=JobAccepted,
    responses=error_responses(403, 409, 503),
    summary="Build a hardened sandbox image from a package list (a job)",
)
async def generate_image(
    request: Request, principal: CurrentPrincipal, body: ImageInput
) -> JobAccepted:
    """Admins: the packages (or those a model picks for a `description`) become an image
    the `docker` provider runs, registered as the template `name`; follow
    `GET /api/v1/jobs/{job_id}/events` for the build log."""
    job = await provided(request, "image_generator", ImageGenerator).submit(principal, body)
    return JobAccepted(job_id=job.id, status=job.status)


@router.get("/sandboxes/{sandbox_id}", response_model=SandboxOut, responses=ERROR_RESPONSES)
async def get_sandbox(request: Request, principal: CurrentPrincipal, sandbox_id: str) -> SandboxOut:
    service = _sandboxes(request)
    return sandbox_out(service, await service.get(principal, sandbox_id))


@router.delete("/sandboxes/{sandbox_id}", status_code=204, responses=error_responses(502, 503))
async def destroy_sandbox(
    request: Request, principal: CurrentPrincipal, sandbox_id: str
) -> Response:
    await _sandboxes(request).destroy(principal, sandbox_id)
    return Response(status_code=204)


@router.post(
    "/sandboxes/{sandbox_id}/stop",
    response_model=SandboxOut,
    responses=error_responses(409, 502, 503),
)
async def stop_sandbox(
    request: Request, principal: CurrentPrincipal, sandbox_id: str
) -> SandboxOut:
    service = _sandboxes(request)
    return sandbox_out(service, await service.stop(principal, sandbox_id))


@router.post(
    "/sandboxes/{sandbox_id}/resume",
    response_model=SandboxOut,
    responses=error_responses(409, 502, 503),
)
async def resume_sandbox(
    request: Request, principal: CurrentPrincipal, sandbox_id: str
) -> SandboxOut:
    service = _sandboxes(request)
    return sandbox_out(service, await service.resume(principal, sandbox_id))


@router.get(
    "/sandboxes/{sandbox_id}/usage",
    response_model=UsageOut,
    responses=error_responses(502, 503, 504),
)
async def sandbox_usage(request: Request, principal: CurrentPrincipal, sandbox_id: str) -> UsageOut:
    service = _sandboxes(request)
    row, usage = await service.usage(principal, sandbox_id)
    return sandbox_out(service, row, usage).usage


@router.get(
    "/sandboxes/{sandbox_id}/events", response_model=Page[EventOut], responses=ERROR_RESPONSES
)
async def sandbox_events(
    request: Request,
    principal: CurrentPrincipal,
    sandbox_id: str,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[EventOut]:
    rows, total = await _sandboxes(request).events(
        principal, sandbox_id, limit=limit, offset=offset
    )
    return Page[EventOut](
        items=[EventOut.of(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/sandboxes/{sandbox_id}/exec",
    response_model=ExecResultOut,
    responses={**error_responses(409, 502, 503), 200: {"content": {"text/event-stream": {}}}},
    summary="Run a command or code; `stream: true` (or Accept: text/event-stream) streams SSE",
)
async def exec_in_sandbox(
    request: Request, principal: CurrentPrincipal, sandbox_id: str, body: ExecRequestIn
) -> Any:
    service = _sandboxes(request)
    prepared = await service.prepare_exec(principal, sandbox_id, body)
    if body.stream or "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(
            _stream(service, prepared),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return result_out(await service.run_exec(prepared))


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


async def _stream(service: SandboxService, prepared: Any) -> AsyncIterator[bytes]:
    """``stdout``/``stderr`` events as output arrives, then one ``exit`` (or ``error``)."""
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in ("stdout", "stderr")}

    async def sink(stream: str, chunk: bytes) -> None:
        await queue.put((stream, chunk))

    task = asyncio.create_task(service.run_exec(prepared, sink))
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                stream, chunk = getter.result()
                if text := decoders[stream].decode(chunk):
                    yield _event(stream, {"data": text})
                continue
            getter.cancel()
            while not queue.empty():
                stream, chunk = queue.get_nowait()
                if text := decoders[stream].decode(chunk):
                    yield _event(stream, {"data": text})
            break
        try:
            result = task.result()
        except AppError as exc:
            yield _event("error", {"code": exc.code, "message": exc.message})
            return
        yield _event("exit", result_out(result).model_dump(exclude={"stdout", "stderr"}))
    finally:
        if not task.done():  # the client went away: kill the command
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


@router.get(
    "/sandboxes/{sandbox_id}/files",
    responses={
        **error_responses(409, 413, 502, 503, 504),
        200: {"content": {"application/octet-stream": {}}},
    },
    summary="A file's bytes, or a directory's listing (JSON)",
)
async def get_file(
    request: Request, principal: CurrentPrincipal, sandbox_id: str, path: PathQuery = ""
) -> Response:
    service = _sandboxes(request)
    entries = await service.list_files(principal, sandbox_id, path)
    if entries is not None:
        listing = DirectoryOut(
            path=path or "/",
            entries=[FileEntryOut(**e.__dict__) for e in entries],
        )
        return Response(listing.model_dump_json(), media_type="application/json")
    data = await service.read_file(principal, sandbox_id, path)
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"X-Content-Type-Options": "nosniff"},
    )


@router.put(
    "/sandboxes/{sandbox_id}/files",
    response_model=FileWritten,
    responses=error_responses(409, 413, 502, 503, 504),
    # The body is read raw (any bytes): declared here so clients and /docs can send it.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
    summary="Write a file (the request body is its bytes); parent folders are created",
)
async def put_file(
    request: Request, principal: CurrentPrincipal, sandbox_id: str, path: PathQuery
) -> FileWritten:
    data = await request.body()
    rel = await _sandboxes(request).write_file(principal, sandbox_id, path, data)
    return FileWritten(path=rel, size=len(data))


@router.delete(
    "/sandboxes/{sandbox_id}/files",
    status_code=204,
    responses=error_responses(409, 502, 503, 504),
)
async def delete_file(
    request: Request, principal: CurrentPrincipal, sandbox_id: str, path: PathQuery
) -> Response:
    await _sandboxes(request).delete_file(principal, sandbox_id, path)
    return Response(status_code=204)
