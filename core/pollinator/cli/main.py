"""The ``pollinator`` command: the root app, error policy, and where every command is registered.

Error policy (one place, for every command in every module): a
:class:`~pollinator.errors.PollinatorError` prints one ``error: ...`` line on
stderr and exits 2 (config/project: fix locally) or 1 (server/remote); any
other exception prints one ``internal error`` line (``POLLINATOR_DEBUG=1``
shows the traceback). Command functions therefore just raise.

Commands living in other modules are registered by name in
:data:`LAZY_COMMANDS` and imported only when invoked (or when help lists
them): `pollinator run` must not pay for the local colony, the executor or
the inspection commands, and `pollinator --version` pays for none of them.
Start-up time is most of a short `run --follow`, so keep this module's own
imports light.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperGroup

import pollinator
from pollinator.cli import common, output
from pollinator.errors import PollinatorError, ProjectError
from pollinator.project import DEFAULT_EXECUTOR_TYPE, PROJECT_FILE, Project, load_project

SNAPSHOT_PLACEHOLDER = "<snapshot>"
COLONY_PLACEHOLDER = "<colony>"


def _framework_exceptions() -> tuple[type[BaseException], ...]:
    """Exits, aborts and usage errors, which the framework reports itself (usage errors exit 2).

    Newer typer vendors click (its exceptions derive from ``typer.TyperException``);
    older typer raises click's own, and then click is already imported by typer
    (looked up, not imported: importing click costs every start ~7 ms).
    """
    kinds: list[type[BaseException]] = [typer.Exit, typer.Abort]
    if hasattr(typer, "TyperException"):
        kinds.append(typer.TyperException)
    click = sys.modules.get("click")
    if click is not None:
        kinds += [click.exceptions.Exit, click.exceptions.Abort, click.ClickException]
    return tuple(kinds)


_FRAMEWORK_EXCEPTIONS = _framework_exceptions()


# name -> (module, attribute): a command function, or a typer.Typer for a command group. Order = help order.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("pollinator.cli.run", "run_command"),
    "attach": ("pollinator.cli.run", "attach_command"),
    "sync": ("pollinator.cli.fs", "sync_command"),
    "pull": ("pollinator.cli.fs", "pull_command"),
    "fs": ("pollinator.cli.fs", "fs_app"),
    "ps": ("pollinator.cli.inspect", "ps_command"),
    "get": ("pollinator.cli.inspect", "get_command"),
    "logs": ("pollinator.cli.inspect", "logs_command"),
    "cancel": ("pollinator.cli.inspect", "cancel_command"),
    "executors": ("pollinator.cli.inspect", "executors_command"),
    "dev": ("pollinator.cli.dev", "dev_app"),
    "executor": ("pollinator.cli.executor", "executor_app"),
}


def load_command(name: str) -> Any:
    """The click command for one of :data:`LAZY_COMMANDS`, built the way typer builds an eager one."""
    module, attribute = LAZY_COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    command: Any
    if isinstance(target, typer.Typer):
        command = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class _Group(TyperGroup):
    """The root group: lazy commands, and every error raised below it as one line and an exit code."""

    def list_commands(self, ctx: Any) -> list[str]:
        eager = super().list_commands(ctx)
        return eager + [name for name in LAZY_COMMANDS if name not in eager]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in LAZY_COMMANDS:
            command = load_command(cmd_name)
            self.add_command(command, cmd_name)
        return command

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _FRAMEWORK_EXCEPTIONS:
            raise
        except PollinatorError as exc:
            output.print_error(exc)
            raise typer.Exit(common.exit_code_for(exc)) from None
        except KeyboardInterrupt:
            output.print_error("interrupted")
            raise typer.Exit(130) from None
        except OSError as exc:
            output.print_error(f"{exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}")
            raise typer.Exit(common.EXIT_REMOTE) from None
        except Exception as exc:
            if os.environ.get("POLLINATOR_DEBUG"):
                raise
            output.print_error(f"{type(exc).__name__}: {exc} (set POLLINATOR_DEBUG=1 for a traceback)",
                               prefix="internal error")
            raise typer.Exit(common.EXIT_REMOTE) from None


app = typer.Typer(
    cls=_Group,
    name="pollinator",
    help="Run Airflow and Prefect steps (or any container command) as ColonyOS jobs on HPC and Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        output.echo_raw(f"pollinator {pollinator.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Run Airflow and Prefect steps (or any container command) as ColonyOS jobs on HPC and Kubernetes."""


