"""`jobs list` as plain lines: whole ids (pasteable into `jobs show`), type, status, progress
and attempt in 80 columns, the error of a failed job on the line below it. Plain text, so a
pipe gets what the terminal shows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

Row = dict[str, Any]
TYPE_WIDTH = 16


def render(rows: list[Row], *, width: int = 80, now: datetime | None = None) -> list[str]:
    now = now or datetime.now(UTC)
    width = max(width, 80)
    header = f"{'id':36}  {'type':{TYPE_WIDTH}} {'status':10} {'done':>4} {'try':>3} {'age':>4}"
    lines = [header]
    for row in rows:
        lines.append(
            f"{row['id']!s:36}  {_fit(row['job_type'], TYPE_WIDTH):{TYPE_WIDTH}} "
            f"{row['status']:10} {row['progress']:>3}% {row['attempt']:>3} "
            f"{_age(now - row['created_at']):>4}"
        )
        if row.get("error") and row["status"] != "completed":
            lines.append(_fit(f"  error: {' '.join(str(row['error']).split())}", width))
    return lines


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _age(elapsed: Any) -> str:
    seconds = max(int(elapsed.total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
