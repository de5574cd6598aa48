"""The `jobhook` command: the dev stack, the demo, and a client's view of its jobs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from uuid import UUID

import psycopg
import typer
import uvloop
from rich.console import Console
from rich.table import Table
from typer._click import exceptions as click_errors  # typer's own copy of click

from jobhook import logs
from jobhook.cli import listing, target, typescript
from jobhook.cli.failures import CliError, explain
from jobhook.cli.watch import watch
from jobhook.client import Caller, CannotCancel, EnqueueRefused, JobNotFound, JobsClient
from jobhook.config import DEMO_USER_ID, LOCAL_JWT_SECRET, Settings
from jobhook.devstack.cluster import Cluster, server_reachable
from jobhook.devstack.stack import APP_PORT, DB_PORT, DevStack, recorded
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
err = Console(stderr=True, soft_wrap=True, highlight=False)
T = TypeVar("T")


class _State:
    debug = False
    database_flag: str | None = None
    database: target.Target | None = None


state = _State()


def _uuid(value: str) -> str:
    try:
        return str(UUID(value))
    except ValueError:
        raise typer.BadParameter(
            f"must be a user id (a UUID such as {DEMO_USER_ID}), got {value!r}"
        ) from None


DbPortOption = Annotated[int, typer.Option(help="database port (make dev DB_PORT=...)")]
AppPortOption = Annotated[int, typer.Option(help="app port (make dev APP_PORT=...)")]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        envvar="JOBHOOK_DATA_DIR", help="where the dev stack's data lives (default: .jobhook/)"
    ),
]
UserOption = Annotated[
    str,
    typer.Option("--user", callback=_uuid, help="act as this user id (default: the demo user)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="show the traceback of a failure")] = False,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="the database the client verbs use (before DATABASE_URL, then the running "
            "dev stack, then the local default)",
        ),
    ] = None,
) -> None:
    state.debug = debug
    state.database_flag = database_url


def _database() -> str:
    """The database of a client verb, said on stderr when it is not the local default."""
    chosen = target.resolve(state.database_flag)
    state.database = chosen
    if not chosen.is_default:
        err.print(f"database: {chosen.describe()}")
    return chosen.url


def _run(main: Awaitable[T]) -> T:
    # uvloop: the dev stack, the demo and the benchmark spend their time in the event loop.
    return uvloop.run(main)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def _client() -> AsyncIterator[JobsClient]:
    url = _database()
    # The pool would only time out; one direct attempt says why it cannot connect.
    async with await psycopg.AsyncConnection.connect(url, connect_timeout=5):
        pass
    pool = new_pool(url, max_size=4)
    await pool.open(wait=True, timeout=5)
    try:
        yield JobsClient(pool)
    finally:
        await pool.close()


def _check_environment() -> None:
    """The settings the dev stack's app will read, checked before anything starts."""
    Settings(SUPABASE_URL=None, SUPABASE_JWT_SECRET=LOCAL_JWT_SECRET)


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
    _check_environment()
    logs.configure(json=False)
    stack = DevStack(db_port=db_port, app_port=app_port, data_dir=data_dir)

    async def main() -> None:
        async with stack.running() as served:
            console.print("[green]jobhook dev stack is up[/]  (Ctrl-C stops everything)")
            console.print(f"  database  {stack.cluster.url}")
            console.print(f"  superuser {stack.cluster.admin_url}")
            console.print(f"  app       {served.url}  (docs at {served.url}/docs)")
            console.print(f"  webhook   {stack.webhook_url}")
            console.print(f"  demo user {DEMO_USER_ID}  (jobhook token --user {DEMO_USER_ID})")
            console.print(f"  recorded  {stack.record_path}  (submit, jobs, types, sweep use it)")
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

    _check_environment()
    stack = DevStack(db_port=db_port, app_port=app_port, data_dir=data_dir)
    if recorded(stack.root) is None:
        stack.check_ports()
    # The runner's warnings (the planned failure among them) go to a file, not into the bars.
    stack.root.mkdir(parents=True, exist_ok=True)
    log_file = stack.root / "demo.log"
    with log_file.open("a") as log_stream:
        logs.configure(level="WARNING", json=False, stream=log_stream)
        raise typer.Exit(_run(run_demo(stack, console, log_file)))


