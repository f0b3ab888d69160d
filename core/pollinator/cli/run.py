"""`pollinator run` and `pollinator attach`: the seed's headline workflow on the command line.

An interrupted `pollinator run` (closed terminal, SIGKILL) leaves its client
token in ``.pollinator/run.json``; the next `pollinator run` in that project
re-attaches to the still-running process instead of submitting a second one.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from pydantic import SecretStr

from pollinator.cli import common, output
from pollinator.colonies import crypto
from pollinator.colonies.models import FunctionSpec, ProcessState
from pollinator.config import Settings
from pollinator.errors import ColoniesError, ConfigError, JobFailed, ProjectError, SyncError
from pollinator.run import Job, JobResult, ProcessHandle
from pollinator.run.build import PLACEHOLDER_TOKEN
from pollinator.run.follow import INTERACTIVE
from pollinator.spec import spec_json

EXIT_CANCELLED = 130
MAX_EXEC_EXCEEDED = "Maximum execution time limit exceeded"  # the server's own error text
EXIT_DOWNLOAD = 3
"""The process succeeded but its results could not be brought home (`pollinator attach <id>` fetches them)."""
STATE_FILE = Path(".pollinator") / "run.json"
COLONY_PLACEHOLDER = "<colony>"


def preview_settings(colony: Optional[str] = None) -> Settings:
    """Settings for a spec preview: the environment's colony (or ``colony``), else a placeholder name.

    A preview talks to no server, so it neither needs a key nor looks for a local colony.
    """
    try:
        settings = Settings.from_env()
    except ConfigError:
        name = os.environ.get("COLONIES_COLONY_NAME", "").strip() or COLONY_PLACEHOLDER
        settings = Settings(colony_name=name, prvkey=SecretStr("0" * 64))
    return settings.model_copy(update={"colony_name": colony}) if colony else settings


def project_job(project_dir: Path, settings: Settings, token: str,
                inputs: Optional[dict[str, str]] = None) -> Job:
    """The one job `run`, `run --dry-run` and `funcspec` describe for a project directory
    (``inputs``: the --input mounts, added to project.yaml's inputs:)."""
    return Job.from_project(project_dir, settings, token=token, inputs=inputs or None)


def preview_spec(project_dir: Path, colony: Optional[str] = None, snapshot_id: Optional[str] = None,
                 inputs: Optional[dict[str, str]] = None) -> FunctionSpec:
    """What `pollinator run` would submit, with placeholders for what only submit time knows."""
    job = project_job(project_dir, preview_settings(colony), PLACEHOLDER_TOKEN, inputs)
    return job.spec(snapshot_id) if snapshot_id else job.preview()


def _pending_token(project_dir: Path) -> Optional[str]:
    path = project_dir / STATE_FILE
    try:
        return json.loads(path.read_text())["token"]
    except (OSError, ValueError, KeyError):
        return None


def _remember(project_dir: Path, token: str, process_id: str = "") -> None:
    path = project_dir / STATE_FILE
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"token": token, "process_id": process_id}))


def _forget(project_dir: Path, process_id: Optional[str] = None) -> None:
    """Drop the interrupted-run record; given a process id, only if the record is that process's.

    `pollinator attach X` in a project must not forget the token of another
    interrupted run Y there: the next `pollinator run` would submit a second job
    instead of re-attaching to Y.
    """
    path = project_dir / STATE_FILE
    if process_id is not None:
        try:
            recorded = json.loads(path.read_text()).get("process_id")
        except (OSError, ValueError, AttributeError):
            return
        if recorded != process_id:
            return
    path.unlink(missing_ok=True)


def _report(result: JobResult) -> None:
    output.print_info(f"process {result.process_id} {result.state}"
                      + (f" in {result.seconds:.1f} s" if result.seconds is not None else ""))
    for name in result.result_files:
        output.print_info(f"  result: {Path(result.result_dir) / name}")
    if result.dashboard_url:
        output.print_info(f"  {result.dashboard_url}")


def _succeeded(job: ProcessHandle) -> bool:
    """Whether the process ended SUCCESS (False when the server cannot say either)."""
    try:
        return ProcessState(job.client.get_process(job.process_id).state) == ProcessState.SUCCESS
    except ColoniesError:
        return False


def _late_errors(job: ProcessHandle, state: str, tries: int = 4) -> list[str]:
    """A FAILED process read without its errors: look again for a moment before printing none.

    A server may set the state and store the errors in two steps; a later `attach` would show them.
    """
    if state != "FAILED":
        return []
    for _ in range(tries):
        time.sleep(0.5)
        try:
            errors = job.client.get_process(job.process_id).errors or []
        except ColoniesError:
            return []
        if errors:
            return list(errors)
    return ["(the executor gave no reason)"]


