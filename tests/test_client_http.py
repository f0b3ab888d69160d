"""The Colonies client over real HTTP: timeouts, retries with backoff, and which calls may be resent."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pollinator.colonies import crypto
from pollinator.colonies.client import AsyncColoniesClient, ColoniesClient
from pollinator.colonies.models import FunctionSpec
from pollinator.errors import AccessDenied, ServerError, Unreachable

KEY = crypto.generate_private_key()


class Script:
    """What the fake server answers, request by request."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests: list[dict] = []


def _reply(payloadtype, payload, status=200):
    error = status >= 400
    body = {"payloadtype": "error" if error else payloadtype,
            "payload": base64.b64encode(json.dumps(payload).encode()).decode(), "error": error}
    return status, json.dumps(body).encode()


def _answer(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def server():
    script = Script([])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            envelope = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script.requests.append(envelope)
            answer = script.answers.pop(0) if script.answers else ("ok", None)
            if answer == "hang":
                time.sleep(3)
                answer = ("ok", None)
            if answer == "reset":
                self.connection.close()
                return
            kind, payload = answer
            _answer(self, *(_reply(envelope["payloadtype"], payload) if kind == "ok" else _reply("", payload, kind)))

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1], script
    httpd.shutdown()


def _client(port, **kw):
    return ColoniesClient("127.0.0.1", port, KEY, "dev", **kw)


def test_requests_are_signed_envelopes(server):
    port, script = server
    script.answers = [("ok", {"colonyid": "x", "name": "dev"})]
    with _client(port) as c:
        assert c.get_colony().name == "dev"
    env = script.requests[0]
    assert env["payloadtype"] == "getcolonymsg"
    assert crypto.recover_id(env["payload"], env["signature"]) == crypto.id_from_private_key(KEY)


def test_idempotent_call_retried_after_5xx(server):
    port, script = server
    script.answers = [(500, {"status": 500, "message": "db down"}), "reset", ("ok", {"processid": "p"})]
    with _client(port, retries=3) as c:
        assert c.get_process("p").processid == "p"
    assert len(script.requests) == 3


def test_submit_is_not_resent_after_it_may_have_arrived(server):
    port, script = server
    script.answers = [(500, {"status": 500, "message": "boom"}), ("ok", {"processid": "p"})]
    with _client(port, retries=3) as c, pytest.raises(ServerError, match="boom"):
        c.submit(FunctionSpec(funcname="execute"))
    assert len(script.requests) == 1


def test_retries_are_bounded(server):
    port, script = server
    script.answers = [(503, {"status": 503, "message": "busy"})] * 10
    with _client(port, retries=2) as c, pytest.raises(ServerError):
        c.get_process("p")
    assert len(script.requests) == 3


def test_4xx_is_not_retried_and_keeps_status(server):
    port, script = server
    script.answers = [(403, {"status": 403, "message": "Access denied"})]
    with _client(port) as c, pytest.raises(AccessDenied) as info:
        c.get_process("p")
    assert info.value.status == 403 and len(script.requests) == 1


def test_every_call_has_a_timeout(server):
    port, script = server
    script.answers = ["hang"] * 5
    t0 = time.monotonic()
    with _client(port, timeout=0.5, retries=0) as c, pytest.raises(Unreachable):
        c.get_process("p")
    assert time.monotonic() - t0 < 2.5


def test_unreachable_server_is_a_clear_error():
    with _client(1, retries=1) as c, pytest.raises(Unreachable, match="cannot reach"):
        c.get_process("p")


def test_async_client_shares_the_messages(server):
    import asyncio

    port, script = server
    script.answers = [(502, {"status": 502, "message": "gw"}), ("ok", [{"processid": "p", "message": "hi\n",
                                                                      "timestamp": 5}])]

    async def go():
        async with AsyncColoniesClient("127.0.0.1", port, KEY, "dev", retries=2) as c:
            return await c.get_logs("p")

    logs = asyncio.run(go())
    assert logs[0].message == "hi\n" and logs[0].timestamp == 5


def test_client_repr_has_no_key():
    c = _client(1)
    assert KEY not in repr(c) and KEY not in str(vars(c).get("url"))


