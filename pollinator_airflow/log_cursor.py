"""The trigger's log cursor, kept in Airflow itself so a rebuilt trigger resumes after the last line it logged.

Airflow builds a trigger from the kwargs it stored when the task deferred, both after a triggerer
restart and when another triggerer takes the trigger over; the cursor the running trigger advanced is
not in those kwargs. So the trigger also writes its cursor, after each batch of lines it logged, as an
XCom of its own task instance (key ``pollinator_log_cursor``), through the task SDK's XCom API that the
Airflow 3.3 triggerer serves to triggers, and a new trigger starts from the later of that and its
``since`` kwarg.

Why an XCom of the task instance: Airflow clears a task instance's XComs when a new try starts and keeps
them while the task resumes from deferral, so the cursor lives exactly as long as the try's log does (a
new try logs the process from the start again, into its own log). The value names the process, so a
cursor of another process is never applied.

A trigger with no task instance (unit tests, ``dag.test()`` running it inline) keeps no cursor; one
whose triggerer serves no XCom API (older Airflow) says so once in the task log. Either way the trigger
then works from its kwargs alone, as does one whose reads or writes fail (said once, never fatal).
Writing happens after the lines are logged, never before: a triggerer killed between the two repeats
that one batch of lines rather than losing it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

CURSOR_KEY = "pollinator_log_cursor"
TIMEOUT = 30.0  # seconds for one read or write through the triggerer's supervisor (the metadata DB behind it)


class LogCursorStore:
    """Read and write one task instance's log cursor for one process; never fails the trigger."""

    def __init__(self, task_instance: Any, process_id: str, log: Any) -> None:
        self.process_id = process_id
        self._log = log
        self._where: Optional[dict[str, Any]] = None
        self._warned = False
        self._xcom: Any = None
        if task_instance is not None and getattr(task_instance, "run_id", None):
            map_index = getattr(task_instance, "map_index", -1)
            self._where = {"dag_id": task_instance.dag_id, "task_id": task_instance.task_id,
                           "run_id": task_instance.run_id, "map_index": -1 if map_index is None else map_index}

    def _backend(self) -> Any:
        """The XCom class, or None (said once) when no triggerer supervisor can be reached."""
        if self._where is None:  # not run by a triggerer for a task (unit tests, dag.test): nothing to key on
            return None
        if self._xcom is None:
            try:
                from airflow.sdk.execution_time import task_runner
                from airflow.sdk.execution_time.xcom import XCom

                if getattr(task_runner, "SUPERVISOR_COMMS", None) is None:
                    raise LookupError("no supervisor comms in this process")
            except (ImportError, LookupError) as exc:
                self._where = None
                self._unavailable(str(exc))
                return None
            self._xcom = XCom
        return self._xcom

    def _unavailable(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            self._log.info("Log cursor not kept in Airflow (%s): a rebuilt trigger starts from its stored "
                           "kwargs", why)

    def _failed(self, action: str, exc: BaseException) -> None:
        if not self._warned:  # once: a broken store must not flood the task log
            self._warned = True
            self._log.warning("Could not %s the log cursor XCom %s: %s: %s (a rebuilt trigger may repeat lines)",
                              action, CURSOR_KEY, type(exc).__name__, exc)

    async def load(self) -> int:
        """The cursor a previous trigger of this try stored for this process, else 0."""
        xcom = self._backend()
        if xcom is None or self._where is None:
            return 0
        try:
            value = await asyncio.wait_for(xcom.aget_one(key=CURSOR_KEY, **self._where), TIMEOUT)
        except Exception as exc:
            self._failed("read", exc)
            return 0
        if isinstance(value, dict) and value.get("process_id") == self.process_id:
            try:
                return max(0, int(value.get("since") or 0))
            except (TypeError, ValueError):
                return 0
        return 0

    async def save(self, since: int) -> None:
        """Record that every line stamped up to ``since`` is in the task log."""
        xcom = self._backend()
        if xcom is None or self._where is None:
            return
        try:
            await asyncio.wait_for(xcom.aset(CURSOR_KEY, {"process_id": self.process_id, "since": int(since)},
                                             **self._where), TIMEOUT)
        except Exception as exc:
            self._failed("write", exc)
