"""Start the real Pollinator dev Colonies server for the integration tests."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from cfs_fakes import free_port
from pollinator.colonies import crypto
from pollinator.colonies.client import ColoniesClient
from pollinator.colonies.models import Colony, User

COLONY = "dev"


def server_available() -> bool:
    return importlib.util.find_spec("pollinator.dev.server") is not None


@dataclass
class RunningServer:
    host: str
    port: int
    user_key: str
    proc: subprocess.Popen

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def client(self, endpoint: str = "") -> ColoniesClient:
        host, port = (endpoint or self.endpoint).rsplit(":", 1)
        return ColoniesClient(host, int(port), self.user_key, COLONY, retries=3)


def start(data_dir: Path) -> RunningServer:
    server_key, colony_key, user_key = (crypto.generate_private_key() for _ in range(3))
    port = free_port()
    argv = [sys.executable, "-m", "pollinator.dev.server", "--host", "127.0.0.1", "--port", str(port),
            "--data-dir", str(data_dir), "--server-id", crypto.id_from_private_key(server_key)]
    log = open(data_dir / "server.log", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"dev server exited ({proc.returncode}): {(data_dir / 'server.log').read_text()[-2000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("dev server did not come up")
            time.sleep(0.05)
    with ColoniesClient("127.0.0.1", port, server_key, COLONY) as server:
        server.add_colony(Colony(colonyid=crypto.id_from_private_key(colony_key), name=COLONY))
        with server.with_key(colony_key) as owner:
            owner.add_user(User(colonyname=COLONY, userid=crypto.id_from_private_key(user_key), name="cfs-tests"))
    return RunningServer("127.0.0.1", port, user_key, proc)


def stop(server: RunningServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
