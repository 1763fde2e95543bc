"""`POST /api/v1/skills/generate`: start making a skill from an intent. The draft is
reviewed through `/api/v1/jobs/{id}` (approve, reject)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from gateway.auth.deps import CurrentPrincipal
from gateway.errors import error_responses
from gateway.jobs.schemas import JobAccepted
from gateway.provided import provided
from skills.generate.schemas import GenerateSkill
from skills.generate.service import SkillGenerator

router = APIRouter(tags=["skills"])


def _generator(request: Request) -> SkillGenerator:
    return provided(request, "skill_generator", SkillGenerator)


Generator = Annotated[SkillGenerator, Depends(_generator)]


@router.post(
    "/skills/generate",
    status_code=202,
    response_model=JobAccepted,
    responses=error_responses(409, 503),
)
async def generate_skill(
    generator: Generator, principal: CurrentPrincipal, body: GenerateSkill
) -> JobAccepted:
    """Make a draft skill from an `intent` (10-2,000 characters) teaching the tools of
    the linked `servers`: from a template, or written by the configured model (`model`).
    202 `{job_id}`; follow `/api/v1/jobs/{job_id}/events`; the job ends in `review`;
    `POST /api/v1/jobs/{job_id}/approve` stores it."""
    job = await generator.submit(principal, body)
    return JobAccepted(job_id=job.id, status=job.status)
