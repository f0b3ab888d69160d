"""Follow a process's log lines live, with no lost and no doubled line.

The server's ``since`` is exclusive and stamps lines in nanoseconds. Asking
for ``TS > since`` after a batch that ended at T would lose a later line also
stamped T, so we always ask from ``T - 1`` and drop the lines at T we already
gave out (a multiset, so two identical lines at the same T both come through).
Polling adapts between 50 ms (lines flowing) and 500 ms (quiet), which keeps
the p50 latency well under 0.3 s without hammering the server. An interactive
follower (the CLI: one person waiting on one job) also caps a quiet wait at a
tenth of the process's age, from 10 ms (``INTERACTIVE``): a job that ends
after 30 ms is seen ending ~10 ms later, not a whole interval later. Library
followers do not, so a hundred tasks starting at once do not burst the server. Connection
errors (a restarting server) are retried from the last timestamp until
``unreachable_timeout`` passes.

A process the server re-queued (its attempt did not end within maxexectime:
the executor died, hung or could not reach the server) runs again from the
top. The follower then yields one marked line of its own before the new
attempt's lines, ``[pollinator] attempt 2 of 4 on <executor>: <why>``, so
the two runs are never read as one. A process still waiting for an executor
after ``WAIT_WARNING_AFTER`` seconds gets one warning line naming the
executor names/type it asks for and the executors registered.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import AsyncIterator, Iterator, Optional

from pollinator.colonies.models import Log, Process, ProcessState
from pollinator.colonies.rpc import MAX_LOG_COUNT
from pollinator.errors import ServerError, Unreachable

MIN_INTERVAL = 0.05
MAX_INTERVAL = 0.5
STATE_CHECK_EVERY = 0.0  # on every quiet poll: a job usually ends right after its last line
FIRST_INTERVAL = 0.01  # with an age cap: the shortest quiet wait, right after following starts
INTERACTIVE = {"first_interval": FIRST_INTERVAL, "age_fraction": 0.1}  # pacing for one person waiting


class LogCursor:
    """Which lines are new, given overlapping batches.

    ``since`` is a cursor handed over from elsewhere (a trigger's event, a
    resumed worker): every line stamped up to and including it was delivered
    there, so the lines at exactly ``since`` are skipped too.
    """

    def __init__(self, since: int = 0):
        self.last_timestamp = since
        self._seen_at_last: Counter[str] = Counter()
        self._all_seen_at_last = since > 0

    def query_since(self) -> int:
        return self.last_timestamp - 1 if self.last_timestamp > 0 else 0

    def accept(self, batch: Optional[list[Log]]) -> list[Log]:
        fresh: list[Log] = []
        pending = Counter(self._seen_at_last)
        for log in batch or []:
            if log.timestamp < self.last_timestamp:
                continue
            if log.timestamp == self.last_timestamp:
                if self._all_seen_at_last:
                    continue
                if pending[log.message] > 0:
                    pending[log.message] -= 1
                    continue
                self._seen_at_last[log.message] += 1
            else:
                self.last_timestamp = log.timestamp
                self._all_seen_at_last = False
                self._seen_at_last = Counter({log.message: 1})
                pending = Counter()
            fresh.append(log)
        return fresh


ATTEMPT_PREFIX = "[pollinator] attempt "


class AttemptTracker:
    """Says once when the process's ``retries`` grew: the server re-queued it and a new attempt runs."""

    def __init__(self) -> None:
        self.announced = 0
        self._names: dict[str, str] = {}

    def due(self, process: Process) -> bool:
        return process.retries > self.announced and ProcessState(process.state) != ProcessState.WAITING

    def remember(self, executors: Optional[list]) -> None:
        for e in executors or []:
            self._names[e.executorid] = e.executorname

    def marker(self, process: Process, timestamp: int = 0) -> Log:
        self.announced = process.retries
        spec = process.spec
        total = f" of {spec.maxretries + 1}" if spec.maxretries > 0 else ""
        who = self._names.get(process.assignedexecutorid) or (process.assignedexecutorid[:12] or "an executor")
        why = (f"the previous attempt did not end within maxexectime ({spec.maxexectime} s from assignment: its "
               f"executor died, hung or could not reach the server), so the server re-queued the process")
        text = f"{ATTEMPT_PREFIX}{process.retries + 1}{total} on {who}: {why}\n"
        return Log(processid=process.processid, executorname=who, message=text, timestamp=timestamp)


