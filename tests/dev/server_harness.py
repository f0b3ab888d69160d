"""Run the local Colonies server for tests: real uvicorn on a free loopback port, in a thread.

Also sets up a colony the way the captures were made: server owner -> colony,
colony owner -> a user and an approved executor.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import httpx
import uvicorn

from pollinator.colonies import crypto
from pollinator.colonies.client import ColoniesClient
from pollinator.colonies.models import Colony, Executor, User
from pollinator.colonies.rpc import decode_reply, encode_envelope
from pollinator.dev.server import create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn serving create_app(data_dir, server_id) until stop()."""

    def __init__(self, data_dir: Path, server_id: str, port: Optional[int] = None, *, wake_all: bool = False):
        self.port = port or free_port()
        self.app = create_app(data_dir, server_id, wake_all=wake_all)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                timeout_graceful_shutdown=1, access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> "ServerThread":
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.app.state.store.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Colony_:
    """Keys and clients of one colony on a running server."""

    server: ServerThread
    name: str = "dev"
    server_key: str = field(default_factory=crypto.generate_private_key)
    colony_key: str = field(default_factory=crypto.generate_private_key)
    user_key: str = field(default_factory=crypto.generate_private_key)
    executor_key: str = field(default_factory=crypto.generate_private_key)
    executor_type: str = "capture-executor"
    executor_name: str = "capture-1"

    def client(self, key: str, **kw: Any) -> ColoniesClient:
        return ColoniesClient("127.0.0.1", self.server.port, key, self.name, retries=0, **kw)

    def raw(self, msg: dict[str, Any], key: str, payloadtype: Optional[str] = None,
            signature: Optional[str] = None) -> tuple[int, Any]:
        """Send one message; returns (http status, decoded payload) without raising."""
        env = encode_envelope(msg, key)
        if payloadtype is not None:
            env["payloadtype"] = payloadtype
        if signature is not None:
            env["signature"] = signature
        resp = httpx.post(self.server.url + "/api", json=env, timeout=30)
        import base64, json
        body = json.loads(resp.content)
        payload = json.loads(base64.b64decode(body["payload"])) if body.get("payload") else None
        return resp.status_code, payload

    def setup(self, *, approve: bool = True) -> "Colony_":
        colony_id = crypto.id_from_private_key(self.colony_key)
        with self.client(self.server_key) as c:
            c.add_colony(Colony(colonyid=colony_id, name=self.name))
        with self.client(self.colony_key) as c:
            c.add_user(User(colonyname=self.name, userid=crypto.id_from_private_key(self.user_key), name="rig-user"))
            c.add_executor(Executor(executorid=crypto.id_from_private_key(self.executor_key),
                                    executortype=self.executor_type, executorname=self.executor_name,
                                    colonyname=self.name))
            if approve:
                c.approve_executor(self.executor_name)
        return self


def start_colony(data_dir: Path, name: str = "dev", *, wake_all: bool = False) -> Colony_:
    server_key = crypto.generate_private_key()
    server = ServerThread(data_dir, crypto.id_from_private_key(server_key), wake_all=wake_all).start()
    colony = Colony_(server=server, name=name, server_key=server_key)
    return colony.setup()
