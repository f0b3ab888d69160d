"""A tiny HTTP reverse proxy that injects faults, for retry tests over real sockets.

Put it in front of moto S3 or the Colonies server and arm rules such as "the
next 2 PUTs answer 500", "drop the connection of the next getfilesmsg" or
"cut the body of every GET of object X in half". Everything else is forwarded
unchanged. No library is mocked: the clients see real HTTP failures.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional

Predicate = Callable[[str, str, bytes], bool]  # method, path, body


@dataclass
class Rule:
    predicate: Predicate
    kind: str  # "s3_500" | "colonies_500" | "drop" | "truncate"
    times: Optional[int]  # None = forever
    hits: int = 0


class FaultProxy:
    def __init__(self, upstream: str):
        self.upstream_host, port = upstream.rsplit(":", 1)
        self.upstream_port = int(port)
        self.rules: list[Rule] = []
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                body = self._body()
                rule = proxy._match(self.command, self.path, body)
                with proxy.lock:
                    proxy.requests.append((self.command, self.path))
                if rule == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if rule == "s3_500":
                    self._reply(500, b"<?xml version='1.0'?><Error><Code>InternalError</Code>"
                                     b"<Message>injected</Message></Error>", "application/xml")
                    return
                if rule == "colonies_500":
                    payload = base64.b64encode(json.dumps({"status": 500, "message": "injected"}).encode()).decode()
                    self._reply(500, json.dumps({"payloadtype": "error", "payload": payload,
                                                 "error": True}).encode(), "application/json")
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "host",
                                                                                      "connection")}
                headers["Host"] = f"{proxy.upstream_host}:{proxy.upstream_port}"
                headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                if rule == "truncate":
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _reply(self, status: int, data: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _match(self, method: str, path: str, body: bytes) -> Optional[str]:
        with self.lock:
            for rule in self.rules:
                if (rule.times is None or rule.hits < rule.times) and rule.predicate(method, path, body):
                    rule.hits += 1
                    return rule.kind
        return None

    def fail(self, predicate: Predicate, kind: str, times: Optional[int] = 1) -> Rule:
        rule = Rule(predicate, kind, times)
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()

    def __enter__(self) -> "FaultProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def rpc_is(msgtype: str) -> Predicate:
    """Match a Colonies RPC by its payloadtype."""
    needle = f'"payloadtype": "{msgtype}"'.encode()
    compact = f'"payloadtype":"{msgtype}"'.encode()
    return lambda method, path, body: method == "POST" and (needle in body or compact in body)
