"""Kept-alive ``http.client`` connections to one server, shared by threads.

Why not httpx/urllib3 for the blocking paths: per request, httpx costs ~0.5 ms
of CPU and urllib3 ~0.35 ms where a bare ``http.client`` request costs
~0.2 ms. A ColonyFS sync makes two requests per file (an S3 PUT and an
``addfilemsg``), so on a 2-core machine that difference is most of a
1,000-file sync's client CPU. This pool is the little that those libraries
add which we need: connections kept alive and reused by any thread (idle ones
checked before reuse, as httpcore does), TLS with the certifi CA bundle (what
httpx and botocore verify against), a connect timeout apart from the read
timeout, and errors that say whether anything was sent (:class:`ConnectFailed`
means it was not, so any request may be resent).

Retries and what is safe to resend are the callers' business.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
from typing import Optional


class ConnectFailed(ConnectionError):
    """The connection could not be opened: nothing of the request reached the server."""


class _Response(http.client.HTTPResponse):
    """``http.client``'s response, with its header block parsed without the ``email`` package.

    ``http.client.parse_headers`` runs every reply's headers through
    ``email.parser`` (~130 us on our machine, twice per synced file); splitting
    the lines ourselves costs ~20 us. Everything after the headers (chunked
    bodies, Content-Length, keep-alive) is the standard library's own code.
    """

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            http.client._read_headers(self.fp)
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        headers = http.client.HTTPMessage()
        for line in http.client._read_headers(self.fp):
            name, sep, value = line.decode("iso-8859-1").partition(":")
            if sep:
                headers[name.strip()] = value.strip()
        self.headers = self.msg = headers
        encoding = headers.get("transfer-encoding")
        self.chunked = bool(encoding and encoding.lower() == "chunked")
        self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            if self.length is not None and self.length < 0:
                self.length = None
        if status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) or 100 <= status < 200 \
                or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


class _HTTPConnection(http.client.HTTPConnection):
    response_class = _Response


class _HTTPSConnection(http.client.HTTPSConnection):
    response_class = _Response


class ConnectionPool:
    """Up to ``max_idle`` idle connections to ``host:port``; one request per connection at a time."""

    def __init__(self, host: str, port: int, *, tls: bool = False, verify: bool = True,
                 connect_timeout: float = 10.0, max_idle: int = 32):
        self.host, self.port, self.tls = host.strip("[]"), int(port), tls
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self._ssl = _ssl_context(verify) if tls else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"ConnectionPool({'https' if self.tls else 'http'}://{self.host}:{self.port})"

    def _new(self) -> http.client.HTTPConnection:
        if self._ssl is not None:
            return _HTTPSConnection(self.host, self.port, timeout=self.connect_timeout, context=self._ssl)
        return _HTTPConnection(self.host, self.port, timeout=self.connect_timeout)

    def _take(self) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._new()
            if conn.sock is not None and not _readable(conn.sock):
                return conn
            conn.close()  # the server closed it (or sent something unasked) while it was idle

    def _give(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def request(self, method: str, path: str, body: Optional[bytes] = None,
                headers: Optional[dict[str, str]] = None, *,
                timeout: float = 60.0) -> tuple[int, http.client.HTTPMessage, bytes]:
        """Send one request and read the whole reply: (status, headers, body); ``headers.get`` ignores case.

        Raises :class:`ConnectFailed` when no connection could be opened, else
        ``OSError`` / ``http.client.HTTPException`` as the transport failed
        (the request may then have reached the server).
        """
        conn = self._take()
        try:
            if conn.sock is None:
                try:
                    conn.connect()
                except OSError as exc:
                    raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
            conn.sock.settimeout(timeout)
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
        except BaseException:
            conn.close()
            raise
        if resp.will_close:
            conn.close()
        else:
            self._give(conn)
        return resp.status, resp.msg, data

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _readable(sock: socket.socket) -> bool:
    """An idle kept-alive socket is readable only if the server closed it (or broke protocol)."""
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _ssl_context(verify: bool):
    import ssl

    try:
        import certifi

        ctx = ssl.create_default_context(cafile=certifi.where())
    except ImportError:  # pragma: no cover - certifi comes with httpx
        ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
