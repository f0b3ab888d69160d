"""``pollinator fs ls``, ``pollinator sync`` and ``pollinator pull``: ColonyFS from the command line.

``sync`` and ``pull`` are plain functions registered by name in
``pollinator.cli.main.LAZY_COMMANDS``; ``fs_app`` carries the rest.
Each command turns every Pollinator error into one ``error: ...`` line and an
exit code (2: settings/usage, 1: anything remote) by itself, so the commands
behave the same whether or not the root app's error policy wraps them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import sys
from pathlib import Path
from typing import Iterator, Optional

import typer

from pollinator.cfs import CFS, SyncPlan, SyncReport
from pollinator.cfs.paths import CFS_FILE, normalize_label
from pollinator.cfs.progress import RichBar, interactive
from pollinator.cli import common, output
from pollinator.errors import ConfigError, PollinatorError

fs_app = typer.Typer(name="fs", help="ColonyFS: list labels and files.", no_args_is_help=True,
                     pretty_exceptions_enable=False, add_completion=False)

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
PROJECT_DIRS = ("src", "data")  # what the Go pollinator syncs before a run (keep local)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """One line and an exit code for every expected failure."""
    try:
        yield
    except PollinatorError as exc:
        output.print_error(exc)
        raise typer.Exit(common.exit_code_for(exc)) from None
    except OSError as exc:
        output.print_error(f"{exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}")
        raise typer.Exit(common.EXIT_REMOTE) from None


@contextlib.contextmanager
def _engine(workers: int, progress: bool = True, markers: bool = False) -> Iterator[CFS]:
    settings = common.load_settings(need_s3=True)
    bar: Optional[RichBar] = RichBar() if progress and interactive() else None
    if not interactive():
        _log_progress_lines()
    with settings.client() as client:
        if bar is None:
            yield CFS(client, settings.require_s3(), workers=workers, markers=markers)
        else:
            with bar:
                yield CFS(client, settings.require_s3(), workers=workers, progress=bar, markers=markers)


def _log_progress_lines() -> None:
    """Without a terminal, let the engine's periodic one-line progress reach stderr."""
    logger = logging.getLogger("pollinator.cfs")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def print_plan(plan: SyncPlan) -> None:
    """The plan as a table (one row per file) plus the one-line summary."""
    rule = "upload (keep local)" if plan.keep_local else "download (keep remote)"
    rows = []
    for lp in plan.labels:
        rows += [("upload", lp.label, f.name, _size(f.size)) for f in lp.upload]
        rows += [("download", lp.label, f.name, _size(f.size)) for f in lp.download]
        rows += [(f"conflict: {rule}", lp.label, f.name, _size(f.size)) for f in lp.conflicts]
    console = output.stdout()
    if rows:
        console.print(output.table(["action", "label", "name", "size"], rows))
    console.print(output.plain(plan.summary()))


def _print_report(report: SyncReport) -> None:
    output.print_info(f"{report.label}: uploaded {len(report.uploaded)} file(s) ({_size(report.bytes_uploaded)}), "
                      f"downloaded {len(report.downloaded)} file(s) ({_size(report.bytes_downloaded)}) "
                      f"in {report.seconds:.2f} s")