def test_async_client_bounds_requests_in_flight_and_connections():
    """A thousand followers on one client: at most max_in_flight on the wire, on that many connections."""
    import asyncio

    state = {"now": 0, "peak": 0, "ports": set()}
    lock = threading.Lock()

    class Slow(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so connections are reused

        def do_POST(self):  # noqa: N802
            envelope = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
                state["ports"].add(self.client_address[1])
            time.sleep(0.02)
            with lock:
                state["now"] -= 1
            _answer(self, *_reply(envelope["payloadtype"], {"colonyid": "x", "name": "dev"}))

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    async def main():
        async with AsyncColoniesClient("127.0.0.1", httpd.server_address[1], KEY, "dev", max_in_flight=4) as c:
            return await asyncio.gather(*(c.get_colony() for _ in range(60)))

    try:
        answers = asyncio.run(main())
    finally:
        httpd.shutdown()
    assert len(answers) == 60 and all(a.name == "dev" for a in answers)
    assert 2 <= state["peak"] <= 4  # concurrent, but bounded
    assert len(state["ports"]) <= 4  # connections kept alive and reused, not one per request


@pytest.fixture
def keepalive_server():
    """An HTTP/1.1 server counting connections; ``close_after`` makes it drop a connection after that many replies
    without saying so (as servers do with idle kept-alive connections)."""
    state = {"connections": 0, "requests": 0, "close_after": None}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            state["connections"] += 1
            self.served = 0

        def do_POST(self):  # noqa: N802
            envelope = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["requests"] += 1
            _answer(self, *_reply(envelope["payloadtype"], {"processid": "p"}))
            self.served += 1
            if state["close_after"] is not None and self.served >= state["close_after"]:
                self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1], state
    httpd.shutdown()


def test_blocking_client_keeps_its_connection_alive(keepalive_server):
    port, state = keepalive_server
    with _client(port) as c:
        for _ in range(5):
            assert c.get_process("p").processid == "p"
    assert state["requests"] == 5 and state["connections"] == 1


def test_a_connection_the_server_closed_while_idle_is_not_used_for_a_submit(keepalive_server):
    """The server closed the kept-alive connection: a non-idempotent call goes out once, on a new one."""
    port, state = keepalive_server
    state["close_after"] = 1
    with _client(port, retries=0) as c:
        c.get_process("p")
        time.sleep(0.2)  # the close reaches us while the connection is idle
        assert c.submit(FunctionSpec(funcname="execute")).processid == "p"
    assert state["requests"] == 2 and state["connections"] == 2


def test_blocking_client_goes_through_httpx_when_a_proxy_is_set(monkeypatch):
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    with ColoniesClient("colonies.example", 50080, KEY, "dev") as c:
        assert c._http is not None and c._pool is None  # httpx honours the proxy variables
    monkeypatch.setenv("NO_PROXY", "colonies.example")
    monkeypatch.setenv("no_proxy", "colonies.example")
    with ColoniesClient("colonies.example", 50080, KEY, "dev") as c:
        assert c._pool is not None and c._http is None


def test_pooled_responses_read_chunked_bodies_headers_and_close():
    """The pool's response keeps http.client's body handling: chunked replies, Content-Length, HEAD, close."""
    from pollinator.http_pool import ConnectionPool

    body = b"x" * 5000

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("X-Folded", "a  b")
            if self.path == "/chunked":
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(body), 1000):
                    self.wfile.write(b"%x\r\n%s\r\n" % (1000, body[i:i + 1000]))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("Content-Length", str(len(body)))
                if self.path == "/close":
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

        def do_HEAD(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "123")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    pool = ConnectionPool("127.0.0.1", httpd.server_address[1])
    try:
        for path in ("/chunked", "/plain", "/chunked", "/close", "/plain"):
            status, headers, data = pool.request("GET", path)
            assert status == 200 and data == body and headers["x-folded"] == "a  b"
        status, headers, data = pool.request("HEAD", "/")
        assert status == 200 and data == b"" and headers["content-length"] == "123"
    finally:
        pool.close()
        httpd.shutdown()