@app.command()
def reset(
    data_dir: DataDirOption = None,
    db_port: DbPortOption = DB_PORT,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False,
) -> None:
    """Drop the dev stack's data (database, jobs, logs); the next `make dev` starts afresh."""
    root = target.data_dir(data_dir)
    if recorded(root) is not None:
        raise CliError(
            f"the dev stack is running from {root}",
            "stop it first (Ctrl-C where `make dev` runs), then run `jobhook reset` again",
        )
    cluster = Cluster(server_reachable(root), port=db_port)
    if not root.exists() and not cluster.root.exists():
        console.print(f"nothing to reset: {root} does not exist")
        return
    if not yes and not typer.confirm(f"drop every job and the database in {root}?"):
        raise CliError("nothing was dropped", "pass --yes to reset without asking", code=1)
    cluster.destroy()
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    console.print(f"dropped the dev data in {root}; `make dev` or `make demo` starts afresh")


@app.command()
def token(
    user: Annotated[str, typer.Option("--user", callback=_uuid, help="the user id (sub claim)")],
    expires_in: Annotated[int, typer.Option(help="seconds until it expires")] = 3600,
) -> None:
    """Print a JWT for the dev stack (the supabase CLI's local secret and issuer)."""
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
            _database(), autocommit=True, connect_timeout=5
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
    as_json: JsonOption = False,
) -> None:
    """Your jobs, newest first."""

    async def main() -> None:
        async with _client() as client:
            page = await client.list(
                Caller.user(user), status=status, job_type=job_type, limit=limit
            )
        if as_json:
            print(json.dumps({"jobs": page.jobs, "total": page.total}, default=str))
            return
        for line in listing.render(page.jobs, width=console.width):
            print(line)
        print(f"{len(page.jobs)} of {page.total}" + ("" if page.jobs else " (jobhook submit TYPE)"))

    _run(main())


@jobs_app.command("show")
def show_job(
    job_id: UUID,
    user: UserOption = DEMO_USER_ID,
    as_json: Annotated[
        bool, typer.Option("--json", help="accepted for scripts: show always prints JSON")
    ] = False,
) -> None:
    """One job, every column, as JSON."""

    async def main() -> int:
        async with _client() as client:
            try:
                row = await client.get(Caller.user(user), job_id)
            except JobNotFound:
                err.print(f"[red]no job {job_id}[/] (or it is not yours): see `jobhook jobs list`")
                return 1
        print(json.dumps(row, default=str, indent=None if not sys.stdout.isatty() else 2))
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
                err.print(f"[red]no job {job_id}[/] (or it is not yours): see `jobhook jobs list`")
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
    as_json: Annotated[
        bool, typer.Option("--json", help="no bars: print the final rows as JSON lines")
    ] = False,
) -> None:
    """Live progress of a job, or of all your unfinished jobs, until they finish."""
    caller = Caller.user(user)

    async def main() -> int:
        async with _client() as client:
            watched: set[Any] = set()

            async def unfinished() -> None:
                for status in (JobStatus.PENDING, JobStatus.PROCESSING):
                    page = await client.list(caller, status=status, limit=100)
                    watched.update(row["id"] for row in page.jobs)

            if job_id is not None:
                try:
                    await client.get(caller, job_id)
                except JobNotFound:
                    err.print(f"[red]no job {job_id}[/] (or it is not yours)")
                    return 1
            else:
                await unfinished()
                if not watched:
                    err.print("no unfinished jobs to watch; `jobhook jobs list` shows the rest")
                    return 0

            async def fetch() -> list[dict[str, Any]]:
                if job_id is not None:
                    return [await client.get(caller, job_id)]
                await unfinished()
                return [await client.get(caller, i) for i in sorted(watched, key=str)]

            if as_json:
                rows = await watch(fetch, Console(quiet=True))
                for row in rows:
                    print(json.dumps(row, default=str))
            else:
                await watch(fetch, console)
            return 0

    raise typer.Exit(_run(main()))


