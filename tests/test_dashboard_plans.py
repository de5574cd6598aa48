"""The dashboard's queries read the live jobs, the last hour, or one page: never the history.

Run on tests/test_plans.py's busy table (30,000 finished jobs, 400 live), as jobhook_operator,
with EXPLAIN ANALYZE: the plan must not scan public.jobs whole, and a page of the list must read
about a page of rows per status, not the status's history.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import psycopg

from functions.dashboard.filters import JobFilter
from jobhook.jobs import JobStatus
from jobhook.store import queries
from tests.test_plans import busy_table, nodes, scans_of_jobs

__all__ = ["busy_table"]  # the fixture, used by name below
Conn = psycopg.Connection[tuple[Any, ...]]


def analyzed(conn: Conn, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The plan of every statement the named query runs (inside functions too), with the rows
    each node read, merged under one root."""
    role, statement = queries()[name].split(";\n", 1)
    assert role.rstrip().endswith("set local role jobhook_operator")
    text = psycopg.ClientCursor(conn).mogrify(statement, params)
    plans: list[dict[str, Any]] = []

    def collect(diag: psycopg.errors.Diagnostic) -> None:
        message = diag.message_primary or ""
        if message.startswith("duration:") and "{" in message:
            plans.append(json.loads(message[message.index("{") :])["Plan"])

    # auto_explain, as tests/test_plans.py uses it, loaded before the switch to the role.
    conn.execute("load 'auto_explain'")
    for setting, value in {
        "auto_explain.log_min_duration": "0",
        "auto_explain.log_nested_statements": "on",
        "auto_explain.log_analyze": "on",
        "auto_explain.log_format": "json",
        "client_min_messages": "log",
    }.items():
        conn.execute("select set_config(%s, %s, true)", (setting, value))
    conn.add_notice_handler(collect)
    conn.execute("set local role jobhook_operator")
    conn.execute(text)
    conn.execute("reset role")
    conn.execute("select set_config('client_min_messages', 'notice', true)")
    conn.remove_notice_handler(collect)
    return {"Node Type": "statements", "Plans": plans}


def rows_read_from_jobs(plan: dict[str, Any]) -> int:
    return sum(
        int(node.get("Actual Rows", 0)) * int(node.get("Actual Loops", 1))
        + int(node.get("Rows Removed by Filter", 0))
        for node in nodes(plan)
        if node.get("Relation Name") == "jobs"
    )


def test_a_page_of_jobs_reads_a_page_per_status(busy_table: Conn) -> None:
    for order, status in (
        ("newest", None),
        ("newest", JobStatus.COMPLETED),
        ("oldest", JobStatus.COMPLETED),
    ):
        chosen = JobFilter.model_validate({"status": status, "order": order})
        plan = analyzed(busy_table, "dashboard_jobs", chosen.params(datetime.now(UTC)))
        scans = scans_of_jobs(plan)
        assert not [s for s in scans if s[0] == "Seq Scan"], json.dumps(plan, indent=1)
        assert {index for _, index in scans} == {"jobs_status_created_idx"}, scans
        statuses = 1 if status else len(JobStatus)
        assert rows_read_from_jobs(plan) <= 50 * statuses, json.dumps(plan, indent=1)


def test_a_filter_on_error_text_walks_only_its_time_range(busy_table: Conn) -> None:
    busy_table.execute(
        "update public.jobs set created_at = now() - interval '10 days' where status = 'completed'"
    )
    busy_table.execute("analyze public.jobs")
    chosen = JobFilter(status=JobStatus.COMPLETED, error="no such text")
    plan = analyzed(busy_table, "dashboard_jobs", chosen.params(datetime.now(UTC)))
    # The history is older than the page's range (the last 24 hours): none of it is read.
    assert rows_read_from_jobs(plan) == 0, json.dumps(plan, indent=1)


def test_the_overview_reads_live_jobs_and_the_last_hour(busy_table: Conn) -> None:
    plan = analyzed(busy_table, "dashboard_overview", {})
    scans = scans_of_jobs(plan)
    assert scans
    assert not [s for s in scans if s[0] == "Seq Scan"], json.dumps(plan, indent=1)
    # 400 live jobs and about an hour's worth of the 30,000 finished in the last 20 days.
    assert rows_read_from_jobs(plan) < 3000, json.dumps(plan, indent=1)
