"""A one-node Slurm cluster on localhost for ``pollinator dev --slurm`` and the Slurm tests.

Debian's ``slurm-wlm`` and ``munge`` packages provide the daemons; nothing
of theirs under /etc is used or changed. Everything lives in one directory:
``slurm.conf`` (found by every Slurm command through ``SLURM_CONF``), a fresh
munge key, the controller's state, slurmd's spool, logs and the job
completion record. The configuration is what a sandbox allows:

* no cgroups: ``proctrack/linuxproc`` (finds a job's processes by parentage,
  so ``scancel`` and time limits still reach them) and ``task/none``;
* no slurmdbd: ``accounting_storage/none``, so ``sacct`` has nothing to say;
  job state comes from ``scontrol`` (jobs stay known ``MinJobAge`` seconds
  after they end) and every finished job is appended to ``jobcomp.txt``
  (``jobcomp/filetxt``), the durable record;
* ``KillWait=2`` and ``OverTimeLimit=0``: a job over its ``--time`` is
  TIMEOUT within about a minute and a half (the controller checks time
  limits every 30 s) instead of much later;
* the partition oversubscribes CPUs (``OverSubscribe=FORCE:4``): a dev
  machine has few cores and jobs here are small.

The daemons run in the foreground (``-D``/``-F``) as children in their own
sessions, so they outlive ``pollinator dev --detach`` and are found again
through ``cluster.json`` to be stopped. Running jobs are cancelled first,
because a job's ``slurmstepd`` would outlive slurmd.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from pollinator.dev.procs import alive, free_port, signal_group, wait_gone
from pollinator.errors import ConfigError, PollinatorError

INSTALL_HINT = "apt-get install slurm-wlm munge"
NODE = "localhost"
PARTITION = "debug"
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "scontrol", "scancel", "sinfo", "squeue")
_SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"


class SlurmNotInstalled(ConfigError):
    """The Debian packages (or their binaries) are missing."""


def find_binary(name: str) -> Optional[str]:
    """``name`` on PATH or in the sbin dirs (daemons live there, often off a user's PATH)."""
    return shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + _SBIN_PATH)


def missing_binaries() -> list[str]:
    return [name for name in DAEMONS + CLIENTS if find_binary(name) is None]


def installed() -> bool:
    return not missing_binaries()


def _memory_mb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 1024


