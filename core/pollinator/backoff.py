"""The one back-off schedule every retry in Pollinator waits by.

Exponential with jitter, so many clients retrying after the same outage (a
thousand triggers, a sweep's tasks, several executors) do not come back in step.
"""

from __future__ import annotations

import random


def backoff(attempt: int, base: float = 0.1, cap: float = 3.0) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): ``base * 2**attempt`` capped, times 0.5-1.0."""
    return min(cap, base * (2**attempt)) * (0.5 + random.random() / 2)
