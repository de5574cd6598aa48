"""CPU time per job, by side: where a throughput run's work went.

Jobs per second on a shared two-core machine swing with whatever else runs; the CPU a run spent
per job swings less (a busy neighbour inflates it too), and says which side to make cheaper.
Read from /proc (Linux): the producer is the benchmark's own process, the consumer the child
process serving the system under test, the database every process of the cluster's postmaster,
including those that end within the run (autovacuum workers, closed connections), whose time
the postmaster collects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_seconds(pid: int, *, reaped: bool = False) -> tuple[int, float]:
    """(parent pid, user + system seconds of all its threads, and with `reaped` those of its
    children that have ended); (0, 0.0) once it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0, 0.0
    # The command name, in parentheses, may hold spaces: fields are counted after its end.
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return int(fields[1]), ticks / TICKS_PER_SECOND


def family_seconds(root: int) -> float:
    """CPU seconds of `root` and its children, living or ended (a postmaster, its backends and
    workers): a child's time moves to its parent's account when it ends and is reaped, so the
    sum only grows."""
    total = process_seconds(root, reaped=True)[1]
    for entry in PROC.iterdir():
        if entry.name.isdigit() and int(entry.name) != root:
            parent, seconds = process_seconds(int(entry.name))
            if parent == root:
                total += seconds
    return total


@dataclass(frozen=True)
class Sides:
    producer: int
    consumer: int
    postmaster: int

    def sample(self) -> dict[str, float]:
        return {
            "producer": process_seconds(self.producer)[1],
            "consumer": family_seconds(self.consumer),
            "database": family_seconds(self.postmaster),
        }


def per_job(before: dict[str, float], after: dict[str, float], jobs: int) -> dict[str, float]:
    """Milliseconds of CPU per job on each side, and in all."""
    spent = {side: (after[side] - before[side]) * 1000 / jobs for side in before}
    spent["total"] = sum(spent.values())
    return {side: round(ms, 3) for side, ms in spent.items()}


def available() -> bool:
    return (PROC / "self" / "stat").exists()
