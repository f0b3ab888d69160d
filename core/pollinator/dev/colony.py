"""Start, find and stop a whole colony on this machine: server, S3, executors.

Each part runs as its own process in its own session, so ``pollinator dev
--detach`` can return while the colony keeps running, and ``pollinator dev
stop`` finds the parts again through ``state.json`` in the data dir. Several
colonies with different data dirs can run side by side on free ports.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import httpx
from pydantic import SecretStr

from pollinator.colonies import crypto
from pollinator.colonies.client import ColoniesClient
from pollinator.colonies.models import Colony, User
from pollinator.config import S3Settings, Settings
from pollinator.dev.extra import require_local_extra
from pollinator.dev.keys import ColonyKeys, load_or_create_keys, write_private
from pollinator.dev.procs import alive, free_port, signal_group, wait_gone
from pollinator.errors import BadRequest, ConfigError, PollinatorError

DEFAULT_DATA_DIR = Path(os.environ.get("POLLINATOR_DEV_DIR", Path.home() / ".pollinator" / "dev"))
DEFAULT_EXECUTORS = ("dev-k8s", "dev-hpc")
HPC_EXECUTOR = "dev-hpc"
"""The executor that runs on the local Slurm cluster with ``slurm=True`` (``pollinator dev --slurm``)."""
COLONY_NAME = "dev"
BUCKET = "pollinator"
S3_ACCESS_KEY = "pollinator-dev"


def _wait_http(url: str, timeout: float, proc: Optional[subprocess.Popen] = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise PollinatorError(f"{what} exited with code {proc.returncode} while starting")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise PollinatorError(f"{what or url} did not come up within {timeout:.0f} s")


@dataclass
class ColonyState:
    """What ``state.json`` records about a running local colony."""

    host: str
    port: int
    s3_endpoint: str
    pids: dict[str, int] = field(default_factory=dict)
    executors: list[str] = field(default_factory=list)

    def running_pids(self) -> dict[str, int]:
        return {name: pid for name, pid in self.pids.items() if alive(pid)}


class LocalColony:
    """A Colonies-protocol server, an S3 endpoint and local executors in one data dir."""

    def __init__(self, data_dir: Path = DEFAULT_DATA_DIR, *, host: str = "127.0.0.1", port: Optional[int] = None,
                 s3_port: Optional[int] = None, executors: tuple[str, ...] = DEFAULT_EXECUTORS,
                 external_s3: Optional[S3Settings] = None, executor_type: str = "container-executor",
                 max_jobs: int = 4, slurm: bool = False, strict: bool = True):
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.strict = strict  # executors refuse what the ColonyOS hpc/kube/docker executors refuse
        self.slurm = slurm
        self.host = host
        self.port = port
        self.s3_port = s3_port
        self.executors = tuple(executors)
        self.external_s3 = external_s3
        self.executor_type = executor_type
        self.max_jobs = max_jobs
        self._procs: dict[str, subprocess.Popen] = {}

    # -- files in the data dir -------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.data_dir / "state.json"

    @property
    def env_path(self) -> Path:
        return self.data_dir / "env"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def read_state(self) -> Optional[ColonyState]:
        if not self.state_path.exists():
            return None
        return ColonyState(**json.loads(self.state_path.read_text()))

    def is_running(self) -> bool:
        state = self.read_state()
        return bool(state and "server" in state.running_pids())

    # -- environment -------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """Every variable Pollinator, the Go CLI and pycolonies read, for the running colony."""
        if not self.env_path.exists():
            raise ConfigError(f"no local colony in {self.data_dir}: start one with `pollinator dev --detach`")
        env = {}
        for line in self.env_path.read_text().splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export "):].partition("=")
                env[key] = shlex.split(value)[0] if value else ""
        return env

    def settings(self) -> Settings:
        return Settings.from_env(self.env(), need_s3=True)

    def _write_env(self, keys: ColonyKeys, s3: S3Settings) -> dict[str, str]:
        env = {
            "COLONIES_SERVER_HOST": self.host,
            "COLONIES_SERVER_PORT": str(self.port),
            "COLONIES_TLS": "false",
            "COLONIES_SERVER_TLS": "false",
            "COLONIES_INSECURE": "true",
            "COLONIES_COLONY_NAME": COLONY_NAME,
            "COLONIES_COLONY_ID": crypto.id_from_private_key(keys.colony),
            "COLONIES_COLONY_PRVKEY": keys.colony,
            "COLONIES_SERVER_ID": crypto.id_from_private_key(keys.server),
            "COLONIES_SERVER_PRVKEY": keys.server,
            "COLONIES_USER_ID": crypto.id_from_private_key(keys.user),
            "COLONIES_PRVKEY": keys.user,
            "AWS_S3_ENDPOINT": s3.endpoint,
            "AWS_S3_ACCESSKEY": s3.access_key.get_secret_value(),
            "AWS_S3_SECRETKEY": s3.secret_key.get_secret_value(),
            "AWS_S3_REGION_KEY": s3.region,
            "AWS_S3_BUCKET": s3.bucket,
            "AWS_S3_TLS": "true" if s3.tls else "false",
            "AWS_S3_SKIPVERIFY": "true" if s3.skip_verify else "false",
            "COLONYOS_DASHBOARD_URL": f"http://{self.host}:{self.port}",
        }
        env["AIRFLOW_CONN_COLONIES_DEFAULT"] = airflow_connection_json(env)
        text = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        write_private(self.env_path, "# written by `pollinator dev`; source it: source <(pollinator dev env)\n" + text)
        return env

    # -- lifecycle -------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], env: Optional[dict[str, str]] = None) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        logfile = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, start_new_session=True, cwd=self.data_dir)
        logfile.close()
        self._procs[name] = proc
        return proc

    def _start_s3(self) -> S3Settings:
        if self.external_s3 is not None:
            return self.external_s3
        port = free_port(self.s3_port)
        proc = self._spawn("s3", [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(port)])
        _wait_http(f"http://{self.host}:{port}/", 30, proc, "the S3 endpoint (moto)")
        s3 = S3Settings(endpoint=f"{self.host}:{port}", access_key=SecretStr(S3_ACCESS_KEY),
                        secret_key=SecretStr(crypto.random_id()[:40]), bucket=BUCKET)
        from pollinator.dev.s3 import ensure_bucket

        ensure_bucket(s3)
        return s3

    def _start_server(self, keys: ColonyKeys) -> None:
        self.port = free_port(self.port or 50080)
        argv = [sys.executable, "-m", "pollinator.dev.server", "--host", self.host, "--port", str(self.port),
                "--data-dir", str(self.data_dir), "--server-id", crypto.id_from_private_key(keys.server)]
        proc = self._spawn("server", argv)
        _wait_http(f"http://{self.host}:{self.port}/health", 30, proc, "the local Colonies server")

    def _bootstrap(self, keys: ColonyKeys, fresh_s3: bool) -> None:
        """Create the colony and its user once; forget file records whose bytes a fresh S3 no longer has."""
        server = ColoniesClient(self.host, self.port, keys.server, COLONY_NAME)
        owner = server.with_key(keys.colony)
        try:
            try:
                server.add_colony(Colony(colonyid=crypto.id_from_private_key(keys.colony), name=COLONY_NAME))
            except BadRequest as exc:  # a restart on the same data dir: the colony is there already
                if "already exists" not in exc.message:
                    raise
            user_id = crypto.id_from_private_key(keys.user)
            try:
                owner.add_user(User(colonyname=COLONY_NAME, userid=user_id, name="dev-user"))
            except PollinatorError:
                pass  # already a member from an earlier start
            if fresh_s3:
                user = server.with_key(keys.user)
                for label in user.get_file_labels("", exact=False):
                    for item in user.get_files(label.name):
                        user.remove_file(label=label.name, name=item.name)
                for snap in user.get_snapshots():
                    user.remove_snapshot(snapshot_id=snap.snapshotid)
        finally:
            server.close()

    def slurm_cluster(self):  # -> pollinator.dev.slurm_cluster.SlurmCluster (imported late: Slurm is optional)
        from pollinator.dev.slurm_cluster import SlurmCluster

        return SlurmCluster(self.data_dir / "slurm")

    def _start_executors(self, env: dict[str, str], slurm_env: Optional[dict[str, str]] = None) -> None:
        for name in self.executors:
            fs_dir = self.data_dir / "executors" / name
            argv = [sys.executable, "-m", "pollinator.cli.main", "executor", "start", "--name", name,
                    "--type", self.executor_type, "--fs-dir", str(fs_dir), "--max-jobs", str(self.max_jobs),
                    "--strict" if self.strict else "--lenient"]
            if slurm_env is not None and name == HPC_EXECUTOR:
                argv += ["--backend", "slurm"]
                self._spawn(f"executor-{name}", argv, {**env, **slurm_env})
                continue
            self._spawn(f"executor-{name}", argv, env)

    def start(self) -> dict[str, str]:
        """Start every part (idempotent: a running colony is left alone) and return its env."""
        if self.is_running():
            return self.env()
        require_local_extra(s3=self.external_s3 is None)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        keys = load_or_create_keys(self.data_dir)
        try:
            s3 = self._start_s3()
            self._start_server(keys)
            env = self._write_env(keys, s3)
            self._bootstrap(keys, fresh_s3=self.external_s3 is None)
            self._save_state(s3)
            slurm_env = self.slurm_cluster().start() if self.slurm else None
            self._start_executors(env, slurm_env)
            self._save_state(s3)
            self._wait_executors(env)
        except BaseException:
            self.stop()
            raise
        return env

    def _wait_executors(self, env: dict[str, str], timeout: float = 30.0) -> None:
        settings = Settings.from_env(env)
        deadline = time.monotonic() + timeout
        with settings.client() as client:
            while time.monotonic() < deadline:
                for name, proc in self._procs.items():
                    if name.startswith("executor-") and proc.poll() is not None:
                        raise PollinatorError(f"{name} exited with code {proc.returncode}; see "
                                              f"{self.log_dir / (name + '.log')}")
                approved = {e.executorname for e in client.get_executors() if e.state == 1}
                if all(name in approved for name in self.executors):
                    return
                time.sleep(0.1)
        raise PollinatorError(f"executors did not register within {timeout:.0f} s; see {self.log_dir}")

    def _save_state(self, s3: S3Settings) -> None:
        state = ColonyState(host=self.host, port=int(self.port or 0), s3_endpoint=s3.endpoint,
                            pids={n: p.pid for n, p in self._procs.items()}, executors=list(self.executors))
        self.state_path.write_text(json.dumps(state.__dict__, indent=1))

    def stop(self, timeout: float = 10.0) -> list[str]:
        """Stop every part this data dir's colony started; returns the names stopped."""
        pids = {n: p.pid for n, p in self._procs.items() if p.poll() is None}
        state = self.read_state()
        if state:
            pids.update(state.running_pids())
        # executors first, so they can close their jobs while the server is still up
        order = sorted(pids, key=lambda n: (not n.startswith("executor-"), n == "s3"))
        for name in order:
            signal_group(pids[name], signal.SIGTERM)
            if name.startswith("executor-"):
                wait_gone(pids[name], timeout)
        for name in order:
            if not wait_gone(pids[name], timeout):
                signal_group(pids[name], signal.SIGKILL)
        for proc in self._procs.values():
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        self._procs.clear()
        if self.state_path.exists():
            self.state_path.unlink()
        cluster = self.slurm_cluster()
        if cluster.state_path.exists():  # after the executors: they scancel their own jobs first
            order += [f"slurm-{name}" for name in cluster.stop()]
        return order


