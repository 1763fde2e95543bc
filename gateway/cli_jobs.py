"""``mcpgw worker`` (a Celery worker for the gateway's jobs) and ``mcpgw jobs …``
(list, show, watch, cancel, submit on a running gateway: ``--url``/``--key``)."""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

import httpx
import typer

from gateway.cli_client import (
    DEFAULT_URL,
    GatewayClient,
    KeyOption,
    UrlOption,
    json_option,
    print_json,
    print_table,
)

jobs_app = typer.Typer(
    help="Long-running jobs of a running gateway: list, show, watch, cancel, approve, reject."
)


def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            "-c",
            min=1,
            help="Jobs at once [MCPGW_JOBS_WORKER_CONCURRENCY].",
        ),
    ] = None,
    queues: Annotated[
        str | None,
        typer.Option("--queues", "-Q", help="Comma-separated queues (default: every kind's)."),
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery's log level.")] = "INFO",
    embedded_parent: Annotated[
        int | None, typer.Option(hidden=True, help="Exit when this process is gone.")
    ] = None,
) -> None:
    """Run a Celery worker for the gateway's jobs (Redis with MCPGW_REDIS_URL, else the
    embedded SQLite broker in MCPGW_DATA_DIR). Stops warmly on SIGTERM."""
    from gateway.config import ConfigError, load_settings
    from gateway.job_kinds import platform_kinds
    from gateway.jobs.worker import run_worker
    from gateway.observability.logging import configure_logging

    try:
        settings = load_settings()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    configure_logging(settings.log_level, settings.log_format)
    kinds = platform_kinds()
    chosen = [q.strip() for q in queues.split(",") if q.strip()] if queues else kinds.queues()
    run_worker(
        settings,
        kinds,
        concurrency=concurrency or settings.jobs_worker_concurrency,
        queues=chosen,
        loglevel=loglevel,
        parent_pid=embedded_parent,
    )


def _row(job: dict[str, Any]) -> dict[str, Any]:
    progress = job.get("progress")
    error = job.get("error") or {}
    return {
        "id": job["id"],
        "kind": job["kind"],
        "status": job["status"],
        "progress": f"{progress:.0%}" if progress is not None else None,
        "created": job["created_at"][:19],
        "input": job.get("input_summary"),
        "error": (error.get("message") or "")[:60] or None,
    }


@jobs_app.command("list")
def list_jobs(
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only jobs of this kind.")] = None,
    all_users: Annotated[bool, typer.Option("--all", help="Everybody's jobs (admin).")] = False,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw page.")] = False,
) -> None:
    """Your jobs, newest first."""
    params: dict[str, Any] = {"limit": limit, "all": all_users}
    params.update({k: v for k, v in {"status": status, "kind": kind}.items() if v})
    page = GatewayClient(url, key).request("GET", "/api/v1/jobs", params=params)
    if as_json:
        print_json(page)
        return
    rows = [_row(j) for j in page["items"]]
    print_table(rows, list(rows[0]) if rows else ["id"])


@jobs_app.command("show")
def show(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
) -> None:
    """One job as JSON (status, progress, result or error)."""
    print_json(GatewayClient(url, key).request("GET", f"/api/v1/jobs/{job_id}"))


@jobs_app.command("cancel")
def cancel(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
) -> None:
    """Cancel a job; prints its status afterwards."""
    job = GatewayClient(url, key).request("POST", f"/api/v1/jobs/{job_id}/cancel")
    typer.echo(f"{job['id']} {job['status']}")


@jobs_app.command("submit")
def submit(
    kind: Annotated[str, typer.Argument(help="A built-in kind: noop, echo, sleep.")],
    input_json: Annotated[str, typer.Option("--input", help="The input, JSON.")] = "{}",
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
) -> None:
    """Start a job of a built-in kind; prints its id (then `mcpgw jobs watch ID`)."""
    body = {"kind": kind, "input": json_option(input_json, "--input")}
    typer.echo(GatewayClient(url, key).request("POST", "/api/v1/jobs", json=body)["job_id"])


@jobs_app.command("watch")
def watch(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print each event as JSON.")] = False,
) -> None:
    """Follow a job's events to its end, with a progress bar; exit 0 when it succeeded
    (or waits for review), 1 when it failed or was cancelled."""
    watch_job(GatewayClient(url, key), job_id, as_json=as_json)


def watch_job(client: GatewayClient, job_id: str, *, as_json: bool = False) -> NoReturn:
    """Follow ``job_id`` to its end and exit as ``mcpgw jobs watch`` does (for every
    command that starts a job and offers ``--watch``)."""
    from gateway.cli_watch import follow

    try:
        with client.http.stream(
            "GET", f"/api/v1/jobs/{job_id}/events", timeout=httpx.Timeout(30, read=None)
        ) as response:
            if response.status_code >= 400:
                response.read()
                typer.echo(f"error ({response.status_code}) {response.text[:500]}", err=True)
                raise typer.Exit(1)
            outcome = follow(response.iter_lines(), as_json=as_json)
    except httpx.HTTPError as exc:
        typer.echo(f"error: the event stream broke: {exc}", err=True)
        raise typer.Exit(3) from exc
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    raise typer.Exit(0 if outcome == "result" else 1)


@jobs_app.command("approve")
def approve(
    job_id: Annotated[str, typer.Argument(help="A job waiting for review.")],
    tools: Annotated[
        str | None, typer.Option(help="Comma-separated tools to keep (default: the draft's).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Register under this name.")] = None,
    base_url: Annotated[str | None, typer.Option(help="Call the API here.")] = None,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
) -> None:
    """Approve a draft (a generated server is registered with the chosen tools; a
    generated skill is stored with its links)."""
    body: dict[str, Any] = {"name": name, "base_url": base_url}
    if tools is not None:
        body["tools"] = [t.strip() for t in tools.split(",") if t.strip()]
    body = {k: v for k, v in body.items() if v is not None}
    job = GatewayClient(url, key).request("POST", f"/api/v1/jobs/{job_id}/approve", json=body)
    print_json(job["result"].get("approved"))


@jobs_app.command("reject")
def reject(
    job_id: Annotated[str, typer.Argument(help="A job waiting for review.")],
    feedback: Annotated[
        str | None, typer.Option(help="What to change (a model-made draft is made again).")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
) -> None:
    """Turn a draft down; prints the id of the job that makes it again, if any."""
    body = {"feedback": feedback} if feedback else {}
    job = GatewayClient(url, key).request("POST", f"/api/v1/jobs/{job_id}/reject", json=body)
    again = (job.get("result") or {}).get("rejected", {}).get("next_job_id")
    typer.echo(f"{job['id']} {job['status']}" + (f"; again as {again}" if again else ""))
