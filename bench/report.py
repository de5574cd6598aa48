"""The benchmark's figures as a readable table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _stage_rows(stages: dict[str, Any] | None) -> list[tuple[str, Any, Any, Any]]:
    """jobhook's medians by stage: how a job's wait divides."""
    if not stages:
        return []
    return [
        (
            f"  rung ({stages['rung_jobs']} jobs): commit→request, request→claim (ms)",
            f"{stages['commit_to_request']}, {stages['request_to_claim']}",
            None,
            None,
        ),
        (
            f"  counted ({stages['counted_jobs']} jobs): commit→claim (ms)",
            stages["commit_to_claim"],
            None,
            None,
        ),
        ("  claim→handler start (ms)", stages["claim_to_start"], None, None),
    ]


def render(result: dict[str, Any], console: Console) -> None:
    peer = result.get("peer")
    ratio = result.get("ratio") or {}
    table = Table(title=f"jobhook bench: {result['jobs']} jobs per throughput run")
    table.add_column("measure")
    table.add_column("jobhook", justify="right")
    if peer:
        table.add_column(f"{peer['name']} {peer['version']}", justify="right")
        table.add_column("ratio", justify="right")
    rows = [
        (
            "insert→start p50 (ms)",
            result["latency_ms"]["p50"],
            peer and peer["latency_ms"]["p50"],
            ratio.get("latency_p50"),
        ),
        (
            "insert→start p95 (ms)",
            result["latency_ms"]["p95"],
            peer and peer["latency_ms"]["p95"],
            None,
        ),
        (
            "insert→start p99 (ms)",
            result["latency_ms"]["p99"],
            peer and peer["latency_ms"]["p99"],
            None,
        ),
        *_stage_rows(result.get("latency_breakdown_ms")),
        (
            "throughput, bulk insert (jobs/s)",
            result["throughput_jobs_per_s"],
            peer and peer["throughput_jobs_per_s"],
            ratio.get("throughput"),
        ),
        (
            "throughput, row by row (jobs/s)",
            result["throughput_row_by_row_jobs_per_s"],
            peer and peer["throughput_row_by_row_jobs_per_s"],
            ratio.get("throughput_row_by_row"),
        ),
        (
            "  the producer alone (jobs/s)",
            result["row_by_row_insert_jobs_per_s"],
            peer and peer["row_by_row_insert_jobs_per_s"],
            None,
        ),
        (
            "WAL per job (bytes)",
            result["wal_bytes_per_job"],
            peer and peer["wal_bytes_per_job"],
            ratio.get("wal_bytes_per_job"),
        ),
        *(
            (
                f"CPU per job, {run_name.replace('_', ' ')} (ms)",
                cpu_cell(result.get("cpu_ms_per_job"), run_name),
                peer and cpu_cell(peer.get("cpu_ms_per_job"), run_name),
                ratio.get(f"cpu_per_job_{run_name}"),
            )
            for run_name in ("bulk", "row_by_row")
            if result.get("cpu_ms_per_job")
        ),
        ("webhook requests, bulk", result["webhook_requests"], None, None),
        ("webhook requests, row by row", result["webhook_requests_row_by_row"], None, None),
    ]
    for label, ours, theirs, factor in rows:
        cells = [label, str(ours)]
        if peer:
            cells += ["" if theirs is None else str(theirs), "" if factor is None else f"{factor}x"]
        table.add_row(*cells)
    console.print(table)
    if result.get("sweep"):
        sweep = result["sweep"]
        console.print(
            f"jobhook.sweep() with {sweep['finished_rows']} finished and {sweep['live_rows']} live "
            f"jobs: median {sweep['median_ms']} ms, max {sweep['max_ms']} ms over 20 runs"
        )
    for other in result.get("peers", [])[1:]:
        console.print(
            f"{other['name']} {other['version']}: "
            f"insert→start p50 {other['latency_ms']['p50']} ms, "
            f"p99 {other['latency_ms']['p99']} ms; "
            f"bulk {other['throughput_jobs_per_s']} jobs/s "
            f"(jobhook {ratio.get('graphile_throughput')}x), row by row "
            f"{other['throughput_row_by_row_jobs_per_s']} jobs/s"
        )
    if result.get("concurrent"):
        render_concurrent(result["concurrent"], console)
    console.print(
        f"latency over {result['latency_jobs']} single inserts; ratios are jobhook / peer "
        "(above 1 is better for throughput, below 1 is better for latency, WAL and CPU); "
        "CPU per job is the total (producer/consumer/database)"
    )


def cpu_cell(cpu_ms_per_job: dict[str, dict[str, float]] | None, run_name: str) -> str | None:
    if not cpu_ms_per_job:
        return None
    sides = cpu_ms_per_job[run_name]
    return (
        f"{sides['total']:.3f} "
        f"({sides['producer']:.3f}/{sides['consumer']:.3f}/{sides['database']:.3f})"
    )


def render_concurrent(figures: dict[str, Any], console: Console) -> None:
    peer = figures.get("peer")
    table = Table(
        title=f"{figures['producers']} users inserting single rows at "
        f"{figures['offered_jobs_per_s']:g} jobs/s in all"
    )
    table.add_column("measure")
    table.add_column("jobhook", justify="right")
    if peer:
        table.add_column("pgqueuer", justify="right")
    rows = [
        ("jobs/s completed", "jobs_per_s"),
        ("doorbell requests/s", "doorbell_requests_per_s"),
        ("insert→start p50 (ms)", "p50"),
        ("insert→start p99 (ms)", "p99"),
        ("insert→start max (ms)", "max"),
        ("pg_net timeouts", "pg_net_timeouts"),
        ("not started within 10 s", "waited_for_sweep"),
    ]
    for label, key in rows:
        cells = [label, _cell(figures, key)]
        if peer:
            cells.append(_cell(peer, key))
        table.add_row(*cells)
    console.print(table)


def _cell(figures: dict[str, Any], key: str) -> str:
    value = figures["latency_ms"].get(key) if key in ("p50", "p99", "max") else figures.get(key)
    return "" if value is None else str(value)