WAIT_WARNING_AFTER = 15.0
"""Seconds a process may wait for an executor before the follower says which executors could take it."""
WAIT_PREFIX = "[pollinator] still waiting"


class WaitWatch:
    """Says once when a followed process has waited long for an executor, naming who could take it."""

    def __init__(self, after: float = WAIT_WARNING_AFTER):
        self.after = after
        self.started = time.monotonic()
        self.said = False

    def due(self, process: Process) -> bool:
        return (not self.said and ProcessState(process.state) == ProcessState.WAITING
                and time.monotonic() - self.started >= self.after)

    def warning(self, process: Process, executors: Optional[list], timestamp: int = 0) -> Optional[Log]:
        """The warning, or None when an approved executor could take the process (it is only busy)."""
        self.said = True
        cond = process.spec.conditions
        able = [e for e in executors or [] if e.executortype == cond.executortype and e.state == 1
                and (not cond.executornames or e.executorname in cond.executornames)]
        if able:
            return None
        wanted = f"executor type {cond.executortype!r}"
        if cond.executornames:
            wanted = f"executor names {', '.join(cond.executornames)} ({wanted})"
        registered = ", ".join(f"{e.executorname} ({e.executortype}{'' if e.state == 1 else ', not approved'})"
                               for e in executors or []) or "none"
        text = (f"{WAIT_PREFIX} for an executor after {self.after:.0f} s: the process asks for {wanted}, and no "
                f"approved executor registered in the colony matches. Registered: {registered}\n")
        return Log(processid=process.processid, message=text, timestamp=timestamp)


class _Pacing:
    """When to poll next and when to look at the process state.

    The defaults favour latency (one follower in a terminal or a task). Many
    followers in one process (an Airflow triggerer) pass larger intervals so
    N followers cost the server N / max_interval requests per second at rest.
    """

    def __init__(self, unreachable_timeout: float, min_interval: float = MIN_INTERVAL,
                 max_interval: float = MAX_INTERVAL, state_check_every: float = STATE_CHECK_EVERY,
                 first_interval: float = FIRST_INTERVAL, age_fraction: float = 0.0):
        self.min_interval = min_interval
        self.max_interval = max(max_interval, min_interval)
        self.state_check_every = state_check_every
        self.first_interval = first_interval
        self.age_fraction = age_fraction
        self.started = time.monotonic()
        self.interval = min_interval
        self.last_state_check = 0.0
        self.unreachable_since: Optional[float] = None
        self.unreachable_timeout = unreachable_timeout

    def got_lines(self, n: int) -> None:
        self.interval = self.min_interval if n else min(self.max_interval, self.interval * 1.5)
        if self.age_fraction > 0:
            age = time.monotonic() - self.started
            self.interval = min(self.interval, max(self.first_interval, age * self.age_fraction))

    def state_due(self) -> bool:
        return time.monotonic() - self.last_state_check >= self.state_check_every

    def reached(self) -> None:
        self.unreachable_since = None

    def unreachable(self, exc: Exception) -> float:
        now = time.monotonic()
        self.unreachable_since = self.unreachable_since or now
        if now - self.unreachable_since > self.unreachable_timeout:
            raise Unreachable(f"lost the Colonies server for {self.unreachable_timeout:.0f} s while following "
                              f"logs: {exc}") from exc
        self.interval = min(2.0, max(self.interval * 2, 0.2))
        return self.interval


