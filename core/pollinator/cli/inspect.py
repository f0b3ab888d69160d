"""Commands that look at (or cancel) what runs in the colony: executors, ps, get, logs, cancel.

Read-only except ``cancel``. Every server-provided string is printed through
:mod:`pollinator.cli.output`, so nothing a job logs can drive the terminal.
"""

from __future__ import annotations

import enum
import shlex
from typing import Any, Optional

import typer

from pollinator.cli import common, output
from pollinator.colonies.models import ExecutorState, Log, Process, ProcessState
from pollinator.colonies.rpc import MAX_LOG_COUNT
from pollinator.run.follow import LogCursor

JsonOpt = typer.Option(False, "--json", help="Print JSON instead of a table.")


class StateName(str, enum.Enum):
    waiting = "waiting"
    running = "running"
    success = "success"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def state(self) -> ProcessState:
        return ProcessState[self.name.upper()]


def _state_name(state: int) -> str:
    try:
        return ProcessState(state).name.lower()
    except ValueError:
        return str(state)


def _executor_state(state: int) -> str:
    try:
        return ExecutorState(state).name.lower()
    except ValueError:
        return str(state)


def _command_line(process: Process) -> str:
    kwargs = process.spec.kwargs or {}
    parts = [str(kwargs.get("cmd", "") or "")]
    args = kwargs.get("args") or []
    if isinstance(args, list):
        parts += [shlex.quote(str(a)) for a in args]
    return " ".join(p for p in parts if p) or process.spec.funcname


def _process_json(process: Process) -> dict[str, Any]:
    data = process.to_wire()
    spec = data.get("spec") or {}
    if isinstance(spec.get("env"), dict):
        spec["env"] = output.mask_env(spec["env"])
    return data


def executors_command(json_out: bool = JsonOpt) -> None:
    """List the executors registered in the colony."""
    with common.open_client() as client:
        executors = client.get_executors()
    if json_out:
        output.print_json([e.to_wire() for e in executors])
        return
    if not executors:
        output.print_info("No executors are registered in this colony.")
        return
    rows = [(e.executorname, e.executortype, _executor_state(e.state), output.fmt_time(e.lastheardfromtime))
            for e in sorted(executors, key=lambda e: (e.executortype, e.executorname))]
    output.stdout().print(output.table(["NAME", "TYPE", "STATE", "LAST HEARD FROM"], rows))


def ps_command(
    state: Optional[StateName] = typer.Option(
        None, "--state", "-s", case_sensitive=False, help="Only this state (default: waiting and running)."),
    count: int = typer.Option(100, "--count", "-n", min=1, max=100,
                             help="At most this many per state (the server allows at most 100)."),
    json_out: bool = JsonOpt,
) -> None:
    """List processes (default: the waiting and running ones), newest first."""
    states = [state.state] if state is not None else [ProcessState.WAITING, ProcessState.RUNNING]
    processes: list[Process] = []
    with common.open_client() as client:
        for st in states:
            processes += client.get_processes(st, count=count)
    processes.sort(key=lambda p: p.submissiontime, reverse=True)
    if json_out:
        output.print_json([_process_json(p) for p in processes])
        return
    if not processes:
        output.print_info(f"No {' or '.join(s.name.lower() for s in states)} processes.")
        return
    rows = [(p.processid, _state_name(p.state), p.spec.conditions.executortype, _command_line(p),
             output.fmt_time(p.submissiontime)) for p in processes]
    output.stdout().print(output.table(["PROCESS ID", "STATE", "EXECUTOR TYPE", "COMMAND", "SUBMITTED"], rows,
                                             no_wrap=["PROCESS ID"]))


def get_command(process_id: str = typer.Argument(..., help="The process id."), json_out: bool = JsonOpt) -> None:
    """Show one process: state, times, what it runs and where, errors and output."""
    with common.open_client() as client:
        process = client.get_process(process_id)
    if json_out:
        output.print_json(_process_json(process))
        return
    spec = process.spec
    kwargs = spec.kwargs or {}
    env = output.mask_env(spec.env) or {}
    rows: list[tuple[str, Any]] = [
        ("process id", process.processid),
        ("state", _state_name(process.state)),
        ("function", spec.funcname),
        ("command", _command_line(process)),
        ("image", kwargs.get("docker-image", "")),
        ("executor type", spec.conditions.executortype),
        ("executor names", ", ".join(spec.conditions.executornames or []) or "-"),
        ("assigned executor", process.assignedexecutorid or "-"),
        ("label", spec.label),
        ("submitted", output.fmt_time(process.submissiontime)),
        ("started", output.fmt_time(process.starttime)),
        ("ended", output.fmt_time(process.endtime)),
        ("retries", f"{process.retries} of {spec.maxretries}"),
    ]
    rows += [(f"env {k}", v) for k, v in sorted(env.items())]
    rows += [("error", e) for e in process.errors or []]
    rows += [("output", o) for o in process.out or []]
    try:
        url = common.load_settings().process_url(process.processid)
    except Exception:  # the URL is a nicety; settings were already good enough to connect
        url = ""
    if url:
        rows.append(("dashboard", url))
    table = output.table(["", ""], rows)
    table.show_header = False
    output.stdout().print(table)


def fetch_logs(client: Any, process_id: str) -> list[Log]:
    """Every log line the server holds for a process, paging past the server's per-call limit.

    Pages with the followers' cursor (``run.follow.LogCursor``): ``since`` is exclusive, so each page
    asks from the last timestamp - 1 and drops what it already gave, and lines sharing a nanosecond at
    a page boundary all come through."""
    cursor = LogCursor()
    logs: list[Log] = []
    while True:
        batch = client.get_logs(process_id, since=cursor.query_since(), count=MAX_LOG_COUNT)
        fresh = cursor.accept(batch)
        logs += fresh
        if len(batch) < MAX_LOG_COUNT or not fresh:  # the end, or a full page of one nanosecond: no way on
            return logs


def logs_command(process_id: str = typer.Argument(..., help="The process id."), json_out: bool = JsonOpt) -> None:
    """Print the logs a process has written so far."""
    with common.open_client() as client:
        logs = fetch_logs(client, process_id)
    if json_out:
        output.print_json([log.to_wire() for log in logs])
        return
    if not logs:
        output.print_info("No logs yet.")
        return
    for log in logs:
        output.write_log(log.message)


def cancel_command(process_id: str = typer.Argument(..., help="The process id.")) -> None:
    """Cancel a waiting or running process."""
    with common.open_client() as client:
        client.cancel_process(process_id)
    output.print_info(f"Cancelled {output.safe_text(process_id)}")
