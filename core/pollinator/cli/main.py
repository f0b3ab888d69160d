"""The ``pollinator`` command: the root app, error policy, and where every command is registered.

Error policy (one place, for every command in every module): a
:class:`~pollinator.errors.PollinatorError` prints one ``error: ...`` line on
stderr and exits 2 (config/project: fix locally) or 1 (server/remote); any
other exception prints one ``internal error`` line (``POLLINATOR_DEBUG=1``
shows the traceback). Command functions therefore just raise.

To add commands from another module, add one line per command at the
bottom of this file, guarded with :func:`_optional` while the module may not
exist yet, e.g.::

    if (_fs := _optional("pollinator.cli.fs")) is not None:
        app.add_typer(_fs.fs_app, name="fs")
        app.command("sync")(_fs.sync_command)
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

import typer
from pydantic import ValidationError
from typer.core import TyperGroup

import pollinator
from pollinator.cli import common, inspect, output
from pollinator.errors import PollinatorError, ProjectError
from pollinator.project import DEFAULT_EXECUTOR_TYPE, PROJECT_FILE, Project, load_project
from pollinator.spec import spec_from_project, spec_json

SNAPSHOT_PLACEHOLDER = "<snapshot>"
COLONY_PLACEHOLDER = "<colony>"


def _framework_exceptions() -> tuple[type[BaseException], ...]:
    """Exits, aborts and usage errors, which the framework reports itself (usage errors exit 2).

    Newer typer vendors click (its exceptions derive from ``typer.TyperException``);
    older typer raises click's own.
    """
    kinds: list[type[BaseException]] = [typer.Exit, typer.Abort]
    if hasattr(typer, "TyperException"):
        kinds.append(typer.TyperException)
    try:
        import click
    except ImportError:
        pass
    else:
        kinds += [click.exceptions.Exit, click.exceptions.Abort, click.ClickException]
    return tuple(kinds)


_FRAMEWORK_EXCEPTIONS = _framework_exceptions()


class _Group(TyperGroup):
    """The root group: turns every error raised below it into one line and an exit code."""

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
) -> None:
    """Print the function spec `pollinator run` would submit for ./project.yaml (no sync, no submit).

    Unlike the Go tool's funcspec this uploads nothing: the src snapshot id is
    a placeholder unless --snapshot-id is given.
    """
    project = load_project(project_path)
    colony_name = colony or os.environ.get("COLONIES_COLONY_NAME", "").strip() or COLONY_PLACEHOLDER
    output.echo_raw(spec_json(spec_from_project(colony_name, project, snapshot_id)))


app.command("executors")(inspect.executors_command)
app.command("ps")(inspect.ps_command)
app.command("get")(inspect.get_command)
app.command("logs")(inspect.logs_command)
app.command("cancel")(inspect.cancel_command)


def _optional(module: str) -> Optional[ModuleType]:
    """Import a command module that may not be written yet; a bug inside an existing module still raises."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise


# -- commands from other modules: one line per command ---------------------------------------------
if (_dev := _optional("pollinator.cli.dev")) is not None:
    app.add_typer(_dev.dev_app, name="dev")

if (_fs := _optional("pollinator.cli.fs")) is not None:
    app.add_typer(_fs.fs_app, name="fs")
    app.command("sync")(_fs.sync_command)
    app.command("pull")(_fs.pull_command)

if (_run := _optional("pollinator.cli.run")) is not None:
    app.command("run")(_run.run_command)
    app.command("attach")(_run.attach_command)

if (_executor := _optional("pollinator.cli.executor")) is not None:
    app.add_typer(_executor.executor_app, name="executor")


if (_run := _optional("pollinator.cli.run")) is not None:
    app.command("run")(_run.run_command)
    app.command("attach")(_run.attach_command)
if (_executor := _optional("pollinator.cli.executor")) is not None:
    app.add_typer(_executor.executor_app, name="executor")


def main() -> None:
    """Console-script entry point (``pollinator = pollinator.cli.main:main``)."""
    app(prog_name="pollinator")


if __name__ == "__main__":
    main()
