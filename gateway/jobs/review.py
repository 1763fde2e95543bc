"""Jobs that end in ``review``: a person approves the draft (the kind's reviewer acts
on it, and the job becomes ``succeeded``) or rejects it (``cancelled`` by
``reviewer``; with feedback, a kind may regenerate: a new job of the same kind).

Each settles the job by one more terminal event after the ``result`` that put it in
review, guarded by the status, so of two reviewers racing exactly one wins (the
loser's action is reverted). Someone else's job is 404, as everywhere in jobs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.errors import Conflict
from gateway.jobs.kinds import Reviewer
from gateway.jobs.models import Job

if TYPE_CHECKING:
    from gateway.auth.principal import Principal
    from gateway.jobs.service import JobService


class NotInReview(Conflict):
    """Approve or reject of a job that is not waiting for review."""

    code = "job_not_in_review"


class JobReviews:
    """Approve and reject for every kind with a registered :class:`Reviewer`."""

    def __init__(self, jobs: JobService) -> None:
        self.jobs = jobs
        self.reviewers: dict[str, Reviewer] = {}

    def add(self, kind: str, reviewer: Reviewer) -> None:
        """``reviewer`` settles the drafts of jobs of ``kind``."""
        self.reviewers[kind] = reviewer

    async def _in_review(self, principal: Principal, job_id: str) -> tuple[Job, Reviewer]:
        job = await self.jobs.get(principal, job_id)
        reviewer = self.reviewers.get(job.kind)
        if job.status != "review" or reviewer is None:
            raise NotInReview(
                f"job {job_id} is {job.status}, not waiting for review", status=job.status
            )
        return job, reviewer

    async def approve(self, principal: Principal, job_id: str, choice: dict[str, Any]) -> Job:
        """Approve the draft of ``job_id`` (``choice``: what the kind lets a reviewer
        pick, e.g. ``tools``); the job, now ``succeeded``."""
        job, reviewer = await self._in_review(principal, job_id)
        outcome = await reviewer.approve(principal, job, choice)
        result = {**(job.result or {}), "approved": outcome}
        try:
            settled = await self.jobs.writer.finish(
                job_id, "succeeded", {"result": {"approved": outcome}},
                only_if=(Job.status == "review",), result=result,
            )  # fmt: skip
        except Exception:  # the job still waits: nothing may stay half approved
            await reviewer.revert(principal, job, outcome)
            raise
        if settled is None:  # rejected or approved by someone else meanwhile
            await reviewer.revert(principal, job, outcome)
            raise NotInReview(f"job {job_id} was settled by someone else meanwhile")
        self.jobs.hub.wake()
        self._audit("job.approve", principal, job_id, outcome)
        return await self.jobs.get(principal, job_id)

    async def reject(self, principal: Principal, job_id: str, feedback: str | None) -> Job:
        """Turn the draft of ``job_id`` down; with ``feedback``, its kind may start a new
        job that regenerates it (its id is in the result: ``rejected.next_job_id``)."""
        job, reviewer = await self._in_review(principal, job_id)
        again = await reviewer.reject(principal, job, feedback)
        details: dict[str, Any] = {"feedback": feedback} if feedback else {}
        if again is not None:
            follow_up = await self.jobs.submit(principal, job.kind, again)
            details["next_job_id"] = follow_up.id
        result = {**(job.result or {}), "rejected": details}
        settled = await self.jobs.writer.finish(
            job_id, "cancelled", {"by": "reviewer", **details},
            only_if=(Job.status == "review",), result=result,
        )  # fmt: skip
        if settled is None:
            raise NotInReview(f"job {job_id} was settled by someone else meanwhile")
        self.jobs.hub.wake()
        self._audit("job.reject", principal, job_id, details)
        return await self.jobs.get(principal, job_id)

    def _audit(self, action: str, principal: Principal, job_id: str, new: dict[str, Any]) -> None:
        if self.jobs.audit is not None:
            self.jobs.audit.change(action, principal, job_id, new=new)
