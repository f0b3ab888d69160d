"""Process state transitions, shared by the request handlers and the deadline checker.

Each method is one DB transition with the Go server's guards and messages
(``MarkSuccessful``/``MarkFailed``/``MarkCancelled``/``Assign``/``Unassign``),
followed by a signal so long-polls and subscribers wake up.
"""

from __future__ import annotations

from typing import Any, Optional

from pollinator.dev.events import Events
from pollinator.dev.store import CANCELLED, FAILED, RUNNING, SUCCESS, WAITING, Store
from pollinator.dev.wire import RPCError, db_ns, now_ns, unix_seconds

_NS = 1_000_000_000
MAX_EXEC_EXCEEDED = "Maximum execution time limit exceeded"
MAX_WAIT_EXCEEDED = "Maximum waiting time limit exceeded"


class Controller:
    def __init__(self, store: Store, events: Events):
        self.store = store
        self.events = events

    def _signal(self, process_id: str) -> None:
        process = self.store.get_process(process_id)
        if process is not None:
            self.events.signal(process)

    def submit(self, process: dict[str, Any]) -> dict[str, Any]:
        self.store.add_process(process)
        added = self.store.get_process(process["id"])
        assert added is not None
        self.events.signal(added)
        return added

    def assign(self, executor: dict[str, Any], colony: str, cpu: int, mem: int) -> Optional[tuple[dict[str, Any], int]]:
        """Pick and assign the next process; returns (record before assignment, start ns) or None."""
        self.store.mark_alive(executor["id"])
        candidate = self.store.select_candidate(colony, executor["name"], executor["type"], executor["location"],
                                                cpu, mem)
        if candidate is None:
            return None
        start = now_ns()
        fields: dict[str, Any] = {"is_assigned": 1, "start": db_ns(start), "assigned": executor["id"],
                                  "state": RUNNING, "attr_state": RUNNING}
        maxexectime = candidate["spec"]["maxexectime"]
        if maxexectime > 0:
            fields["execdeadline"] = db_ns(start + maxexectime * _NS)
        self.store.update_process(candidate["id"], **fields)
        self._signal(candidate["id"])
        return candidate, start

    def close_successful(self, process_id: str, out: list[Any]) -> None:
        process = self.store.get_process(process_id)
        if process is None:
            raise RPCError(400, f"Process with Id <{process_id}> not found")
        if out:
            # The Go controller stores the output before checking the state.
            self.store.update_process(process_id, out=out)
        state = process["state"]
        if state == FAILED:
            raise RPCError(400, "Tried to set failed process as successful")
        if state == CANCELLED:
            raise RPCError(400, "Tried to set cancelled process as successful")
        if state == WAITING:
            raise RPCError(400, "Tried to set waiting process as successful without being running")
        self.store.update_process(process_id, end=db_ns(now_ns()), state=SUCCESS, attr_state=SUCCESS)
        self._signal(process_id)

    def close_failed(self, process_id: str, errors: Optional[list[str]]) -> None:
        process = self.store.get_process(process_id)
        if process is None:
            raise RPCError(400, f"Process with Id <{process_id}> not found")
        state = process["state"]
        if state == SUCCESS:
            raise RPCError(400, "Tried to set successful process as failed")
        if state == FAILED:
            raise RPCError(400, "Tried to set failed process as failed")
        if state == CANCELLED:
            raise RPCError(400, "Tried to set cancelled process as failed")
        self.store.update_process(process_id, end=db_ns(now_ns()), state=FAILED, attr_state=FAILED, errors=errors)
        self._signal(process_id)

    def cancel(self, process_id: str) -> None:
        process = self.store.get_process(process_id)
        if process is None:
            raise RPCError(400, f"Process with Id <{process_id}> not found")
        state = process["state"]
        if state == SUCCESS:
            raise RPCError(400, "Tried to cancel successful process")
        if state == FAILED:
            raise RPCError(400, "Tried to cancel failed process")
        if state == CANCELLED:
            raise RPCError(400, "Tried to cancel already cancelled process")
        self.store.update_process(process_id, end=db_ns(now_ns()), state=CANCELLED, attr_state=CANCELLED)
        self._signal(process_id)

    def unassign(self, process: dict[str, Any]) -> None:
        """Back to the queue after a missed deadline: retries+1, end time stamped, attributes PENDING."""
        now = now_ns()
        fields: dict[str, Any] = {"is_assigned": 0, "end": db_ns(now), "state": WAITING,
                                  "retries": process["retries"] + 1, "assigned": "", "attr_state": 0}
        maxwaittime = process["spec"]["maxwaittime"]
        if maxwaittime > 0:
            fields["waitdeadline"] = db_ns(now + maxwaittime * _NS)
        self.store.update_process(process["id"], **fields)
        self._signal(process["id"])

    def check_deadlines(self) -> None:
        """One pass of the Go TimeoutLoop (it runs every second)."""
        now_s = unix_seconds(now_ns())
        for process in self.store.processes_in_state(RUNNING, limit=1_000_000):
            spec = process["spec"]
            if spec["maxexectime"] == -1 or not now_s > unix_seconds(process["execdeadline"]):
                continue
            if process["retries"] >= spec["maxretries"] and spec["maxretries"] > -1:
                try:
                    self.close_failed(process["id"], [MAX_EXEC_EXCEEDED])
                except RPCError:
                    pass
            else:
                self.unassign(process)
        for process in self.store.processes_in_state(WAITING, limit=1000):
            maxwaittime = process["spec"]["maxwaittime"]
            if maxwaittime in (-1, 0) or not now_s > unix_seconds(process["waitdeadline"]):
                continue
            try:
                self.close_failed(process["id"], [MAX_WAIT_EXCEEDED])
            except RPCError:
                pass
