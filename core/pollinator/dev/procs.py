"""Daemons the local colony starts and stops: free ports, liveness, group signals, waiting for exit.

Shared by the colony (server, S3, executors) and its optional Slurm cluster
(munged, slurmctld, slurmd). Each daemon leads its own session, so a signal
goes to its whole process group.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Optional

from pollinator.errors import PollinatorError


def free_port(preferred: Optional[int] = None, host: str = "127.0.0.1") -> int:
    """The preferred port when nothing listens there, else any free one."""
    candidates = [preferred] if preferred else []
    for port in candidates + [0]:
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise PollinatorError("no free TCP port on this machine")


def alive(pid: int) -> bool:
    """The process exists and is not a zombie child of ours (which is reaped here)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:  # not our child: os.kill said it exists
        return True


def signal_group(pid: int, sig: int) -> None:
    """``sig`` to the daemon's process group (it leads its own session), else to the process."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_gone(pid: int, timeout: float) -> bool:
    """True once the process has exited (reaped if it is our child), False at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)