# -- job types --------------------------------------------------------------------------------


@types_app.command("sync")
def sync_types(
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="write types that no running deployment serves yet, all the same"
        ),
    ] = False,
) -> None:
    """Write the handlers' job types to jobhook.job_types; disable types no live deployment
    serves any more. A type no running deployment can run is refused unless --force."""
    import handlers
    from jobhook.registry import registry

    handlers.load_all()
    with psycopg.connect(_database(), autocommit=True, connect_timeout=5) as conn:
        served = {row[0] for row in conn.execute(queries()["served_job_types"]).fetchall()}
        unserved = sorted(t.name for t in registry if t.name not in served)
        if unserved and served and not force:
            # A deployment runs (it renews its types), but not these: jobs of them would be
            # accepted and then fail with "no handler in this deployment".
            raise CliError(
                f"no running deployment serves {', '.join(unserved)}: the database would accept "
                "jobs that nothing can run",
                "restart the dev stack (Ctrl-C, then `make dev`) or deploy (`jobhook deploy`): "
                "each syncs its own types at start-up; or pass --force",
                code=1,
            )
        disabled = registry.sync(conn)
    for job_type in registry:
        console.print(f"[green]synced[/] {job_type.name} (tier {job_type.tier})")
    for name in unserved:
        err.print(f"[yellow]warning[/]: no running deployment serves {name} yet")
    for name in disabled:
        console.print(f"[yellow]disabled[/] {name} (no live deployment serves it)")


types_app.command("ts")(typescript.types_ts)


@types_app.command("list")
def list_types(as_json: JsonOption = False) -> None:
    """The catalogue as the database has it."""
    with psycopg.connect(_database(), connect_timeout=5) as conn:
        cursor = conn.execute(queries()["list_job_types"])
        names = [column.name for column in cursor.description or []]
        rows = cursor.fetchall()
    if as_json:
        print(json.dumps([dict(zip(names, row, strict=True)) for row in rows], default=str))
        return
    table = Table("name", "enabled", "tier", "max attempts", "timeout (s)")
    for row in rows:
        table.add_row(*(str(value) for value in row))
    console.print(table)


def _print_outcome(row: dict[str, Any]) -> None:
    if row["status"] == JobStatus.COMPLETED:
        console.print_json(json.dumps(row["result"]))
    else:
        err.print(f"[red]{row['status']}[/]: {row['error']}")


# -- deploying --------------------------------------------------------------------------------
from jobhook.cli import deploy as _deploy  # noqa: E402 - registers its commands on `app`
from jobhook.cli import doctor  # noqa: E402, F401  (defines `jobhook doctor` on app)

_deploy.register(app)


def _say(problem: str, fix: str | None = None, *, code: int = 2) -> int:
    print(f"error: {problem}", file=sys.stderr)
    if fix:
        print(f"  fix: {fix}" if not fix.startswith("see ") else f"  {fix}", file=sys.stderr)
    return code


def main() -> None:
    """The console script: every failure in one or two lines, a traceback only with --debug."""
    try:
        code = app(standalone_mode=False)
    except KeyboardInterrupt:
        code = 130
    except typer.Abort:
        _say("aborted")
        code = 130
    except click_errors.NoArgsIsHelpError as exc:
        exc.show()
        code = exc.exit_code
    except click_errors.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "jobhook"
        code = _say(exc.format_message(), f"see `{command} --help`", code=exc.exit_code)
    except click_errors.ClickException as exc:
        code = _say(exc.format_message(), code=exc.exit_code)
    except Exception as exc:
        explained = explain(exc, state.database.describe() if state.database else None)
        if state.debug:
            traceback.print_exc()
        if explained is None:
            first = f"{type(exc).__name__}: {exc}".splitlines()[0]
            code = _say(first, "run again with --debug for the traceback", code=1)
        else:
            code = _say(explained.problem, explained.fix, code=explained.code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