def _label_from_marker(directory: Path) -> str:
    try:
        return str(json.loads((directory / CFS_FILE).read_text()).get("label", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def _sync_targets(directory: Optional[Path], label: Optional[str]) -> list[tuple[Path, str]]:
    """Which (dir, label) pairs ``pollinator sync`` means (see sync_command's help)."""
    if label:
        return [(directory or Path("."), normalize_label(label))]
    target = directory or Path(".")
    marked = _label_from_marker(target)
    if marked:
        return [(target, normalize_label(marked))]
    if directory is None and Path("project.yaml").exists():
        from pollinator.project import load_project

        project = load_project(".")
        return [(Path("cfs") / sub, f"/pollinator/{project.project_name}/{sub}") for sub in PROJECT_DIRS]
    raise ConfigError(f"no label: give --label, or run it in a directory with a {CFS_FILE} file or a project.yaml")


def sync_command(
    directory: Optional[Path] = typer.Argument(None, help="Local directory (default: the current directory).",
                                               file_okay=False, show_default=False),
    label: Optional[str] = typer.Option(None, "--label", "-l", help="ColonyFS label, e.g. /pollinator/myproj/data. "
                                        "Default: the directory's .cfs label, or the project's src and data dirs."),
    keep_local: bool = typer.Option(True, "--keep-local/--keep-remote",
                                    help="Who wins when a file differs on both sides."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; change nothing."),
    workers: int = typer.Option(8, "--workers", min=1, max=256, help="Transfers in flight."),
) -> None:
    """Synchronise a directory (and its sub-directories) with a ColonyFS label, both ways.

    Local-only files are uploaded, server-only files downloaded; files that differ
    follow --keep-local (default) or --keep-remote. Nothing is deleted.
    Without --label: the directory's .cfs label, else (in a project) ./cfs/src and ./cfs/data.
    With --label the directory remembers it in a .cfs file, as `colonies fs sync` does; nothing
    else Pollinator syncs or pulls gets one.
    """
    with _errors():
        targets = _sync_targets(directory, label)
        with _engine(workers, progress=not dry_run, markers=bool(label)) as cfs:
            for local_dir, lab in targets:
                plan = cfs.plan(local_dir, lab, keep_local)
                if dry_run:
                    print_plan(plan)
                    continue
                if plan.is_empty:
                    output.print_info(f"{lab}: already in sync with {local_dir}")
                    continue
                _print_report(cfs.apply(plan))


def pull_command(
    target: str = typer.Argument(..., help="A process id (its synced directories) or a label such as /proj/result."),
    directory: Optional[Path] = typer.Argument(None, help="Where to write (default: ./cfs for a process, "
                                                          "the current directory for a label).", show_default=False),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what would be downloaded; change nothing."),
    workers: int = typer.Option(8, "--workers", min=1, max=256, help="Transfers in flight."),
) -> None:
    """Download a label (with its sub-labels), or every synced directory of a process.

    Files already identical locally are skipped, different ones overwritten; local-only files stay.
    For a process, each of its ColonyFS directories goes to DIR/<name>, e.g. ./cfs/result.
    """
    with _errors():
        with _engine(workers, progress=not dry_run) as cfs:
            pairs = _pull_targets(cfs, target, directory)
            for local_dir, lab in pairs:
                plan = cfs.plan_pull(lab, local_dir)
                if dry_run:
                    print_plan(plan)
                elif plan.is_empty:
                    output.print_info(f"{lab}: nothing to download into {local_dir}")
                else:
                    _print_report(cfs.apply(plan))


def _pull_targets(cfs: CFS, target: str, directory: Optional[Path]) -> list[tuple[Path, str]]:
    if "/" in target or not _HEX64.match(target):
        return [(directory or Path("."), normalize_label(target))]
    process = cfs.client.get_process(target)
    mounts = list(process.spec.fs.dirs or []) if process is not None else []
    if not mounts:
        raise ConfigError(f"process {target} has no ColonyFS directories to pull")
    base = directory or Path("cfs")
    out = []
    for mount in mounts:
        name = normalize_label(mount.dir or mount.label).rsplit("/", 1)[-1] or "root"
        out.append((base / name, normalize_label(mount.label)))
    return out


@fs_app.command("ls")
def ls_command(
    label: Optional[str] = typer.Argument(None, help="A label: list its files (and its sub-labels' files). "
                                                     "Without: list every label."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List ColonyFS labels, or the files of a label."""
    with _errors():
        settings = common.load_settings(need_s3=True)
        with settings.client() as client:
            cfs = CFS(client, settings.require_s3())
            if not label:
                labels = cfs.labels()
                if json_out:
                    output.print_json([{"label": name, "files": count} for name, count in labels])
                else:
                    output.stdout().print(output.table(["label", "files"], labels))
                return
            files = cfs.list(label)
            if json_out:
                output.print_json([dataclasses.asdict(f) for f in files])
            else:
                output.stdout().print(output.table(["label", "name", "size", "sha256"],
                                                   [(f.label, f.name, _size(f.size), f.checksum[:12])
                                                    for f in files]))
