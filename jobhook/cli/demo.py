"""`jobhook demo`: the README's first command, end to end on a fresh machine.

Starts the dev stack (or uses the one `make dev` is running), submits sample jobs as the demo
user the way supabase-js would insert them, shows their progress live, prints their results and
how long each waited from insert to start, then stops what it started.
"""

from __future__ import annotations

import contextlib
import json
import statistics
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from jobhook.cli.watch import watch
from jobhook.client import Caller, JobsClient
from jobhook.config import DEMO_USER_ID
from jobhook.devstack.stack import DevStack, recorded
from jobhook.store import new_pool

Row = dict[str, Any]
BULK = 20


@contextlib.asynccontextmanager
async def _stack(stack: DevStack, console: Console) -> AsyncIterator[str]:
    """The database URL of a running stack: this checkout's, already up, or one started here.

    Only the stack recorded in this data dir is used: whatever else holds the ports (a
    `supabase start`, another checkout's stack) is someone else's, and the start fails on the
    taken port instead of sending them jobs."""
    running = recorded(stack.root)
    if running is not None:
        console.print(f"using the dev stack that is already running ({running['app_url']})")
        yield running["database_url"]
        return
    console.print("starting the dev stack (database, delivery worker, app)...")
    async with stack.running():
        yield stack.cluster.url


async def run_demo(stack: DevStack, console: Console, log_file: Path | None = None) -> int:
    async with _stack(stack, console) as database_url:
        pool = new_pool(database_url, max_size=4)
        await pool.open(wait=True, timeout=30)
        try:
            code = await _run(JobsClient(pool), console)
        finally:
            await pool.close()
    _next_steps(console, log_file)
    return code


def _next_steps(console: Console, log_file: Path | None) -> None:
    steps = [
        ("make dev", "keep the stack running (Ctrl-C stops it)"),
        ("uv run jobhook submit sample_task --wait", "one job of your own, live"),
        ("uv run jobhook jobs list", "your jobs; `jobs show ID` shows one"),
        ("docs/conventions.md", "add a job type of your own"),
        ("docs/quickstart.md", "from here to a deployed project"),
    ]
    console.print("\n[bold]next[/]")
    for command, what in steps:
        console.print(f"  {command:42} {what}", highlight=False)
    if log_file is not None:
        console.print(f"  the runner's log: {log_file}; `jobhook reset` drops the dev data")


async def _run(client: JobsClient, console: Console) -> int:
    caller = Caller.user(DEMO_USER_ID)
    console.rule("[bold]jobhook demo")
    console.print(f"acting as the demo user {DEMO_USER_ID}, as supabase-js would\n")
    ids = []
    row, _ = await client.enqueue(
        caller, "sample_task", {"steps": 5, "step_seconds": 0.3, "result": {"hello": "world"}}
    )
    ids.append(row["id"])
    row, _ = await client.enqueue(
        caller, "sample_task", {"steps": 3, "step_seconds": 0.2, "fail_times": 1}
    )
    ids.append(row["id"])
    row, _ = await client.enqueue(
        caller,
        "sample_task",
        {"steps": 2, "step_seconds": 0.2, "result": "delayed"},
        run_at=datetime.now().astimezone() + timedelta(seconds=2),
    )
    ids.append(row["id"])
    bulk = await client.enqueue_many(
        caller, "sample_task", [{"steps": 2, "step_seconds": 0.1, "result": n} for n in range(BULK)]
    )
    ids.extend(job["id"] for job in bulk)
    console.print(
        "submitted: one job with progress, one that fails once and retries, one delayed by 2 s, "
        f"and a bulk batch of {BULK} in one insert\n"
    )

    async def fetch() -> list[Row]:
        page = await client.list(caller, limit=100)
        by_id = {row["id"]: row for row in page.jobs}
        return [by_id[job_id] for job_id in ids if job_id in by_id]

    rows = await watch(fetch, console, give_up_after=60)
    _report(rows, console)
    return 0 if all(row["status"] == "completed" for row in rows) else 1


def _report(rows: list[Row], console: Console) -> None:
    table = Table("job", "status", "attempts", "result / error", "insert → start")
    for row in rows[:4]:
        shown = json.dumps(row["result"]) if row["status"] == "completed" else row["error"]
        table.add_row(
            str(row["id"])[:8],
            row["status"],
            str(row["attempt"]),
            str(shown)[:60],
            _ms(_latency(row)),
        )
    console.print(table)

    done = [row for row in rows if row["status"] == "completed"]
    console.print(
        f"{len(done)} of {len(rows)} jobs completed ({len(rows) - 4} more in the bulk batch)"
    )
    first_try = [
        _latency(row) for row in rows if row["attempt"] == 1 and row["run_at"] <= row["created_at"]
    ]
    latencies = sorted(ms for ms in first_try if ms is not None)
    if latencies:
        console.print(
            f"insert-to-start latency over {len(latencies)} jobs: "
            f"median {statistics.median(latencies):.1f} ms, max {latencies[-1]:.1f} ms"
        )
    retried = next((row for row in rows if row["attempt"] > 1), None)
    if retried:
        console.print(f"the retried job kept its first error: {retried['errors'][0]['message']!r}")


def _latency(row: Row) -> float | None:
    """Milliseconds from the insert (or run_at, if later) to the start of the last attempt."""
    if row["started_at"] is None:
        return None
    due = max(row["created_at"], row["run_at"])
    waited: timedelta = row["started_at"] - due
    return waited.total_seconds() * 1000


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"
