"""`pollinator dev`: a whole colony on this machine for development, demos and tests."""

from __future__ import annotations

import shlex
import signal
import threading
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from pollinator.dev.colony import DEFAULT_DATA_DIR, LocalColony
from pollinator.dev.extra import require_local_extra
from pollinator.errors import ConfigError, PollinatorError

dev_app = typer.Typer(help="Run a local colony: Colonies server, S3 endpoint and two local executors.",
                      invoke_without_command=True, no_args_is_help=False)
console = Console(stderr=True)

DataDir = typer.Option(DEFAULT_DATA_DIR, "--data-dir", help="Where the colony keeps its state, keys and logs.")
# A subcommand's own --data-dir; unset means the one given before the subcommand
# (`pollinator dev --data-dir X stop` and `pollinator dev stop --data-dir X` both act on X).
SubDataDir = typer.Option(None, "--data-dir", help="Where the colony keeps its state, keys and logs "
                                                   "(also accepted before the subcommand).")
_HOME_DEFAULT = Path.home() / ".pollinator" / "dev"


def _data_dir(ctx: typer.Context, given: Optional[Path]) -> Path:
    if given is not None:
        return given
    parent = ctx.parent.params.get("data_dir") if ctx.parent is not None else None
    return Path(parent) if parent is not None else DEFAULT_DATA_DIR


def _cmd(colony: LocalColony, sub: str) -> str:
    """A `pollinator dev <sub>` command line that acts on this colony, whatever the shell's env says."""
    if colony.data_dir == _HOME_DEFAULT.expanduser().resolve():
        return f"pollinator dev {sub}"
    return f"pollinator dev {sub} --data-dir {shlex.quote(str(colony.data_dir))}"


def _fail(exc: Exception, code: int) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(code)


@dev_app.callback()
def dev(ctx: typer.Context, data_dir: Path = DataDir,
        detach: bool = typer.Option(False, "--detach", "-d", help="Start in the background and return."),
        port: Optional[int] = typer.Option(None, help="Colonies server port (default 50080 or a free one)."),
        s3_port: Optional[int] = typer.Option(None, help="S3 endpoint port (default: a free one)."),
        max_jobs: int = typer.Option(4, help="Jobs each local executor runs at once."),
        slurm: bool = typer.Option(False, "--slurm", help="Also start a one-node Slurm cluster on localhost (root, "
                                                          "Debian's slurm-wlm + munge) and run dev-hpc's jobs "
                                                          "on it."),
        strict: bool = typer.Option(True, "--strict/--lenient",
                                    help="Executors refuse what the ColonyOS hpc/kube/docker executors refuse "
                                         "(resources, deadlines, characters their templates change); "
                                         "--lenient runs anything.")) -> None:
    """Start the local colony (foreground unless --detach; Ctrl-C stops it)."""
    if ctx.invoked_subcommand is not None:
        return
    if slurm:
        from pollinator.dev.slurm_cluster import SlurmCluster

        try:
            SlurmCluster.check_installed()
        except ConfigError as exc:
            raise _fail(exc, 2) from None
    colony = LocalColony(data_dir, port=port, s3_port=s3_port, max_jobs=max_jobs, slurm=slurm, strict=strict)
    if colony.is_running():
        console.print(f"A local colony is already running from {colony.data_dir}.")
        _summary(colony)
        if not detach:
            console.print(f"Stop it with `{_cmd(colony, 'stop')}` first to run it in the foreground.",
                          soft_wrap=True)
        return
    require_local_extra(s3=colony.external_s3 is None)  # one line naming the extra (main's error policy), not a log
    try:
        with console.status("Starting the local colony..."):
            colony.start()
    except ConfigError as exc:
        raise _fail(exc, 2) from None
    except PollinatorError as exc:
        raise _fail(exc, 1) from None
    _summary(colony)
    if detach:
        console.print(f"Running in the background. Use it with:  [bold]source <({_cmd(colony, 'env')})[/bold]"
                      f"   Stop it with: [bold]{_cmd(colony, 'stop')}[/bold]", soft_wrap=True)
        return
    console.print("Press Ctrl-C to stop.")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        state = colony.read_state()
        if state is None or "server" not in state.running_pids():
            console.print("[red]the local Colonies server exited[/red]; stopping.")
            break
    with console.status("Stopping..."):
        colony.stop()
    console.print("Stopped.")


def _summary(colony: LocalColony) -> None:
    env = colony.env()
    state = colony.read_state()
    table = Table(title="Local colony", show_header=False)
    table.add_row("Colonies server", f"http://{env['COLONIES_SERVER_HOST']}:{env['COLONIES_SERVER_PORT']}")
    table.add_row("colony", env["COLONIES_COLONY_NAME"])
    table.add_row("S3 endpoint", f"http://{env['AWS_S3_ENDPOINT']}  bucket {env['AWS_S3_BUCKET']}")
    table.add_row("executors", ", ".join(state.executors) if state else "-")
    cluster = colony.slurm_cluster()
    if cluster.is_running():
        table.add_row("Slurm (dev-hpc runs jobs here)", f"SLURM_CONF={cluster.conf_path}")
    table.add_row("data dir", str(colony.data_dir))
    table.add_row("env file (keys, 0600)", str(colony.env_path))
    console.print(table)


@dev_app.command("env")
def env_command(ctx: typer.Context, data_dir: Optional[Path] = SubDataDir) -> None:
    """Print `export` lines for the running local colony (source <(pollinator dev env))."""
    colony = LocalColony(_data_dir(ctx, data_dir))
    try:
        env = colony.env()
    except ConfigError as exc:
        raise _fail(exc, 2) from None
    for key, value in env.items():
        typer.echo(f"export {key}={shlex.quote(value)}")


@dev_app.command("stop")
def stop_command(ctx: typer.Context, data_dir: Optional[Path] = SubDataDir) -> None:
    """Stop the local colony started from this data dir."""
    colony = LocalColony(_data_dir(ctx, data_dir))
    if not colony.is_running():
        console.print(f"No local colony is running from {colony.data_dir}.")
        leftover = colony.slurm_cluster().stop()  # daemons of a colony whose server died
        if leftover:
            console.print(f"Stopped the Slurm daemons left behind: {', '.join(leftover)}")
        return
    stopped = colony.stop()
    console.print(f"Stopped: {', '.join(stopped)}")


@dev_app.command("status")
def status_command(ctx: typer.Context, data_dir: Optional[Path] = SubDataDir) -> None:
    """Say whether a local colony runs from this data dir, and its parts."""
    colony = LocalColony(_data_dir(ctx, data_dir))
    state = colony.read_state()
    if not state:
        console.print(f"No local colony in {colony.data_dir}.")
        raise typer.Exit(1)
    alive = state.running_pids()
    for name, pid in state.pids.items():
        console.print(f"{name:24} pid {pid:<8} {'running' if name in alive else 'stopped'}")
    if "server" not in alive:
        raise typer.Exit(1)
