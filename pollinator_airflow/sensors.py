"""``PollinatorSensor``: wait for a ColonyOS process that something else submitted.

Useful when a process is started outside this task (another DAG, the
``pollinator`` CLI, a person). Poke mode asks for the state each
``poke_interval``; ``deferrable=True`` hands the wait to the same
``PollinatorTrigger`` the operator uses. The sensor never fetches results;
it returns ``{"process_id", "state", "output"}``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Optional, Sequence

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowException

from pollinator_airflow.operators import failure_message

if TYPE_CHECKING:
    from airflow.sdk import Context

    from pollinator_airflow.hooks import PollinatorHook


class PollinatorSensor(BaseSensorOperator):
    """Succeed when the process is SUCCESS; fail (with its errors) when it is FAILED or CANCELLED.

    :param process_id: the process to wait for (templated, e.g. another task's ``process_id`` XCom).
    :param colonies_conn_id: the ``colonies`` connection.
    :param deferrable: wait in the triggerer instead of a worker slot.
    """

    template_fields: Sequence[str] = ("process_id",)
    ui_color = "#f6c945"

    def __init__(self, *, process_id: str, colonies_conn_id: str = "colonies_default",
                 deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
                 **kwargs: Any) -> None:
        kwargs.setdefault("poke_interval", 10)
        super().__init__(**kwargs)
        self.process_id = process_id
        self.colonies_conn_id = colonies_conn_id
        self.deferrable = deferrable
        self._hook: Optional["PollinatorHook"] = None

    @property
    def hook(self) -> "PollinatorHook":
        if self._hook is None:
            from pollinator_airflow.hooks import PollinatorHook

            self._hook = PollinatorHook(self.colonies_conn_id)
        return self._hook

    def poke(self, context: "Context") -> PokeReturnValue:
        from pollinator.colonies.models import ProcessState
        from pollinator.run.resume import is_active

        process = self.hook.get_process(self.process_id)
        state = ProcessState(process.state).name
        self.log.info("ColonyOS process %s is %s", self.process_id, state)
        if is_active(process.state):
            return PokeReturnValue(False)
        if state != "SUCCESS":
            raise AirflowException(failure_message(self.process_id, state, list(process.errors or [])))
        return PokeReturnValue(True, {"process_id": self.process_id, "state": state,
                                      "output": list(process.out or [])})

    def execute(self, context: "Context") -> Any:
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        from pollinator_airflow.triggers import PollinatorTrigger

        self.defer(trigger=PollinatorTrigger(process_id=self.process_id, colonies_conn_id=self.colonies_conn_id,
                                             poll_interval=float(self.poke_interval)),
                   method_name="execute_complete",
                   timeout=timedelta(seconds=self.timeout) if self.timeout else None)

    def execute_complete(self, context: "Context", event: dict[str, Any]) -> Any:
        process_id = str(event.get("process_id") or self.process_id)
        if event.get("status") == "error":
            raise AirflowException(f"Following ColonyOS process {process_id} failed: {event.get('message')}")
        if event.get("status") != "success":
            raise AirflowException(failure_message(process_id, str(event.get("state") or "").upper(),
                                                   event.get("errors") or []))
        return self.poke(context).xcom_value