def airflow_connection_json(env: dict[str, str]) -> str:
    """The local colony as an Airflow connection (``AIRFLOW_CONN_COLONIES_DEFAULT``)."""
    return json.dumps({
        "conn_type": "colonies",
        "host": env["COLONIES_SERVER_HOST"],
        "port": int(env["COLONIES_SERVER_PORT"]),
        "password": env["COLONIES_PRVKEY"],
        "extra": {
            "colony_name": env["COLONIES_COLONY_NAME"],
            "tls": env["COLONIES_TLS"] == "true",
            "s3_endpoint": env["AWS_S3_ENDPOINT"],
            "s3_bucket": env["AWS_S3_BUCKET"],
            "s3_region": env["AWS_S3_REGION_KEY"],
            "s3_access_key": env["AWS_S3_ACCESSKEY"],
            "s3_secret_key": env["AWS_S3_SECRETKEY"],
            "s3_tls": env["AWS_S3_TLS"] == "true",
            "dashboard_url": env["COLONYOS_DASHBOARD_URL"],
        },
    })


def discover_settings(env: Optional[Mapping[str, str]] = None, *, need_s3: bool = False,
                      default_dir: bool = True) -> Settings:
    """The colony the environment names; without one, a running `pollinator dev` colony.

    The CLI's convenience (``pollinator run`` next to ``pollinator dev`` with
    nothing sourced), never a library default: configuration itself
    (:meth:`Settings.from_env`) does not look for local colonies. Any
    ``COLONIES_*`` variable means the environment is meant (a missing one is
    reported by name). ``default_dir=False`` looks only in a
    ``POLLINATOR_DEV_DIR`` the environment names, the opt-in for library callers.
    """
    env = os.environ if env is None else env
    if not any(key.startswith("COLONIES_") for key in env):
        named = env.get("POLLINATOR_DEV_DIR")
        if named or default_dir:
            colony = LocalColony(Path(named) if named else DEFAULT_DATA_DIR)
            if colony.is_running():
                return colony.settings()
    return Settings.from_env(env, need_s3=need_s3)
