"""`POST /api/v1/servers/generate`: start making an MCP server from API documentation.
The draft is reviewed through `/api/v1/jobs/{id}` (approve, reject)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from gateway.auth.deps import CurrentPrincipal
from gateway.errors import error_responses
from gateway.jobs.schemas import JobAccepted
from gateway.provided import provided
from gateway.servers.generate.schemas import GenerateServer
from gateway.servers.generate.service import ServerGenerator

router = APIRouter(tags=["servers"])


def _generator(request: Request) -> ServerGenerator:
    return provided(request, "server_generator", ServerGenerator)


Generator = Annotated[ServerGenerator, Depends(_generator)]


@router.post(
    "/servers/generate",
    status_code=202,
    response_model=JobAccepted,
    responses=error_responses(409, 413, 503),
)
async def generate_server(
    generator: Generator, principal: CurrentPrincipal, body: GenerateServer
) -> JobAccepted:
    """Make a draft MCP server from an OpenAPI 3.x / Swagger 2.0 document (`openapi`,
    or `url`) or a documentation page (`docs_url`, needs a model): 202 `{job_id}`.
    Follow `/api/v1/jobs/{job_id}/events`; the job ends in `review` with the draft's
    tools; then `POST /api/v1/jobs/{job_id}/approve {"tools"?: [...]}` registers it."""
    job = await generator.submit(principal, body)
    return JobAccepted(job_id=job.id, status=job.status)
