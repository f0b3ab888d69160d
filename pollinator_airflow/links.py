"""The "ColonyOS process" extra link: ``<dashboard>/process?processid=<id>``.

The operator pushes the finished URL to XCom as soon as the process id is
known (so the button works while the task is still running); ``get_link``
reads it back. No connection lookup happens where the link is rendered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

PROCESS_URL_KEY = "process_url"


class PollinatorProcessLink(BaseOperatorLink):
    """Open the ColonyOS dashboard on the process this task ran (empty without a dashboard URL)."""

    name = "ColonyOS process"

    def get_link(self, operator: "BaseOperator", *, ti_key: "TaskInstanceKey") -> str:
        from airflow.sdk.execution_time.xcom import XCom

        value: Any = XCom.get_value(ti_key=ti_key, key=PROCESS_URL_KEY)
        return value if isinstance(value, str) else ""
