"""A fault-injecting HTTP reverse proxy over real sockets, for S3 and the Colonies server.

Put it in front of moto S3 or the Colonies server; everything is forwarded unchanged unless a fault
is chosen for the request, in one of two ways:

* rules, deterministic: ``proxy.fail(predicate, kind, times)`` ("the next 2 PUTs answer 500");
* chance, seeded: ``FaultProxy(upstream, rate=0.2, kinds=..., seed=...)`` gives each request (that
  ``only`` accepts) one fault drawn from ``kinds`` with probability ``rate``.

Fault kinds:

* ``5xx``      - an error reply in the upstream's dialect (``flavor``: S3 XML or Colonies envelope), 503/502;
  ``s3_500`` / ``colonies_500`` are the same with status 500 in the named dialect; ``s3_400`` is S3's
  400 InvalidArgument (a request the server does not support); nothing is forwarded
* ``drop``     - the connection is shut down before anything is forwarded
* ``reset``    - the connection is reset (RST), at random before or after upstream acted on the request
* ``slow``     - the upstream reply is held back ``slow_s`` seconds, then delivered intact
* ``truncate`` - the headers promise the whole body; half of it arrives, then the connection closes

No library is mocked: clients see what a broken load balancer or a dying server gives them.
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional, Sequence

KINDS = ("5xx", "reset", "slow", "truncate")
Predicate = Callable[[str, str, bytes], bool]  # method, path, body
_HOP_BY_HOP = ("transfer-encoding", "connection", "content-length", "date", "server")


@dataclass
class Rule:
    predicate: Predicate
    kind: str
    times: Optional[int]  # None = forever
    hits: int = 0


def rpc_is(msgtype: str) -> Predicate:
    """Match a Colonies RPC by its payloadtype."""
    needle = f'"payloadtype": "{msgtype}"'.encode()
    compact = f'"payloadtype":"{msgtype}"'.encode()
    return lambda method, path, body: method == "POST" and (needle in body or compact in body)


def error_reply(flavor: str, status: int) -> tuple[bytes, str]:
    if flavor == "colonies":
        payload = base64.b64encode(json.dumps({"status": status, "message": "injected fault"}).encode()).decode()
        # the Go server's content type for its JSON replies
        return json.dumps({"payloadtype": "error", "payload": payload, "error": True}).encode(), \
            "text/plain; charset=utf-8"
    code = {500: b"InternalError", 400: b"InvalidArgument"}.get(status, b"ServiceUnavailable")
    return (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>" + code
            + b"</Code><Message>injected fault</Message></Error>"), "application/xml"


class FaultProxy:
    def __init__(self, upstream: str, *, rate: float = 0.0, kinds: Sequence[str] = KINDS, flavor: str = "s3",
                 seed: int = 1, slow_s: float = 0.3, only: Optional[Predicate] = None):
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.rate, self.kinds, self.flavor, self.slow_s, self.only = rate, tuple(kinds), flavor, slow_s, only
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.rules: list[Rule] = []
        self.requests: list[tuple[str, str]] = []
        self.injected: Counter[str] = Counter()
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

            def _reset(self) -> None:
                self.close_connection = True
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
                self.connection.close()

            def _handle(self) -> None:
                body = self._body()
                fault = proxy._decide(self.command, self.path, body)
                if fault in ("5xx", "s3_500", "colonies_500", "s3_400"):
                    flavor = {"s3_500": "s3", "colonies_500": "colonies", "s3_400": "s3"}.get(fault, proxy.flavor)
                    status = {"5xx": 502 if flavor == "colonies" else 503, "s3_400": 400}.get(fault, 500)
                    data, ctype = error_reply(flavor, status)
                    self._send(status, [("Content-Type", ctype)], data)
                    return
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault == "reset" and proxy._coin():
                    self._reset()  # before the request reached upstream
                    return
                status, headers, data = proxy._forward(self.command, self.path, self.headers, body)
                if fault == "reset":
                    self._reset()  # after upstream acted on it: the reply is lost
                    return
                if fault == "slow":
                    time.sleep(proxy.slow_s)
                if fault == "truncate" and len(data) >= 2:
                    self.send_response(status)
                    for k, v in headers:
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self._reset()
                    return
                self._send(status, headers, data)

            def _send(self, status: int, headers, data: bytes) -> None:
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="fault-proxy", daemon=True)

    # -- decisions ---------------------------------------------------------------------
    def fail(self, predicate: Predicate, kind: str, times: Optional[int] = 1) -> Rule:
        rule = Rule(predicate, kind, times)
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()

    def _decide(self, method: str, path: str, body: bytes) -> Optional[str]:
        with self.lock:
            self.requests.append((method, path))
            for rule in self.rules:
                if (rule.times is None or rule.hits < rule.times) and rule.predicate(method, path, body):
                    rule.hits += 1
                    self.injected[rule.kind] += 1
                    return rule.kind
            if self.rate <= 0 or (self.only is not None and not self.only(method, path, body)):
                return None
            if self.rng.random() >= self.rate:
                return None
            fault = self.rng.choice(self.kinds)
            self.injected[fault] += 1
            return fault

    def _coin(self) -> bool:
        with self.lock:
            return self.rng.random() < 0.5

    @property
    def total_injected(self) -> int:
        with self.lock:
            return sum(self.injected.values())

    def _forward(self, method: str, path: str, in_headers, body: bytes):
        headers = {k: v for k, v in in_headers.items()
                   if k.lower() not in ("transfer-encoding", "host", "connection", "expect")}
        headers["Host"] = f"{self.upstream[0]}:{self.upstream[1]}"
        headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        return resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP], data

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
