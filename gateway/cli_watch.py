"""Rendering a job's Server-Sent Events in the terminal (``mcpgw jobs watch``): a
progress bar (rich, which typer brings), log lines above it, the outcome at the end."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

TERMINAL = ("result", "error", "cancelled")


@dataclass
class SseEvent:
    """One parsed event of a ``text/event-stream``."""

    event: str = "message"
    id: str | None = None
    data_lines: list[str] = field(default_factory=list)

    @property
    def data(self) -> Any:
        text = "\n".join(self.data_lines)
        try:
            return json.loads(text) if text else None
        except ValueError:
            return text


def parse_sse(lines: Iterable[str]) -> Iterator[SseEvent]:
    """Events from the stream's lines (comments and pings skipped)."""
    current = SseEvent()
    for line in lines:
        if not line:
            if current.data_lines or current.id is not None:
                yield current
            current = SseEvent()
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            current.event = value
        elif name == "data":
            current.data_lines.append(value)
        elif name == "id":
            current.id = value


def follow(lines: Iterable[str], *, as_json: bool = False) -> str | None:
    """Show the events until the terminal one; its type (None: the stream ended first)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=False, highlight=False)
    if as_json:
        for event in parse_sse(lines):
            console.print_json(
                json.dumps({"id": event.id, "event": event.event, "data": event.data})
            )
            if event.event in TERMINAL:
                return event.event
        return None
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("pending", total=1.0)
        streamed = 0  # characters of model output so far (shown as a count, not echoed)
        for event in parse_sse(lines):
            data = event.data if isinstance(event.data, dict) else {}
            if event.event in ("token", "thinking"):
                streamed += len(str(data.get("text", "")))
                bar.update(task, description=f"the model is writing ({streamed} characters)")
            elif event.event == "status":
                bar.update(task, description=str(data.get("status", "")))
            elif event.event == "progress":
                text = data.get("message") or "running"
                bar.update(task, completed=float(data.get("progress") or 0), description=text)
            elif event.event == "log":
                bar.console.print(
                    f"[dim]{data.get('level', 'info')}[/dim] {data.get('message', '')}"
                )
            elif event.event in ("result", "error", "cancelled"):
                if event.event == "result":
                    bar.update(task, completed=1.0, description=str(data.get("status")))
                else:
                    bar.update(task, description=event.event)
                break
            else:
                bar.console.print(f"{event.event}: {json.dumps(event.data)[:200]}")
        else:
            return None
    _outcome(console, event.event, data)
    return event.event


def _outcome(console: Any, kind: str, data: dict[str, Any]) -> None:
    if kind == "result" and data.get("status") == "review":
        _draft(console, data.get("result") or {})
    elif kind == "result":
        console.print_json(json.dumps(data.get("result")))
    elif kind == "error":
        error = data.get("error") or {}
        console.print(f"[red]failed[/red] {error.get('code')}: {error.get('message')}")
    else:
        console.print("[yellow]cancelled[/yellow]")


def _draft(console: Any, draft: dict[str, Any]) -> None:
    """A draft waiting for review, in short: what it would register and its tools."""
    if "skill" in draft:
        _skill_draft(console, draft)
        return
    server = draft.get("server") or {}
    console.print(
        f"draft [bold]{server.get('name')}[/bold] → {server.get('base_url') or '(no base URL)'}"
    )
    for tool in draft.get("tools") or []:
        mark = (
            "read-only"
            if tool.get("read_only")
            else ("destructive" if tool.get("destructive") else "writes")
        )
        test = tool.get("test")
        tested = "" if test is None else (" [green]test ok[/green]" if test.get("ok") else
                                          " [red]test failed[/red]")  # fmt: skip
        console.print(f"  {tool.get('name')}  {tool.get('method')} {tool.get('path')}  "
                      f"[dim]{mark}[/dim]{tested}")  # fmt: skip
    for warning in draft.get("warnings") or []:
        console.print(f"[yellow]warning[/yellow] {warning}")
    console.print("review: mcpgw jobs approve ID [--tools a,b] | mcpgw jobs reject ID")


def _skill_draft(console: Any, draft: dict[str, Any]) -> None:
    """A generated skill waiting for review: its files, the tools it names, its scripts."""
    skill = draft.get("skill") or {}
    console.print(f"draft skill [bold]{skill.get('name')}[/bold]: {skill.get('description')}")
    for path in sorted(draft.get("files") or {}):
        console.print(f"  {path}")
    console.print(f"tools: {', '.join(draft.get('tools') or []) or '(none)'}")
    for run in draft.get("scripts") or []:
        verdict = "[green]ran ok[/green]" if run.get("ok") else "[red]failed[/red]"
        console.print(f"  {run.get('path')} {verdict} (exit {run.get('exit_code')})")
    console.print("review: mcpgw jobs approve ID | mcpgw jobs reject ID [--feedback TEXT]")
