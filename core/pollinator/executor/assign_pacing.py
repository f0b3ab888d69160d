"""When the executor's assign long-polls start: a few overlapping ones, evenly spread in time.

A Colonies server wakes ONE waiting ``assignprocessmsg`` per submit, chosen
among the waiters of the process's executor *type* (and location), not the
executor the spec names (FACTS "Added 2026-11-30"). With several executors of
one type waiting, a process naming this executor is often handed to another
waiter that cannot take it, and we only see it when one of our long-polls
ends and the next one asks again. So the pick-up latency is bounded by the
gap between two of our poll *starts*, not by the wake-up.

``lanes`` long-polls of ``timeout`` s each, started at least ``timeout/lanes``
s apart, keep that gap near ``timeout/lanes`` (0.5 s by default) at a cost of
``lanes/timeout`` requests per second while idle (2/s; one 10 s long-poll
cost 0.1/s and up to 10 s of latency). The spacing is enforced at every
start, so the lanes do not drift into step after a job is picked up. A lane
whose last poll brought a process asks again at once (``eager``): while the
queue has work, spacing would only cut throughput.
"""

from __future__ import annotations

import threading
import time


class PollPacer:
    """Hands out poll start times at least ``gap`` seconds apart across all lanes."""

    def __init__(self, gap: float):
        self.gap = gap
        self._lock = threading.Lock()
        self._last = float("-inf")
        self.polls = 0
        """Assign requests started so far (benchmarks read the request cost from it)."""

    def wait_turn(self, stop: threading.Event, eager: bool = False) -> bool:
        """Block until this lane may start a long-poll; False if ``stop`` was set meanwhile."""
        with self._lock:
            now = time.monotonic()
            start = now if eager else max(now, self._last + self.gap)
            self._last = max(self._last, start)
            self.polls += 1
        delay = start - now
        if delay > 0:
            return not stop.wait(delay)
        return not stop.is_set()