class LogFollower:
    """Iterate a process's log lines until it is final; ``.process`` then holds it.

    ``pending`` is 0 right after the last line of one poll's batch: a consumer that records the cursor
    durably (the Airflow trigger) does it then, once per batch rather than once per line.
    """

    def __init__(self, client, process_id: str, since: int = 0, *, unreachable_timeout: float = 300.0,
                 deadline: Optional[float] = None, min_interval: float = MIN_INTERVAL,
                 max_interval: float = MAX_INTERVAL, state_check_every: float = STATE_CHECK_EVERY,
                 first_interval: float = FIRST_INTERVAL, age_fraction: float = 0.0):
        self.client = client
        self.deadline = deadline  # time.monotonic() value after which TimeoutError is raised
        self.process_id = process_id
        self.cursor = LogCursor(since)
        self.process: Optional[Process] = None
        self._pacing = _Pacing(unreachable_timeout, min_interval, max_interval, state_check_every,
                               first_interval, age_fraction)
        self.attempts = AttemptTracker()
        self.waiting = WaitWatch()
        self.pending = 0  # lines of the current batch not yet yielded: 0 after a batch's last line

    @property
    def last_timestamp(self) -> int:
        return self.cursor.last_timestamp

    def _check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimeoutError(f"process {self.process_id} still running at the deadline")

    def _batch(self) -> list[Log]:
        batch = self.client.get_logs(self.process_id, since=self.cursor.query_since(), count=MAX_LOG_COUNT)
        return self.cursor.accept(batch)

    def __iter__(self) -> Iterator[Log]:
        final = False
        while True:
            self._check_deadline()
            try:
                lines = self._batch()
                self.pending = len(lines)
                for line in lines:
                    self.pending -= 1
                    yield line
                if final and not lines:
                    return  # drained after the process ended
                if not lines and (final or self._pacing.state_due()):
                    self.process = self.client.get_process(self.process_id)
                    self._pacing.last_state_check = time.monotonic()
                    if self.attempts.due(self.process):
                        self.attempts.remember(self.client.get_executors())
                        yield self.attempts.marker(self.process, self.cursor.last_timestamp)
                    if self.waiting.due(self.process):
                        warning = self.waiting.warning(self.process, self.client.get_executors(),
                                                       self.cursor.last_timestamp)
                        if warning is not None:
                            yield warning
                    if ProcessState(self.process.state).is_final:
                        final = True
                        continue
                self._pacing.reached()
                self._pacing.got_lines(len(lines))
                if len(lines) < MAX_LOG_COUNT - 1:
                    time.sleep(self._pacing.interval)
            except (Unreachable, ServerError) as exc:
                time.sleep(self._pacing.unreachable(exc))


class AsyncLogFollower(LogFollower):
    """The same for asyncio (the Airflow trigger, Prefect async tasks)."""

    async def _abatch(self) -> list[Log]:
        batch = await self.client.get_logs(self.process_id, since=self.cursor.query_since(), count=MAX_LOG_COUNT)
        return self.cursor.accept(batch)

    def __iter__(self):  # pragma: no cover - guard against mixing faces
        raise TypeError("use `async for` with an async client")

    async def __aiter__(self) -> AsyncIterator[Log]:
        import asyncio  # here, not at the top: the sync CLI should not pay asyncio's import

        final = False
        while True:
            self._check_deadline()
            try:
                lines = await self._abatch()
                self.pending = len(lines)
                for line in lines:
                    self.pending -= 1
                    yield line
                if final and not lines:
                    return
                if not lines and (final or self._pacing.state_due()):
                    self.process = await self.client.get_process(self.process_id)
                    self._pacing.last_state_check = time.monotonic()
                    if self.attempts.due(self.process):
                        self.attempts.remember(await self.client.get_executors())
                        yield self.attempts.marker(self.process, self.cursor.last_timestamp)
                    if self.waiting.due(self.process):
                        warning = self.waiting.warning(self.process, await self.client.get_executors(),
                                                       self.cursor.last_timestamp)
                        if warning is not None:
                            yield warning
                    if ProcessState(self.process.state).is_final:
                        final = True
                        continue
                self._pacing.reached()
                self._pacing.got_lines(len(lines))
                if len(lines) < MAX_LOG_COUNT - 1:
                    await asyncio.sleep(self._pacing.interval)
            except (Unreachable, ServerError) as exc:
                await asyncio.sleep(self._pacing.unreachable(exc))


def follow_logs(client, process_id: str, since: int = 0, **kwargs) -> LogFollower:
    return LogFollower(client, process_id, since, **kwargs)


def afollow_logs(client, process_id: str, since: int = 0, **kwargs) -> AsyncLogFollower:
    return AsyncLogFollower(client, process_id, since, **kwargs)