@app.command("version")
def version_command() -> None:
    """Print the version (as the Go tool's `pollinator version`)."""
    output.echo_raw(f"pollinator {pollinator.__version__}")


def _template(name: str) -> str:
    from importlib import resources

    return resources.files("pollinator").joinpath("templates", name).read_text(encoding="utf-8")


@app.command("new")
def new_command(
    executor: str = typer.Option(..., "--executor", "-e", "--executorname", "-n",
                                 help="The executor name to run on (conditions.executorNames)."),
    executor_type: str = typer.Option(DEFAULT_EXECUTOR_TYPE, "--executor-type", "-t",
                                      help="The executor type (conditions.executorType)."),
    directory: Path = typer.Argument(Path("."), help="Where to create the project (must be empty or absent)."),
) -> None:
    """Create a project: project.yaml, cfs/src/main.py, cfs/data/hello.txt and cfs/result/ (as the Go tool)."""
    from pydantic import ValidationError

    if directory.exists() and not directory.is_dir():
        raise ProjectError(f"{directory} is a file, not a directory")
    if directory.is_dir() and any(directory.iterdir()):
        raise ProjectError(f"{directory} is not empty: create a new, empty directory and run `pollinator new` there")
    if not executor.strip() or not executor_type.strip():
        raise ProjectError("--executor and --executor-type must not be empty")
    try:
        project = Project.scaffold(executor, executor_type)
    except ValidationError as exc:
        raise ProjectError(f"cannot create a project for executor {executor!r}: {exc}") from None
    cfs = directory / "cfs"
    for sub in ("src", "data", "result"):
        (cfs / sub).mkdir(parents=True, exist_ok=True)
    project.write(directory / PROJECT_FILE)
    (cfs / "data" / "hello.txt").write_text(_template("hello.txt"), encoding="utf-8")
    (cfs / "src" / "main.py").write_text(_template("main.py"), encoding="utf-8")
    for made in (PROJECT_FILE, "cfs/src/main.py", "cfs/data/hello.txt", "cfs/result/"):
        output.print_info(f"created {directory / made if str(directory) != '.' else made}")
    output.print_info(f"project {project.project_name}: edit project.yaml, then `pollinator run`")


@app.command("funcspec")
def funcspec_command(
    snapshot_id: str = typer.Option(SNAPSHOT_PLACEHOLDER, "--snapshot-id",
                                    help="The src snapshot id to reference (nothing is uploaded)."),
    colony: Optional[str] = typer.Option(None, "--colony",
                                         help="Colony name (default: $COLONIES_COLONY_NAME, else <colony>)."),
    project_path: Path = typer.Option(Path("."), "--project", "-p", help="project.yaml or its directory."),
    input_: list[str] = typer.Option([], "--input", "-i", metavar="NAME=LABEL",
                                     help="An input mount as `pollinator run --input` takes it (repeatable)."),
) -> None:
    """Print the function spec `pollinator run` would submit for ./project.yaml (no sync, no submit).

    The same spec as `pollinator run --dry-run`. Unlike the Go tool's funcspec
    this uploads nothing: values only known at submit time (the src snapshot
    id unless --snapshot-id is given, the run id, the client token, the named
    executors' type when executorType is left out) are placeholders like <snapshot>.
    """
    from pollinator.cli.common import parse_inputs
    from pollinator.cli.run import preview_spec
    from pollinator.spec import spec_json

    snapshot = None if snapshot_id == SNAPSHOT_PLACEHOLDER else snapshot_id
    output.echo_raw(spec_json(preview_spec(project_path, colony, snapshot, parse_inputs(input_))))


def main() -> None:
    """Run the app (the console script enters through :mod:`pollinator.cli.__main__`, which trims start-up first)."""
    try:
        app(prog_name="pollinator")
    finally:
        # The process is ending: spare the interpreter's final garbage collection over every imported
        # module's objects (~40 ms, a tenth of a short `run --follow`). atexit handlers, weakref
        # finalizers and buffered output flush as usual.
        gc.freeze()


if __name__ == "__main__":
    main()