def render_slurm_conf(root: Path, *, munge_socket: Path, ctld_port: int, slurmd_port: int, cpus: int,
                      memory_mb: int) -> str:
    """slurm.conf for one node on localhost, every path inside ``root``."""
    return f"""# written by `pollinator dev --slurm`: a one-node cluster on localhost (see pollinator.dev.slurm_cluster)
ClusterName=pollinator-dev
SlurmctldHost={NODE}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "spool"}
SlurmctldPidFile={root / "run" / "slurmctld.pid"}
SlurmdPidFile={root / "run" / "slurmd.pid"}
SlurmctldLogFile={root / "log" / "slurmctld.log"}
SlurmdLogFile={root / "log" / "slurmd.log"}
# no cgroups in a sandbox
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# no slurmdbd: state from scontrol while the controller remembers the job, history in jobcomp.txt
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={root / "jobcomp.txt"}
MinJobAge=900
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=2
OverTimeLimit=0
InactiveLimit=0
NodeName={NODE} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


class SlurmCluster:
    """munged + slurmctld + slurmd for one node, configured and kept in ``root``."""

    def __init__(self, root: Path, *, cpus: Optional[int] = None, memory_mb: Optional[int] = None):
        self.root = Path(root).expanduser().resolve()
        self.cpus = cpus or os.cpu_count() or 1
        self.memory_mb = memory_mb or _memory_mb()

    # -- files -------------------------------------------------------------------------------
    @property
    def conf_path(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def state_path(self) -> Path:
        return self.root / "cluster.json"

    @property
    def jobcomp_path(self) -> Path:
        """One line per finished job (``JobId=12 ... JobState=TIMEOUT ...``): the dev cluster's sacct."""
        return self.root / "jobcomp.txt"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    def env(self) -> dict[str, str]:
        """What a Slurm command needs to talk to this cluster."""
        return {"SLURM_CONF": str(self.conf_path)}

    def _pids(self) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in json.loads(self.state_path.read_text())["pids"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def is_running(self) -> bool:
        pids = self._pids()
        return bool(pids) and all(alive(pids.get(name, 0) or -1) for name in DAEMONS)

    # -- start ---------------------------------------------------------------------------------------
    @staticmethod
    def check_installed() -> None:
        missing = missing_binaries()
        if missing:
            raise SlurmNotInstalled(f"Slurm is not installed here (missing {', '.join(missing)}): "
                                    f"{INSTALL_HINT}")
        if os.geteuid() != 0:
            raise ConfigError("the local Slurm cluster runs its daemons as root: run this as root")

    def start(self, timeout: float = 60.0) -> dict[str, str]:
        """Configure and start the three daemons, wait until the node is idle; returns :meth:`env`."""
        if self.is_running():
            return self.env()
        self.check_installed()
        for sub in ("state", "spool", "run", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        munge_socket = self._prepare_munge()
        self.conf_path.write_text(render_slurm_conf(self.root, munge_socket=munge_socket, ctld_port=free_port(),
                                                    slurmd_port=free_port(), cpus=self.cpus,
                                                    memory_mb=self.memory_mb))
        pids: dict[str, int] = {}
        try:
            key_dir = self.root / "munge"
            pids["munged"] = self._spawn("munged", [
                "-F", "--force", f"--socket={munge_socket}", f"--key-file={key_dir / 'munge.key'}",
                f"--pid-file={key_dir / 'munged.pid'}", f"--log-file={self.log_dir / 'munged.log'}",
                f"--seed-file={key_dir / 'munged.seed'}"])
            self._wait(lambda: munge_socket.exists(), 10, "munged did not create its socket", pids)
            pids["slurmctld"] = self._spawn("slurmctld", ["-D", "-i"])
            pids["slurmd"] = self._spawn("slurmd", ["-D", "-N", NODE])
            self._save(pids, munge_socket)
            self._wait(self._node_idle, timeout, f"the Slurm node did not become idle within {timeout:.0f} s", pids)
        except BaseException:
            self._save(pids, munge_socket)
            self.stop()
            raise
        return self.env()

    def _prepare_munge(self) -> Path:
        """A fresh 1 KiB key (0400, in a 0700 dir) and a socket path short enough for AF_UNIX."""
        key_dir = self.root / "munge"
        key_dir.mkdir(parents=True, exist_ok=True)
        key_dir.chmod(0o700)
        key = key_dir / "munge.key"
        if not key.exists():
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(1024))
        socket_dir = self.root / "run"
        if len(str(socket_dir / "munge.socket")) > 100:  # sun_path holds 108 bytes
            socket_dir = Path(tempfile.mkdtemp(prefix="pollinator-munge-"))
        socket_dir.chmod(0o755)
        return socket_dir / "munge.socket"

    def _spawn(self, name: str, args: list[str]) -> int:
        binary = find_binary(name)
        if binary is None:
            raise SlurmNotInstalled(f"{name} is not installed: {INSTALL_HINT}")
        with open(self.log_dir / f"{name}.out", "ab") as out:
            proc = subprocess.Popen([binary, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env={**os.environ, **self.env()}, cwd=self.root, start_new_session=True)
        return proc.pid

    def _wait(self, ready: Callable[[], bool], timeout: float, message: str, pids: dict[str, int]) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, pid in pids.items():
                if not alive(pid):
                    raise PollinatorError(f"{name} exited while starting; see {self.log_dir}:\n{self._log_tail(name)}")
            if ready():
                return
            time.sleep(0.2)
        raise PollinatorError(f"{message}; see {self.log_dir}")

    def _log_tail(self, name: str, lines: int = 8) -> str:
        texts = []
        for path in (self.log_dir / f"{name}.log", self.log_dir / f"{name}.out"):
            try:
                texts += path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                pass
        return "\n".join(texts)

    def run(self, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        """A Slurm client command against this cluster (``run("sinfo")``)."""
        binary = find_binary(args[0]) or args[0]
        return subprocess.run([binary, *args[1:]], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **self.env()}, stdin=subprocess.DEVNULL)

    def node_state(self) -> str:
        try:
            done = self.run("sinfo", "-h", "-N", "-n", NODE, "-o", "%T", timeout=5)
        except (subprocess.TimeoutExpired, OSError):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    def _node_idle(self) -> bool:
        state = self.node_state()
        if state.startswith(("down", "drain")):  # left so by an earlier run: this is a fresh slurmd
            try:
                self.run("scontrol", "update", f"NodeName={NODE}", "State=RESUME", timeout=5)
            except (subprocess.TimeoutExpired, OSError):
                pass
        return state in ("idle", "mixed", "allocated")

    def _save(self, pids: dict[str, int], munge_socket: Path) -> None:
        self.state_path.write_text(json.dumps({"pids": pids, "conf": str(self.conf_path),
                                               "munge_socket": str(munge_socket)}, indent=1))

    # -- jobs ----------------------------------------------------------------------------------------
    def job_records(self) -> list[dict[str, str]]:
        """Finished jobs from ``jobcomp.txt``, oldest first (``{"JobId": "12", "JobState": "TIMEOUT", ...}``)."""
        try:
            lines = self.jobcomp_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in lines if line.strip()]

    # -- stop ------------------------------------------------------------------------------------------
    def stop(self, timeout: float = 10.0) -> list[str]:
        """Cancel every job, then stop slurmd, slurmctld and munged; returns the daemons stopped."""
        pids = {name: pid for name, pid in self._pids().items() if alive(pid)}
        if not pids:
            self.state_path.unlink(missing_ok=True)
            return []
        if "slurmctld" in pids:
            self._cancel_all(timeout)
        for name in ("slurmd", "slurmctld", "munged"):
            if name in pids:
                signal_group(pids[name], signal.SIGTERM)
                if not wait_gone(pids[name], timeout):
                    signal_group(pids[name], signal.SIGKILL)
                    wait_gone(pids[name], 2)
        self.state_path.unlink(missing_ok=True)
        return [name for name in ("slurmd", "slurmctld", "munged") if name in pids]

    def _cancel_all(self, timeout: float) -> None:
        """scancel every job and wait for them to end: their slurmstepd would outlive slurmd."""
        try:
            self.run("scancel", "--user=root", timeout=5)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                done = self.run("squeue", "-h", "-o", "%i", timeout=5)
                if done.returncode != 0 or not done.stdout.strip():
                    return
                time.sleep(0.3)
        except (subprocess.TimeoutExpired, OSError):
            pass
