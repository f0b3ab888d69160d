"""Retry one step of a job's ending through outages of minutes, not milliseconds.

The HTTP clients retry a few times within a second or two; that covers a
dropped connection, not an S3 endpoint or a Colonies server that is down for
a minute while a job ends. The steps that must not be lost (registering the
results in ColonyFS, closing the process) go through :func:`retry_window`:
exponential back-off capped at ``max_delay``, for at most ``window`` seconds,
stopping early when ``give_up`` says the step no longer makes sense (the
process was re-queued, the executor is stopping).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional, TypeVar

from pollinator.backoff import backoff

log = logging.getLogger(__name__)

T = TypeVar("T")


class GaveUp(Exception):
    """``give_up`` ended the retries; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def retry_window(step: Callable[[], T], *, window: float, what: str,
                 transient: Callable[[Exception], bool] = lambda _exc: True,
                 give_up: Callable[[], Optional[str]] = lambda: None,
                 on_retry: Callable[[int, Exception, float], None] = lambda _n, _exc, _delay: None,
                 first_delay: float = 0.5, max_delay: float = 10.0,
                 stop: Optional[threading.Event] = None) -> T:
    """``step()`` until it returns, a non-transient error, ``give_up``, or ``window`` seconds have passed.

    Raises the last error when the window is spent (or it was not transient), :class:`GaveUp` when
    ``give_up`` returned a reason. ``stop`` set while waiting also ends the retries (last error raised).
    """
    end = time.monotonic() + max(0.0, window)
    attempt = 0
    while True:
        try:
            return step()
        except Exception as exc:  # noqa: BLE001 - classified by ``transient``
            if not transient(exc):
                raise
            attempt += 1
            delay = backoff(attempt - 1, base=first_delay, cap=max_delay)
            left = end - time.monotonic()
            if left <= 0 or (stop is not None and stop.is_set()):
                raise
            delay = min(delay, left)
            log.warning("%s failed (attempt %d: %s); retrying in %.1f s", what, attempt, exc, delay)
            on_retry(attempt, exc, delay)
            if stop is not None:
                if stop.wait(delay):
                    raise
            else:
                time.sleep(delay)
            reason = give_up()
            if reason:
                raise GaveUp(reason) from exc
