"""What is wrong with a jobhook set-up, and how to fix it: the one health check.

/ready, the dashboard's health panel and `jobhook doctor` all ask `check()`: one round trip
(the `health` query, read as jobhook_operator) fetches the facts, and this module judges them.
Each check says what it found and, when something is wrong, what to do. A fault that stops
jobs from being dispatched or run here also makes /ready answer 503 (`blocks_ready`); the
others (pg_net's replies failing, the sweep failing, job types without a handler) are shown by
the panel and the doctor, but a deployment that can take jobs stays ready.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg_pool import PoolTimeout

from jobhook import vault
from jobhook.store import Store, queries

if TYPE_CHECKING:
    from jobhook.runtime import Runtime

EXTENSIONS = ("pg_cron", "pg_jsonschema", "pg_net", "pgcrypto", "supabase_vault")
# pg_net's replies are judged over this window; the panel shows the same one.
WINDOW_SECONDS = 300
# The sweep's runs looked at: half an hour of a once-a-minute schedule.
SWEEP_RUNS = 30
# A sweep scheduled every minute that has not run for this long is not running.
SWEEP_SILENT_SECONDS = 180
# pg_net deletes each request as it sends it; a queue this long is a worker that is not sending.
QUEUE_BACKLOG = 1000
# A checkout's migrations; a deployment built from the packages alone has none to compare.
MIGRATIONS = Path(__file__).resolve().parents[1] / "supabase" / "migrations"
_CALLED = re.compile(r"\bjobhook\.(\w+)\s*\(")


class Severity(StrEnum):
    OK = "ok"
    WARNING = "warning"
    FAULT = "fault"


@dataclass(frozen=True)
class Check:
    name: str
    severity: Severity
    found: str
    fix: str | None = None
    # /ready answers 503 while this check is at fault.
    blocks_ready: bool = False

    @property
    def reason(self) -> str:
        return self.found if self.fix is None else f"{self.found} ({self.fix})"


@dataclass(frozen=True)
class Expectations:
    """What this deployment expects of its database."""

    # The job types it has handlers for.
    handled: frozenset[str] = frozenset()
    # The secrets it verifies doorbells with; empty: not checked.
    secrets: tuple[str, ...] = ()
    # The migration versions it knows of; empty (a deployment without the folder): not checked.
    migrations: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    checks: list[Check]
    # The facts as the database gave them (the panel shows some of them); empty when the
    # database could not be asked.
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def not_ready(self) -> str | None:
        """Why /ready answers 503, or None."""
        for check in self.checks:
            if check.blocks_ready and check.severity is Severity.FAULT:
                return check.reason
        return None

    @property
    def faults(self) -> list[Check]:
        return [c for c in self.checks if c.severity is Severity.FAULT]

    def without(self, name: str) -> Report:
        return Report([c for c in self.checks if c.name != name], self.facts)


def expectations_of(runtime: Runtime) -> Expectations:
    """What a running app expects: its handlers, the secrets it verifies with, and the
    migrations of the checkout it runs from, if any."""
    return Expectations(
        handled=frozenset(t.name for t in runtime.registry),
        secrets=runtime.verified_with,
        migrations=migration_versions(MIGRATIONS),
    )


def migration_versions(folder: Path) -> tuple[str, ...]:
    """The versions of the migration files in `folder` (<version>_<name>.sql), or () when the
    deployment does not carry them (Modal's image holds the packages only)."""
    if not folder.is_dir():
        return ()
    return tuple(sorted(p.name.split("_", 1)[0] for p in folder.glob("[0-9]*_*.sql")))


def called_functions() -> list[str]:
    """The jobhook functions the named queries call: what the database must have."""
    names = {name for body in queries().values() for name in _CALLED.findall(body)}
    return sorted(names)


def fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def check(
    store: Store, expected: Expectations, *, acquire_within: float | None = None
) -> Report:
    try:
        [facts] = await store.fetch(
            "health",
            {
                "extensions": list(EXTENSIONS),
                "functions": called_functions(),
                "migrations": list(expected.migrations),
                "fingerprints": [fingerprint(s) for s in expected.secrets],
                "handled": sorted(expected.handled),
                "window_seconds": WINDOW_SECONDS,
                "sweep_runs": SWEEP_RUNS,
            },
            acquire_within=acquire_within,
        )
    except (psycopg.OperationalError, OSError, PoolTimeout) as exc:
        return Report([_database_unreachable(exc)])
    except psycopg.Error as exc:
        return Report(
            [
                Check(
                    "database",
                    Severity.FAULT,
                    f"the health query failed: {exc}",
                    "apply the migrations (supabase db push); the app's role must be a member "
                    "of jobhook_operator, which they grant to the role that runs them",
                    blocks_ready=True,
                )
            ]
        )
    return Report(judge(facts), facts)


def _database_unreachable(exc: BaseException) -> Check:
    return Check(
        "database",
        Severity.FAULT,
        f"database unreachable: {exc}",
        None,
        blocks_ready=True,
    )


def judge(facts: dict[str, Any]) -> list[Check]:
    """Each check's verdict on the facts the `health` query read."""
    return [
        Check("database", Severity.OK, "reachable"),
        _extensions(facts["missing_extensions"]),
        _migrations(facts["missing_migrations"], facts["missing_functions"]),
        _vault(facts["vault_secrets"], facts["webhook_url_problem"]),
        _queue_triggers(facts["foreign_queue_triggers"]),
        _signing_secret(facts["signing_secret_accepted"]),
        _replies(facts["replies"], facts["failed_replies"], facts["timed_out_replies"],
                 facts["latest_failed"], facts["last_error"]),
        _queue(facts["queued_doorbells"]),
        _sweep(facts),
        _job_types(facts["unhandled_job_types"]),
    ]  # fmt: skip


def _extensions(missing: list[str]) -> Check:
    if not missing:
        return Check("extensions", Severity.OK, ", ".join(EXTENSIONS))
    return Check(
        "extensions",
        Severity.FAULT,
        f"extension(s) not installed: {', '.join(missing)}",
        "enable them in the project (Database > Extensions), then apply the migrations",
        blocks_ready=True,
    )


def _migrations(missing: list[str], functions: list[str]) -> Check:
    if functions:
        return Check(
            "migrations",
            Severity.FAULT,
            f"the database lacks jobhook functions the app calls: {', '.join(functions)}",
            "apply the migrations: supabase db push",
            blocks_ready=True,
        )
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        return Check(
            "migrations",
            Severity.FAULT,
            f"migration(s) not applied: {shown}",
            "apply the migrations: supabase db push",
            blocks_ready=True,
        )
    return Check("migrations", Severity.OK, "applied")


def _vault(present: list[str], url_problem: str | None) -> Check:
    missing = [name for name in (vault.WEBHOOK_URL, vault.WEBHOOK_SECRET) if name not in present]
    if not missing and url_problem:
        # pg_net would refuse it; the doorbell rings nothing and the jobs wait (04_doorbell.sql).
        return Check(
            "vault",
            Severity.FAULT,
            f"{vault.WEBHOOK_URL} cannot be used: {url_problem}; jobs cannot be dispatched",
            "set it to your app's /webhooks/jobs address: select vault.update_secret(id, '<url>')"
            f" from vault.secrets where name = '{vault.WEBHOOK_URL}'",
            blocks_ready=True,
        )
    if not missing:
        return Check("vault", Severity.OK, f"{vault.WEBHOOK_URL} and {vault.WEBHOOK_SECRET} set")
    return Check(
        "vault",
        Severity.FAULT,
        f"Vault secret(s) missing: {', '.join(missing)}; jobs cannot be dispatched",
        "set [db.vault] in supabase/config.toml, or vault.create_secret",
        blocks_ready=True,
    )


def _queue_triggers(triggers: list[str]) -> Check:
    if not triggers:
        return Check("queue_triggers", Severity.OK, "none on net.http_request_queue")
    return Check(
        "queue_triggers",
        Severity.FAULT,
        "no doorbell rings while net.http_request_queue has triggers jobhook did not make: "
        f"{', '.join(triggers)}",
        # DROP TRIGGER needs the table's owner, supabase_admin on hosted Supabase; postgres can
        # drop the trigger's function with CASCADE, or drop and create pg_net (supautils).
        "drop each with its function (drop function <function> cascade), or re-create pg_net"
        " (drop extension pg_net; create extension pg_net with schema extensions)",
        blocks_ready=True,
    )


def _signing_secret(accepted: bool | None) -> Check:
    if accepted is None:
        return Check("signing_secret", Severity.OK, "not compared")
    if accepted:
        return Check("signing_secret", Severity.OK, "the app verifies what the database signs")
    return Check(
        "signing_secret",
        Severity.FAULT,
        f"the database signs doorbells with a secret this app does not accept: Vault's "
        f"{vault.WEBHOOK_SECRET} is not among JOBHOOK_WEBHOOK_SECRETS; every doorbell is "
        "refused with 401",
        "add the new secret to the app, or put Vault's back",
        blocks_ready=True,
    )


def _replies(
    total: int, failed: int, timed_out: int, latest_failed: int, last_error: str | None
) -> Check:
    minutes = WINDOW_SECONDS // 60
    if failed == 0:
        return Check("pg_net", Severity.OK, f"{total} doorbell(s) answered in {minutes} min")
    found = (
        f"{failed} of {total} doorbell(s) failed in the last {minutes} min "
        f"({timed_out} timed out); last: {last_error}"
    )
    fix = (
        "check that jobhook_webhook_url in Vault reaches this app's /webhooks/jobs, and that the "
        "app is up; a cold start longer than dispatch_timeout_ms times out (jobhook.settings)"
    )
    # A timeout among answers is a cold start; the latest three failing is an endpoint down.
    severity = Severity.FAULT if latest_failed >= min(3, total) else Severity.WARNING
    return Check("pg_net", severity, found, fix)


def _queue(queued: int) -> Check:
    if queued < QUEUE_BACKLOG:
        return Check("doorbell_queue", Severity.OK, f"{queued} doorbell(s) waiting in pg_net")
    return Check(
        "doorbell_queue",
        Severity.WARNING,
        f"{queued} doorbells waiting in net.http_request_queue",
        "pg_net's background worker is not keeping up or is down: select net.check_worker_is_up()",
    )


def _sweep(facts: dict[str, Any]) -> Check:
    scheduled = facts["sweep_scheduled"]
    if scheduled is None:
        return Check(
            "sweep",
            Severity.FAULT,
            "jobhook.sweep() is not scheduled: lost doorbells and expired leases are not rescued",
            "apply the migrations (08_schedule schedules it with pg_cron)",
        )
    if facts["failed_sweeps"]:
        return Check(
            "sweep",
            Severity.FAULT,
            f"{facts['failed_sweeps']} of the last {facts['sweep_runs']} sweeps failed; last: "
            f"{facts['last_failure']}",
            "see cron.job_run_details, or run select jobhook.sweep() to see the error",
        )
    if not scheduled:
        return Check(
            "sweep",
            Severity.WARNING,
            "the sweep's schedule is inactive",
            "update cron.job set active = true where jobname = 'jobhook-sweep'",
        )
    last: datetime | None = facts["last_run_at"]
    checked_at: datetime = facts["checked_at"]
    if last is None or (checked_at - last).total_seconds() > SWEEP_SILENT_SECONDS:
        return Check(
            "sweep",
            Severity.WARNING,
            "the sweep has not run yet"
            if last is None
            else f"the sweep last ran at {last:%Y-%m-%d %H:%M:%S %Z}",
            "pg_cron may be down: check cron.job_run_details and the server's log",
        )
    return Check("sweep", Severity.OK, f"{facts['sweep_runs']} recent run(s), none failed")


def _job_types(unhandled: list[str]) -> Check:
    if not unhandled:
        return Check("job_types", Severity.OK, "every enabled type has a handler here")
    return Check(
        "job_types",
        Severity.FAULT,
        f"job type(s) enabled in the database without a handler in this deployment: "
        f"{', '.join(unhandled)}; their jobs fail here",
        "deploy their handlers, or disable them: update jobhook.job_types set enabled = false "
        "where name = '<type>'",
    )
