"""The `jobhook` command: the dev stack, the demo, and a client's view of its jobs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from uuid import UUID

import psycopg
import typer
import uvloop
from rich.console import Console
from rich.table import Column, Table

from jobhook import logs
from jobhook.cli import typescript
from jobhook.cli.watch import watch
from jobhook.client import Caller, CannotCancel, EnqueueRefused, JobNotFound, JobsClient
from jobhook.config import DEMO_USER_ID, get_settings
from jobhook.devstack.stack import APP_PORT, DB_PORT, DevStack
from jobhook.devstack.tokens import user_token
from jobhook.jobs import JobStatus
from jobhook.store import new_pool, queries

app = typer.Typer(
    help="Background jobs as Postgres rows on Supabase, run on Modal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
jobs_app = typer.Typer(help="Your jobs, as the database shows them to you (RLS applies).")
types_app = typer.Typer(help="The job type catalogue in jobhook.job_types.")
app.add_typer(jobs_app, name="jobs")
app.add_typer(types_app, name="types")

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

DbPortOption = Annotated[int, typer.Option(help="database port")]
AppPortOption = Annotated[int, typer.Option(help="app port")]
DataDirOption = Annotated[
    Path | None, typer.Option(help="where the database lives (default: .jobhook/)")
]
UserOption = Annotated[
    str, typer.Option("--user", help="act as this user id (default: the demo user)")
]


def _run(main: Awaitable[T]) -> T:
    try:
        # uvloop: the dev stack, the demo and the benchmark spend their time in the event loop.
        return uvloop.run(main)  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        err.print(f"[red]cannot reach the database[/]: {exc}")
        err.print("is the dev stack running? start it with [bold]make dev[/] (or set DATABASE_URL)")
        raise typer.Exit(2) from None


@contextlib.asynccontextmanager
async def _client() -> AsyncIterator[JobsClient]:
    pool = new_pool(get_settings().database_url, max_size=4)
    await pool.open(wait=True, timeout=5)
    try:
        yield JobsClient(pool)
    finally:
        await pool.close()


async def _until_signal(main: Awaitable[T]) -> T | None:
    """Run until Ctrl-C or SIGTERM, then return (None) so every `finally` can clean up."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.ensure_future(main)
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


# -- the stack --------------------------------------------------------------------------------


@app.command()
def dev(
    db_port: DbPortOption = DB_PORT,
    app_port: AppPortOption = APP_PORT,
    data_dir: DataDirOption = None,
) -> None:
    """Run the dev stack (database, pg_net delivery worker, app, local executor) until Ctrl-C."""
    logs.configure(json=False)
    stack = DevStack(db_port=db_port, app_port=app_port, data_dir=data_dir)

    async def main() -> None:
        async with stack.running() as served:
            console.print("[green]jobhook dev stack is up[/]  (Ctrl-C stops everything)")
            console.print(f"  database  {stack.cluster.url}")
            console.print(f"  app       {served.url}  (docs at {served.url}/docs)")
            console.print(f"  webhook   {stack.webhook_url}")
            console.print(f"  demo user {DEMO_USER_ID}  (jobhook token --user {DEMO_USER_ID})")
            await asyncio.Event().wait()

    _run(_until_signal(main()))
    console.print("stopped")


@app.command()
def demo(
    db_port: DbPortOption = DB_PORT,
    app_port: AppPortOption = APP_PORT,
    data_dir: DataDirOption = None,
) -> None:
    """Start the stack, run sample jobs end to end with live progress, print results, stop."""
    from jobhook.cli.demo import run_demo

    logs.configure(level="WARNING", json=False)
    stack = DevStack(db_port=db_port, app_port=app_port, data_dir=data_dir)
    raise typer.Exit(_run(run_demo(stack, console)))


@app.command()
def token(
    user: Annotated[str, typer.Option("--user", help="the user id (sub claim)")],
    expires_in: Annotated[int, typer.Option(help="seconds until it expires")] = 3600,
) -> None:
    """Print a JWT for the dev stack (the supabase CLI's local secret and issuer)."""
    try:
        UUID(user)
    except ValueError:
        err.print(f"[red]--user must be a UUID[/], got {user!r}")
        raise typer.Exit(2) from None
    print(user_token(user, expires_in=expires_in))


