"""A fault-injecting HTTP proxy over real sockets, for S3 and the Colonies server.

Every request through it draws from a seeded RNG: with probability ``rate``
it gets one fault, chosen from ``kinds``:

* ``5xx``      - an error reply in the upstream's own dialect (S3 XML, Colonies envelope); nothing forwarded
* ``reset``    - the client connection is reset (RST), before or after the request reached upstream
* ``slow``     - the upstream reply is held back ``slow_s`` seconds, then delivered intact
* ``truncate`` - the upstream reply's headers promise the whole body; half of it arrives, then the connection closes

Nothing is mocked: clients see the same socket behaviour a broken load
balancer or a dying server gives them.
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional, Sequence

KINDS = ("5xx", "reset", "slow", "truncate")
Predicate = Callable[[str, str, bytes], bool]


class FlakyProxy:
    def __init__(self, upstream: str, *, rate: float = 0.2, kinds: Sequence[str] = KINDS, flavor: str = "s3",
                 seed: int = 1, slow_s: float = 0.3, only: Optional[Predicate] = None):
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.rate, self.kinds, self.flavor, self.slow_s, self.only = rate, tuple(kinds), flavor, slow_s, only
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.enabled = True
        self.injected: Counter[str] = Counter()
        self.requests = 0
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
                fault = proxy._draw(self.command, self.path, body)
                if fault == "5xx":
                    status, data, ctype = proxy._error_reply()
                    self._send(status, [("Content-Type", ctype)], data)
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
        self.endpoint = f"127.0.0.1:{self.server.server_address[1]}"
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="flaky-proxy", daemon=True)

    # -- decisions ---------------------------------------------------------------------
    def _draw(self, method: str, path: str, body: bytes) -> Optional[str]:
        with self.lock:
            self.requests += 1
            if not self.enabled or (self.only is not None and not self.only(method, path, body)):
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

    def _error_reply(self) -> tuple[int, bytes, str]:
        if self.flavor == "colonies":
            payload = base64.b64encode(json.dumps({"status": 502, "message": "injected fault"}).encode()).decode()
            return 502, json.dumps({"payloadtype": "error", "payload": payload, "error": True}).encode(), \
                "text/plain; charset=utf-8"
        return 503, (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ServiceUnavailable</Code>"
                     b"<Message>injected fault</Message></Error>"), "application/xml"

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
        out = [(k, v) for k, v in resp.getheaders()
               if k.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server")]
        return resp.status, out, data

    def __enter__(self) -> "FlakyProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
