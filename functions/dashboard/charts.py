"""The overview's charts as SVG geometry, computed here and drawn by the templates: no chart
library to ship, and nothing for the browser to run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIDTH = 600
HEIGHT = 90


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str
    title: str


def throughput(per_minute: list[dict[str, Any]]) -> list[Bar]:
    """Completed and failed jobs per minute, stacked, scaled to the busiest minute."""
    if not per_minute:
        return []
    top = max(1, *(m["completed"] + m["failed"] for m in per_minute))
    step = WIDTH / len(per_minute)
    bars = []
    for i, minute in enumerate(per_minute):
        base = float(HEIGHT)
        for kind in ("completed", "failed"):
            h = HEIGHT * minute[kind] / top
            if h > 0:
                label = f"{minute['minute'][11:16]} UTC: {minute[kind]} {kind}"
                bars.append(Bar(i * step, base - h, max(step - 1, 1), h, kind, label))
                base -= h
    return bars


def latency(per_minute: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    """The points of one percentile of insert-to-start latency, scaled to the highest p95
    (minutes in which nothing finished have none)."""
    top = max([m["p95"] or 0 for m in per_minute] + [0.001])
    step = WIDTH / max(len(per_minute), 1)
    return [
        (round(i * step + step / 2, 1), round(HEIGHT - (HEIGHT - 4) * m[key] / top, 1))
        for i, m in enumerate(per_minute)
        if m[key] is not None
    ]


def polyline(points: list[tuple[float, float]]) -> str:
    return " ".join(f"{x},{y}" for x, y in points)


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"
