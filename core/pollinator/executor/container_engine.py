"""Apptainer/Singularity on an HPC login node: find the engine, turn a docker image into a SIF once.

HPC sites do not run Docker; the ColonyOS HPC executor pulls the job's
``docker-image`` into a Singularity image file (``docker://`` conversion) in
an image dir on shared storage, then runs ``singularity exec`` on the compute
nodes. This does the same with whichever of ``apptainer`` (the project's
current name) or ``singularity`` is on PATH. The pull happens on the login
node before ``sbatch``, once per image: compute nodes often have no internet,
and ranks pulling the same image at once would race.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from pollinator.executor.backend import AbortSignal
from pollinator.executor.slurm_cli import SlurmError

ENGINES = ("apptainer", "singularity")
PULL_TIMEOUT = 1800.0

_pull_locks_guard = threading.Lock()
_pull_locks: dict[Path, threading.Lock] = {}


def find_engine(path: Optional[str] = None) -> Optional[str]:
    """The first of apptainer/singularity on PATH, or None."""
    for name in ENGINES:
        found = shutil.which(name, path=path)
        if found:
            return found
    return None


def image_uri(image: str) -> str:
    """What to pull: URIs (``docker://``, ``oras://``, ``library://``) as given, else ``docker://<image>``."""
    return image if "://" in image else f"docker://{image}"


def sif_name(image: str) -> str:
    """A file name for the image's SIF (``python:3.12`` -> ``python_3.12.sif``)."""
    bare = image.split("://", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]", "_", bare).strip("._") + ".sif"


def _lock(path: Path) -> threading.Lock:
    with _pull_locks_guard:
        return _pull_locks.setdefault(path, threading.Lock())


def ensure_sif(engine: str, image: str, image_dir: Path, say: Callable[[str], None], abort: AbortSignal,
               timeout: float = PULL_TIMEOUT) -> Path:
    """The SIF of ``image`` in ``image_dir``, pulled first if missing (a local ``.sif`` path is used as is).

    Raises SlurmError when the pull fails, times out or is aborted.
    """
    if image.endswith(".sif") and "://" not in image:
        path = Path(image)
        if not path.is_file():
            raise SlurmError(f"image file {image} does not exist")
        return path
    image_dir.mkdir(parents=True, exist_ok=True)
    target = image_dir / sif_name(image)
    with _lock(target):
        if target.is_file():
            say(f"using {target} for {image}")
            return target
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        argv = [engine, "pull", "--force", str(partial), image_uri(image)]
        say(f"pulling {image_uri(image)} into {target} ({Path(engine).name} pull)")
        pull_log = partial.with_suffix(".log")
        with open(pull_log, "wb") as out:  # a file, not a pipe: pull progress output can fill a pipe and stall
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        end = time.monotonic() + timeout
        try:
            while proc.poll() is None:
                if abort.is_set():
                    raise SlurmError(f"image pull stopped: {abort.reason}")
                if time.monotonic() > end:
                    raise SlurmError(f"pulling {image} took longer than {timeout:g} s")
                time.sleep(0.2)
            output = pull_log.read_text(errors="replace")
            if proc.returncode != 0:
                tail = " ".join(output.strip().splitlines()[-3:])
                raise SlurmError(f"{Path(engine).name} pull of {image} failed (exit {proc.returncode}): {tail}")
            partial.replace(target)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            partial.unlink(missing_ok=True)
            pull_log.unlink(missing_ok=True)
        return target
