"""`pollinator executor start`: run a local ColonyOS executor in the foreground.

It reads the colony from the environment like every other command (plus
S3, which jobs with file mounts need) and either registers itself with the
colony owner's key (``COLONIES_COLONY_PRVKEY``; it deregisters on exit) or
uses an executor key registered beforehand (``COLONIES_EXECUTOR_PRVKEY``).
Ctrl-C or SIGTERM stops it cleanly: running jobs are killed and closed
failed with "executor stopped" before it exits.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any, Optional

import typer

from pollinator.config import Settings
from pollinator.errors import ConfigError

executor_app = typer.Typer(help="Run a local executor that takes ColonyOS jobs and runs them on this machine.",
                           no_args_is_help=True)


def _key(env_name: str) -> Optional[str]:
    value = os.environ.get(env_name, "").strip()
    if not value:
        return None
    if len(value) != 64 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise ConfigError(f"{env_name} is not a Colonies private key: it must be 64 hex characters")
    return value


def _backend(choice: str, fs_dir: Path) -> Any:
    """The Backend for ``--backend``: checked before registering, so a bad choice registers nothing."""
    choice = choice.strip().lower()
    if choice == "local":
        from pollinator.executor.job_runner import LocalBackend

        return LocalBackend()
    if choice == "slurm":
        import shutil

        from pollinator.executor.slurm import SlurmBackend

        if shutil.which("sbatch") is None:
            raise ConfigError("--backend slurm needs the Slurm client commands (sbatch, srun, scontrol, scancel) "
                              "on PATH: run the executor on a login node of the cluster")
        return SlurmBackend.from_env(fs_dir)
    raise typer.BadParameter(f"{choice!r} is not a backend: use 'local' or 'slurm'", param_hint="--backend")


@executor_app.command("start")
def start(
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Executor name (default: pollinator-local.<host>)."),
    executor_type: str = typer.Option("container-executor", "--type", "-t",
                                      help="Executor type that specs target (conditions.executortype)."),
    fs_dir: Optional[Path] = typer.Option(None, "--fs-dir",
                                          help="Local directory that stands for the jobs' /cfs mount "
                                               "(default: ~/.pollinator/executors/<name>)."),
    max_jobs: int = typer.Option(4, "--max-jobs", "-j", min=1, help="Jobs run at the same time."),
    poll_timeout: int = typer.Option(1, "--poll-timeout", min=1, hidden=True,
                                     help="Seconds each assign long-poll waits on the server (two overlap, "
                                          "spread evenly: a process naming this executor starts within about "
                                          "half of it)."),
    backend: str = typer.Option("local", "--backend", "-b", case_sensitive=False,
                                help="Where jobs run: 'local' (subprocesses here) or 'slurm' (sbatch from this "
                                     "login node; site options from POLLINATOR_SLURM_* variables)."),
    strict: bool = typer.Option(False, "--strict/--lenient",
                                help="Strict: refuse every spec the ColonyOS hpc/kube/docker executors refuse "
                                     "(resources, deadlines, characters their templates change); "
                                     "`pollinator dev` starts its executors strict."),
    exit_codes: str = typer.Option("honour", "--exit-codes", case_sensitive=False,
                                   help="'honour' (a non-zero exit fails the process) or 'ignore' (close "
                                        "SUCCESS anyway, as the Kube executor does; for testing)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Register (or reuse a registered key) and run jobs until Ctrl-C / SIGTERM."""
    from pollinator.executor.registration import default_executor_name
    from pollinator.executor.strict import EXIT_CODE_MODES, Conformance
    from pollinator.executor.worker import LocalExecutor

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the job lines

    if exit_codes.lower() not in EXIT_CODE_MODES:
        raise typer.BadParameter(f"{exit_codes!r}: use one of {', '.join(EXIT_CODE_MODES)}", param_hint="--exit-codes")
    conformance = Conformance(strict=strict, exit_codes=exit_codes.lower())
    settings = Settings.from_env(need_s3=True)
    executor_key = _key("COLONIES_EXECUTOR_PRVKEY")
    colony_key = None if executor_key else _key("COLONIES_COLONY_PRVKEY")
    if not executor_key and not colony_key:
        raise ConfigError("set COLONIES_COLONY_PRVKEY (to register this executor) or COLONIES_EXECUTOR_PRVKEY "
                          "(an executor that is already registered and approved)")
    name = (name or "").strip() or default_executor_name()
    directory = fs_dir or Path.home() / ".pollinator" / "executors" / name
    job_backend = _backend(backend, directory)

    executor = LocalExecutor(settings, name=name, executor_type=executor_type, fs_dir=directory,
                             max_jobs=max_jobs, executor_prvkey=executor_key,
                             register_with_colony_prvkey=colony_key, poll_timeout=poll_timeout, backend=job_backend,
                             conformance=conformance)

    def on_signal(signum: int, _frame: Any) -> None:
        logging.getLogger(__name__).info("%s received: stopping", signal.Signals(signum).name)
        executor.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    runner = threading.Thread(target=executor.run_forever, name="executor", daemon=True)
    try:
        runner.start()
        while runner.is_alive():  # the main thread stays free to take signals
            runner.join(0.5)
    finally:
        executor.stop()
        runner.join(90)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
