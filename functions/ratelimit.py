"""Per-user rate limit on enqueueing: a moving window in this process's memory.

Each app instance counts on its own, so N instances admit up to N times the limit; the database's
per-user quota on unfinished jobs is the limit that holds across instances.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from functions.errors import ApiError


class RateLimiter:
    def __init__(self, rule: str) -> None:
        self.item: RateLimitItem = parse(rule)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def check(self, key: str) -> None:
        if await self.limiter.hit(self.item, key):
            return
        stats = await self.limiter.get_window_stats(self.item, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests: the limit is {self.item}; retry in {retry_after} s",
            {"limit": str(self.item), "retry_after_seconds": retry_after},
            {"Retry-After": str(retry_after)},
        )