def _follow_to_end(job: ProcessHandle, project_dir: Optional[Path], detach_on_interrupt: bool) -> None:
    try:
        for line in job.follow(None, None, **INTERACTIVE):
            output.write_log(line.message)
    except KeyboardInterrupt:
        if detach_on_interrupt:
            output.print_info(f"detached; process {job.process_id} keeps running. "
                              f"Follow it again with: pollinator attach {job.process_id}")
            raise typer.Exit(EXIT_CANCELLED) from None
        if sys.stdin.isatty() and not typer.confirm("\nCancel the remote process?", default=True):
            output.print_info(f"left running: pollinator attach {job.process_id}")
            raise typer.Exit(EXIT_CANCELLED) from None
        job.cancel()
        if project_dir is not None:
            _forget(project_dir, job.process_id)
        output.print_error(f"cancelled process {job.process_id}")
        raise typer.Exit(EXIT_CANCELLED) from None
    try:
        result = job.finish()
    except (SyncError, ColoniesError) as exc:
        if not _succeeded(job):
            raise
        output.print_error(f"process {job.process_id} ended SUCCESS, but its results could not be downloaded: "
                           f"{exc}")
        output.print_error(f"they are kept in ColonyFS; fetch them with: pollinator attach {job.process_id}")
        raise typer.Exit(EXIT_DOWNLOAD) from None
    except JobFailed as exc:
        if project_dir is not None:
            _forget(project_dir, job.process_id)
        for err in exc.errors or _late_errors(job, exc.state):
            output.print_error(output.safe_text(err, multiline=True), prefix="remote error")
        if MAX_EXEC_EXCEEDED in exc.errors:
            output.print_error("the server ended it: no executor closed its last attempt within maxexectime "
                               "(counted from assignment); the executor died, hung or could not reach the server. "
                               "Its log above shows how far each attempt got", prefix="why")
        output.print_error(f"process {exc.process_id} ended {exc.state}")
        raise typer.Exit(EXIT_CANCELLED if exc.state == "CANCELLED" else common.EXIT_REMOTE) from None
    if project_dir is not None:
        _forget(project_dir, job.process_id)
    _report(result)


def run_command(
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream the logs, wait, and fetch cfs/result."),
    detach: bool = typer.Option(False, "--detach", help="With --follow: Ctrl-C leaves the process running."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the spec; upload and submit nothing."),
    new: bool = typer.Option(False, "--new", help="Submit anew even if an interrupted run is still going."),
    project_path: Path = typer.Option(Path("."), "--project", "-p", help="The project directory."),
    input_: list[str] = typer.Option([], "--input", "-i", metavar="NAME=LABEL",
                                     help="Mount a ColonyFS label read-only at $POLLINATOR_INPUT_<NAME> "
                                          "(repeatable; adds to project.yaml's inputs:), e.g. "
                                          "prep=/pollinator/prep/result."),
) -> None:
    """Sync cfs/src and cfs/data, snapshot src, submit; with --follow also stream logs and bring results home."""
    project_dir = project_path if project_path.is_dir() else project_path.parent
    inputs = common.parse_inputs(input_)
    if dry_run:
        output.echo_raw(spec_json(preview_spec(project_dir, inputs=inputs)))
        return
    settings = common.load_settings()
    token = None if new else _pending_token(project_dir)
    resumed = token is not None
    token = token or crypto.random_id()
    job = project_job(project_dir, settings, token, inputs)
    job.preview()  # every check before the first local write (run.json), upload or submit
    _remember(project_dir, token)
    with job:
        try:
            process_id = job.submit(reattach=resumed)
        except (ProjectError, SyncError):
            if not resumed:  # refused before anything was submitted: leave the project as it was
                _forget(project_dir)
                try:
                    (project_dir / STATE_FILE).parent.rmdir()
                except OSError:
                    pass  # not empty, or already gone
            raise
        _remember(project_dir, token, process_id)
        if resumed and job.attached:
            output.print_info(f"re-attached to process {process_id} from an interrupted run (--new submits anew)")
        else:
            output.print_info(f"submitted process {process_id}")
        if settings.dashboard_url:
            output.print_info(f"  {settings.process_url(process_id)}")
        if not follow:
            output.print_info(f"follow it with: pollinator attach {process_id}")
            return
        assert job.handle is not None  # submit() recorded it
        _follow_to_end(job.handle, project_dir, detach)


def attach_command(
    process_id: str = typer.Argument(..., help="The process to follow."),
    result_dir: Optional[Path] = typer.Option(None, "--result-dir",
                                              help="Where to put its results (default: ./cfs/result in a project)."),
    detach: bool = typer.Option(False, "--detach", help="Ctrl-C leaves the process running."),
) -> None:
    """Follow a running or finished process, then bring its results home."""
    settings = common.load_settings()
    if result_dir is None and Path("project.yaml").exists():
        result_dir = Path("cfs") / "result"
    with ProcessHandle.attach(settings, process_id, result_dir=result_dir) as handle:
        state = handle.client.get_process(process_id).state
        output.print_info(f"attached to process {process_id} ({ProcessState(state).name})")
        _follow_to_end(handle, Path(".") if Path(".pollinator").is_dir() else None, detach)
