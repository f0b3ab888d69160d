"""What a finished job hands back to the CLI, Airflow (XCom) and Prefect."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from pydantic import BaseModel, Field

from pollinator.errors import ProjectError
from pollinator.pins import pinned
from pollinator.run.pinned import ResultFile
from pollinator.colonies.models import Process, ProcessState, parse_go_time


class JobResult(BaseModel):
    process_id: str
    state: str = Field(description="SUCCESS, FAILED or CANCELLED")
    output: list[Any] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    run_id: str = Field("", description="the run's id (POLLINATOR_RUN_ID); its files live under "
                        "/pollinator/<name>/runs/<run_id>/")
    result_label: str = Field("", description="this run's own result label (only this run writes there)")
    result_snapshot_id: str = Field("", description="the ColonyFS snapshot freezing this run's result files "
                                    "(set on SUCCESS); mount exactly them with pinned_input()")
    result_snapshot_files: list[ResultFile] = Field(
        default_factory=list, description="the files of result_snapshot_id: path, size, checksum (no .pollinator/)")
    latest_label: str = Field("", description="the shared label this run's results were added to after success")
    result_dir: str = ""
    result_files: list[str] = Field(default_factory=list)
    dashboard_url: str = ""
    executor: str = ""
    submitted_at: Optional[datetime] = None
    started_at: Optional[datetime] = None
    ended_at: Optional[datetime] = None
    seconds: Optional[float] = None
    return_value: Any = Field(None, description="the JSON value the job wrote to $POLLINATOR_RETURN (None if none)")
    returned: bool = Field(False, description="whether the job wrote $POLLINATOR_RETURN (tells null from nothing)")
    exit_code: Optional[int] = Field(None, description="the command's exit code from the launcher's exit record, "
                                                       "when it failed (None: succeeded, or unknown)")

    def pinned_input(self) -> str:
        """The ``inputs=`` value mounting exactly this run's result files (``result_label@result_snapshot_id``)."""
        if not self.result_snapshot_id:
            raise ProjectError(f"process {self.process_id} has no result snapshot (it did not succeed, or ran "
                               "before results were pinned): mount its result_label instead")
        return pinned(self.result_label, self.result_snapshot_id)

    def pin_record(self, max_files: int = 1000) -> dict[str, Any]:
        """What a pinned result is to other systems (an Airflow asset event's ``extra``, Prefect asset
        metadata, lineage facets): JSON, no secrets; ``input`` is the value that mounts exactly these files.

        At most ``max_files`` files are listed (``files_total`` says how many there are).
        """
        files = [f.model_dump() for f in self.result_snapshot_files]
        return {"snapshot_id": self.result_snapshot_id, "label": self.result_label, "input": self.pinned_input(),
                "latest_label": getattr(self, "latest_label", ""), "run_id": getattr(self, "run_id", ""),
                "process_id": self.process_id, "files": files[:max_files],
                "files_total": len(files)}

    @property
    def ok(self) -> bool:
        return self.state == "SUCCESS"

    @classmethod
    def from_process(cls, process: Process, **extra: Any) -> "JobResult":
        submitted = parse_go_time(process.submissiontime)
        started = parse_go_time(process.starttime)
        ended = parse_go_time(process.endtime)
        began = started or submitted
        seconds = (ended - began).total_seconds() if ended and began else None
        return cls(process_id=process.processid, state=ProcessState(process.state).name,
                   output=list(process.out or []), errors=list(process.errors or []),
                   submitted_at=submitted, started_at=started, ended_at=ended, seconds=seconds, **extra)

    def to_xcom(self) -> dict[str, Any]:
        """JSON-safe and free of secrets (nothing secret is ever put in a JobResult)."""
        return self.model_dump(mode="json")
