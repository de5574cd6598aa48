"""Live progress bars for jobs, read from their rows: what `demo`, `submit --wait` and
`jobs watch` show while jobs run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from jobhook.jobs import JobStatus

Row = dict[str, Any]

STATUS_STYLE = {
    "pending": "yellow",
    "processing": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def label(row: Row) -> str:
    return f"{row['job_type']} {str(row['id'])[:8]}"


def status_text(row: Row) -> str:
    style = STATUS_STYLE.get(row["status"], "white")
    attempt = f" #{row['attempt']}" if row["attempt"] > 1 else ""
    # A failed (or retrying) job says why, not what it last reported while it still ran.
    failed = row["status"] in ("failed", "cancelled") or (
        row["status"] == "pending" and row["attempt"] > 0
    )
    message = (row.get("error") if failed else None) or row.get("progress_message") or ""
    return f"[{style}]{row['status']}{attempt}[/] {message}"[:120]


async def watch(
    fetch: Callable[[], Awaitable[list[Row]]],
    console: Console,
    *,
    interval: float = 0.1,
    give_up_after: float | None = None,
    stop_when_finished: bool = True,
) -> list[Row]:
    """Redraw until every job is finished (or `give_up_after` seconds pass); return the rows."""
    deadline = None if give_up_after is None else time.monotonic() + give_up_after
    bars: dict[Any, TaskID] = {}
    rows: list[Row] = []
    with Progress(
        TextColumn("{task.description}", style="bold"),
        BarColumn(bar_width=30),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=False,
    ) as progress:
        while True:
            rows = await fetch()
            for row in rows:
                bar = bars.get(row["id"])
                if bar is None:
                    bar = bars[row["id"]] = progress.add_task(label(row), total=100, status="")
                progress.update(bar, completed=row["progress"], status=status_text(row))
            done = all(JobStatus(row["status"]).finished for row in rows)
            if (stop_when_finished and rows and done) or (
                deadline is not None and time.monotonic() > deadline
            ):
                return rows
            await asyncio.sleep(interval)
