"""The benchmark's reading of start reports: what a run counts as started, or as waiting."""

from __future__ import annotations

import queue
import uuid

from bench.run import collect_some


def test_a_backlog_of_reports_is_read_in_full_within_the_window() -> None:
    # The concurrent scenario reads its 20,000 start reports only once the producers are done,
    # all queued by then. Reading them must cost what the reports cost: before, the loop
    # recomputed what was still missing with every report, and past about 10,000 reports the
    # window closed first, counting jobs that had started as waiting for the sweep.
    reports: queue.Queue[tuple[str, float]] = queue.Queue()
    expected = {str(uuid.uuid4()) for _ in range(20_000)}
    for n, job in enumerate(sorted(expected)):
        reports.put((job, float(n)))
    starts = collect_some(reports, expected, within=5)
    assert starts.keys() == expected


def test_what_never_started_is_left_out_once_the_window_closes() -> None:
    reports: queue.Queue[tuple[str, float]] = queue.Queue()
    reports.put(("started", 1.0))
    starts = collect_some(reports, {"started", "never"}, within=0.6)
    assert starts == {"started": 1.0}
