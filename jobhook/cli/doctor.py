"""`jobhook doctor`: jobhook.health's checks against a live set-up, one line each with its fix.

The same checks /ready and the dashboard's health panel make (jobhook.health), from the
command line: the deployment's handlers are this checkout's, its migrations this checkout's
supabase/migrations. Exits 1 when a check is at fault, so a deploy script can stop on it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from jobhook import health
from jobhook.cli.main import _run, app, console
from jobhook.config import get_settings
from jobhook.store import Store

# A doctor must answer, not wait for the pool's 30 s when the database is gone.
ACQUIRE_WITHIN = 3.0
MARKS = {
    health.Severity.OK: "[green]ok   [/]",
    health.Severity.WARNING: "[yellow]warn [/]",
    health.Severity.FAULT: "[red]FAULT[/]",
}


@app.command()
def doctor(
    database_url: Annotated[
        str | None, typer.Option(help="the database to check (default: DATABASE_URL)")
    ] = None,
) -> None:
    """Check a live set-up: database, extensions, migrations, Vault, pg_net, the sweep, the
    job types; print each check with its fix and exit 1 on a fault."""
    import handlers
    from jobhook.registry import registry

    handlers.load_all()
    settings = get_settings()
    expected = health.Expectations(
        handled=frozenset(job_type.name for job_type in registry),
        secrets=tuple(settings.webhook_secrets),
        migrations=health.migration_versions(health.MIGRATIONS),
    )
    report = _run(_check(database_url or settings.database_url, expected))
    width = max(len(check.name) for check in report.checks)
    for check in report.checks:
        line = f"{MARKS[check.severity]} {check.name:<{width}}  {check.found}"
        if check.fix and check.severity is not health.Severity.OK:
            line += f"\n      {'':<{width}}  fix: {check.fix}"
        console.print(line, markup=True, highlight=False)
    faults = len(report.faults)
    if faults:
        console.print(f"[red]{faults} fault(s)[/]")
        raise typer.Exit(1)
    console.print("[green]no faults[/]")


async def _check(database_url: str, expected: health.Expectations) -> health.Report:
    async with Store.open(database_url, min_size=0, max_size=1) as store:
        return await health.check(store, expected, acquire_within=ACQUIRE_WITHIN)