@app.command()
def bench(
    jobs: Annotated[int, typer.Option(min=10, help="jobs per throughput run")] = 10_000,
    latency_jobs: Annotated[int, typer.Option(min=10, help="single inserts for latency")] = 500,
    rate: Annotated[float, typer.Option(min=1, help="single inserts per second")] = 50,
    peer: Annotated[bool, typer.Option(help="also measure pgqueuer in the same run")] = True,
    sweep_rows: Annotated[
        int, typer.Option(min=0, help="finished jobs in the table when timing the sweep (0: skip)")
    ] = 300_000,
    concurrent: Annotated[
        bool, typer.Option(help="also run many users inserting single rows at once")
    ] = True,
    producers: Annotated[int, typer.Option(min=1, help="concurrent producers, one user each")] = 20,
    offered_rate: Annotated[float, typer.Option(min=1, help="their jobs per second, all")] = 2000,
    offered_seconds: Annotated[float, typer.Option(min=1, help="for how long")] = 10,
    net_latency_ms: Annotated[
        int, typer.Option(min=0, help="added to each doorbell request, as from hosted to Modal")
    ] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Latency, throughput and WAL per job on a throwaway cluster, beside pgqueuer."""
    try:
        from bench import report
        from bench.run import Scenario, run
    except ImportError as exc:
        err.print(f"[red]the benchmark runs from a checkout with the dev dependencies[/]: {exc}")
        raise typer.Exit(2) from None
    logs.configure(level="WARNING", json=False)
    scenario = (
        Scenario(producers, offered_rate, offered_seconds, net_latency_ms) if concurrent else None
    )
    result = _run(_until_signal(run(jobs, latency_jobs, rate, peer, sweep_rows, scenario)))
    if result is None:
        err.print("interrupted; the benchmark's cluster is removed")
        raise typer.Exit(130)
    if as_json:
        print(json.dumps(result))
    else:
        report.render(result, console)


@app.command()
def sweep() -> None:
    """Run one pass of the sweep now and print what it did."""

    async def main() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(
            get_settings().database_url, autocommit=True
        ) as conn:
            cursor = await conn.execute(queries()["sweep"])
            row = await cursor.fetchone()
            return dict(row[0]) if row else {}

    console.print_json(json.dumps(_run(main())))


# -- a client's view --------------------------------------------------------------------------


@app.command()
def submit(
    job_type: Annotated[str, typer.Argument(help="the job type, e.g. sample_task")],
    params: Annotated[str, typer.Option("--params", help="the parameters, a JSON object")] = "{}",
    wait: Annotated[bool, typer.Option("--wait", help="show progress until it finishes")] = False,
    run_at: Annotated[
        datetime | None, typer.Option(help="start no earlier than this time (ISO 8601)")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="a retried submit returns the same job")
    ] = None,
    user: UserOption = DEMO_USER_ID,
) -> None:
    """Enqueue a job as a user, as supabase-js would insert it."""
    try:
        payload = json.loads(params)
    except json.JSONDecodeError as exc:
        err.print(f"[red]--params is not JSON[/]: {exc}")
        raise typer.Exit(2) from None
    caller = Caller.user(user)

    async def main() -> int:
        async with _client() as client:
            try:
                row, created = await client.enqueue(
                    caller, job_type, payload, run_at=run_at, idempotency_key=idempotency_key
                )
            except EnqueueRefused as exc:
                err.print(f"[red]refused[/]: {exc}" + (f"\n  hint: {exc.hint}" if exc.hint else ""))
                return 1
            console.print(f"{'submitted' if created else 'already submitted'} {row['id']}")
            if not wait:
                return 0

            async def fetch() -> list[dict[str, Any]]:
                return [await client.get(caller, row["id"])]

            [final] = await watch(fetch, console)
            _print_outcome(final)
            return 0 if final["status"] == JobStatus.COMPLETED else 1

    raise typer.Exit(_run(main()))


@jobs_app.command("list")
def list_jobs(
    status: Annotated[JobStatus | None, typer.Option(help="only jobs in this status")] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="only jobs of this type")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    user: UserOption = DEMO_USER_ID,
) -> None:
    """Your jobs, newest first."""

    async def main() -> None:
        async with _client() as client:
            page = await client.list(
                Caller.user(user), status=status, job_type=job_type, limit=limit
            )
        table = Table(
            Column("id", no_wrap=True),
            "type",
            "status",
            Column("progress", justify="right"),
            Column("attempt", justify="right"),
            Column("created", no_wrap=True),
            Column("error", overflow="ellipsis", no_wrap=True),
        )
        for row in page.jobs:
            table.add_row(
                str(row["id"]),
                row["job_type"],
                row["status"],
                f"{row['progress']}%",
                str(row["attempt"]),
                row["created_at"].strftime("%Y-%m-%d %H:%M:%S"),
                (row["error"] or "")[:60],
            )
        console.print(table)
        console.print(f"{len(page.jobs)} of {page.total}")

    _run(main())


@jobs_app.command("show")
def show_job(job_id: UUID, user: UserOption = DEMO_USER_ID) -> None:
    """One job, every column."""

    async def main() -> int:
        async with _client() as client:
            try:
                row = await client.get(Caller.user(user), job_id)
            except JobNotFound:
                err.print(f"[red]no job {job_id}[/] (or it is not yours)")
                return 1
        console.print_json(json.dumps(row, default=str))
        return 0

    raise typer.Exit(_run(main()))


@jobs_app.command("cancel")
def cancel_job(job_id: UUID, user: UserOption = DEMO_USER_ID) -> None:
    """Cancel a job: a pending one at once, a running one at its next heartbeat."""

    async def main() -> int:
        async with _client() as client:
            try:
                row = await client.cancel(Caller.user(user), job_id)
            except JobNotFound:
                err.print(f"[red]no job {job_id}[/] (or it is not yours)")
                return 1
            except CannotCancel as exc:
                err.print(f"[red]cannot cancel[/]: {exc}")
                return 1
        console.print(
            f"{job_id}: {row['status']} (cancel requested at {row['cancel_requested_at']})"
        )
        return 0

    raise typer.Exit(_run(main()))


@jobs_app.command("watch")
def watch_jobs(
    job_id: Annotated[
        UUID | None, typer.Argument(help="one job; default: your unfinished jobs")
    ] = None,
    user: UserOption = DEMO_USER_ID,
) -> None:
    """Live progress of a job, or of all your unfinished jobs, until they finish."""
    caller = Caller.user(user)

    async def main() -> None:
        async with _client() as client:
            if job_id is not None:
                await client.get(caller, job_id)
            watched: set[Any] = set()

            async def fetch() -> list[dict[str, Any]]:
                if job_id is not None:
                    return [await client.get(caller, job_id)]
                for status in (JobStatus.PENDING, JobStatus.PROCESSING):
                    page = await client.list(caller, status=status, limit=100)
                    watched.update(row["id"] for row in page.jobs)
                return [await client.get(caller, i) for i in sorted(watched, key=str)]

            await watch(fetch, console)

    try:
        _run(main())
    except JobNotFound:
        err.print(f"[red]no job {job_id}[/] (or it is not yours)")
        raise typer.Exit(1) from None


# -- job types --------------------------------------------------------------------------------


@types_app.command("sync")
def sync_types() -> None:
    """Write the handlers' job types to jobhook.job_types; disable types no live deployment
    serves any more."""
    import handlers
    from jobhook.registry import registry

    handlers.load_all()
    with psycopg.connect(get_settings().database_url, autocommit=True) as conn:
        disabled = registry.sync(conn)
    for job_type in registry:
        console.print(f"[green]synced[/] {job_type.name} (tier {job_type.tier})")
    for name in disabled:
        console.print(f"[yellow]disabled[/] {name} (no live deployment serves it)")


types_app.command("ts")(typescript.types_ts)


@types_app.command("list")
def list_types() -> None:
    """The catalogue as the database has it."""
    with psycopg.connect(get_settings().database_url) as conn:
        rows = conn.execute(queries()["list_job_types"]).fetchall()
    table = Table("name", "enabled", "tier", "max attempts", "timeout (s)")
    for row in rows:
        table.add_row(*(str(value) for value in row))
    console.print(table)


def _print_outcome(row: dict[str, Any]) -> None:
    if row["status"] == JobStatus.COMPLETED:
        console.print_json(json.dumps(row["result"]))
    else:
        err.print(f"[red]{row['status']}[/]: {row['error']}")


from jobhook.cli import doctor  # noqa: E402, F401  (defines `jobhook doctor` on app)

if __name__ == "__main__":
    app()
