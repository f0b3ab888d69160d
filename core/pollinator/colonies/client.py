"""Sync and async Colonies clients over one message implementation.

Both reuse one HTTP connection pool, put a timeout on every call, and retry
with exponential backoff: any call whose request never left (connect errors),
and idempotent calls on resets, timeouts and 5xx. A submit is never resent
after it may have reached the server; the run pipeline's client token covers
that case instead.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Optional, Self

import httpx

from pollinator.colonies import crypto
from pollinator.colonies.rpc import MAX_LOG_COUNT, Call, Messages, decode_reply, encode_envelope
from pollinator.backoff import backoff
from pollinator.errors import ColoniesError, ServerError, Unreachable
from pollinator.http_pool import ConnectFailed, ConnectionPool

_JSON = {"Content-Type": "application/json"}

if TYPE_CHECKING:
    from pollinator.colonies.models import (
        Colony,
        Executor,
        File,
        FileSummary,
        FunctionSpec,
        Label,
        Log,
        Process,
        Snapshot,
        Statistics,
        User,
    )

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 5
MAX_IN_FLIGHT = 16  # concurrent requests per async client (see AsyncColoniesClient)
LANE_WIDTH = 2


def _base_url(host: str, port: int, tls: bool) -> str:
    return f"{'https' if tls else 'http'}://{host}:{port}"


def _should_retry(call: Call, exc: Exception) -> bool:
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | ConnectFailed):
        return True  # nothing reached the server
    if not call.idempotent:
        return False
    return isinstance(exc, httpx.TransportError | ServerError | OSError | http.client.HTTPException)


def _proxied(url: str) -> bool:
    """True when the environment routes ``url`` through an HTTP proxy (httpx honours that; the pool does not)."""
    from urllib.parse import urlsplit
    from urllib.request import getproxies, proxy_bypass

    scheme, netloc = urlsplit(url)[:2]
    proxies = getproxies()
    if not (proxies.get(scheme) or proxies.get("all")):
        return False
    return not proxy_bypass(netloc.rsplit(":", 1)[0])


class _Base(Messages):
    def __init__(self, host: str, port: int, prvkey: str, colony_name: str = "", *, tls: bool = False,
                 verify: bool = True, timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES):
        self.host, self.port, self.tls = host, int(port), tls
        self.url = _base_url(host, self.port, tls) + "/api"
        self.colony_name = colony_name
        self._prvkey = prvkey
        self.timeout = timeout
        self.retries = retries
        self.verify = verify

    @property
    def identity(self) -> str:
        """The id this client signs as (never the key)."""
        return crypto.id_from_private_key(self._prvkey)

    def with_key(self, prvkey: str) -> Self:
        """A client for the same server signing with another key (shares nothing secret)."""
        return type(self)(self.host, self.port, prvkey, self.colony_name, tls=self.tls, verify=self.verify,
                          timeout=self.timeout, retries=self.retries)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, colony={self.colony_name!r})"

    def _request(self, call: Call) -> tuple[dict[str, str], httpx.Timeout]:
        return encode_envelope(call.message, self._prvkey), self._request_timeout(call)

    def _request_timeout(self, call: Call) -> httpx.Timeout:
        return httpx.Timeout(self.timeout + call.extra_timeout, connect=min(self.timeout, 10.0))

    def _wrap_transport_error(self, call: Call, exc: Exception) -> ColoniesError:
        return Unreachable(f"cannot reach the Colonies server at {self.url}: {type(exc).__name__}: {exc}",
                           msgtype=call.msgtype)


class ColoniesClient(_Base):
    """Blocking client; safe to share between threads.

    Requests go through a pool of kept-alive ``http.client`` connections
    (:mod:`pollinator.http_pool`): httpx costs ~0.3 ms more CPU per request,
    which a 1,000-file sync (one ``addfilemsg`` per file) pays 1,000 times.
    When the environment sets an HTTP proxy for the server, httpx is used, as
    it honours the proxy variables.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._pool: Optional[ConnectionPool] = None
        self._http: Optional[httpx.Client] = None
        if _proxied(self.url):
            self._http = httpx.Client(verify=self.verify, limits=httpx.Limits(max_connections=64,
                                                                              max_keepalive_connections=32))
        else:
            self._pool = ConnectionPool(self.host, self.port, tls=self.tls, verify=self.verify,
                                        connect_timeout=min(self.timeout, 10.0))

    def _post(self, envelope: dict[str, str], call: Call) -> tuple[int, bytes]:
        if self._pool is None:
            assert self._http is not None
            resp = self._http.post(self.url, json=envelope, timeout=self._request_timeout(call))
            return resp.status_code, resp.content
        body = json.dumps(envelope, separators=(",", ":")).encode()
        status, _, content = self._pool.request("POST", "/api", body, _JSON, timeout=self.timeout + call.extra_timeout)
        return status, content

    def _do(self, call: Call) -> Any:
        envelope = encode_envelope(call.message, self._prvkey)
        attempt = 0
        while True:
            try:
                status, content = self._post(envelope, call)
                return call.parse(decode_reply(status, content, call.msgtype))
            except (httpx.TransportError, ServerError, OSError, http.client.HTTPException) as exc:
                if attempt >= self.retries or not _should_retry(call, exc):
                    if isinstance(exc, ColoniesError):
                        raise
                    raise self._wrap_transport_error(call, exc) from exc
                delay = backoff(attempt, base=0.2, cap=5.0)
                log.debug("retrying %s in %.2fs after %s", call.msgtype, delay, type(exc).__name__)
                time.sleep(delay)
                attempt += 1

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> "ColoniesClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncColoniesClient(_Base):
    """Asyncio client for the Airflow trigger and Prefect async tasks.

    One client may carry a thousand followers (a triggerer shares one per colony identity), so the
    per-request cost matters. httpcore's pool checks every pooled connection on every request start
    and end, so one large pool makes each request pay for all connections, and a thousand requests
    queued in it cost a scan of the queue each. Requests therefore go through ``lanes``: small
    httpx clients of ``LANE_WIDTH`` kept-alive connections each, taken in turn, at most
    ``LANE_WIDTH`` requests on the wire per lane; the rest wait on the lane's semaphore.
    """

    if TYPE_CHECKING:
        # What the shared message methods (rpc.Messages, typed for the sync face) return here: coroutines
        # of the same wire models. Pinned to Messages by tests/test_client_typing.py.
        async def add_colony(self, colony: Colony) -> Colony: ...  # type: ignore[override]
        async def get_colony(self, colony_name: Optional[str]=None) -> Colony: ...  # type: ignore[override]
        async def add_user(self, user: User) -> User: ...  # type: ignore[override]
        async def add_executor(self, executor: Executor) -> Executor: ...  # type: ignore[override]
        async def approve_executor(self, executor_name: str) -> Any: ...
        async def reject_executor(self, executor_name: str) -> Any: ...
        async def remove_executor(self, executor_name: str) -> Any: ...
        async def get_executor(self, executor_name: str) -> Executor: ...  # type: ignore[override]
        async def get_executors(self) -> list[Executor]: ...  # type: ignore[override]
        async def get_colony_statistics(self) -> Statistics: ...  # type: ignore[override]
        async def submit(self, spec: FunctionSpec) -> Process: ...  # type: ignore[override]
        async def get_process(self, process_id: str) -> Process: ...  # type: ignore[override]
        async def get_processes(self, state: int, count: int=100, executor_type: str='', label: str='', initiator: str='') -> list[Process]: ...  # type: ignore[override]
        async def cancel_process(self, process_id: str) -> Any: ...
        async def remove_process(self, process_id: str) -> Any: ...
        async def assign(self, timeout: int=10, available_cpu: str='', available_mem: str='') -> Process: ...  # type: ignore[override]
        async def close_successful(self, process_id: str, out: Optional[list[Any]]=None) -> Any: ...
        async def close_failed(self, process_id: str, errors: list[str]) -> Any: ...
        async def set_output(self, process_id: str, out: list[Any]) -> Any: ...
        async def add_log(self, process_id: str, message: str) -> Any: ...
        async def get_logs(self, process_id: str, since: int=0, count: int=MAX_LOG_COUNT, latest: bool=False, executor_name: str='') -> list[Log]: ...  # type: ignore[override]
        async def add_file(self, file: File) -> File: ...  # type: ignore[override]
        async def get_file(self, *, file_id: str='', label: str='', name: str='', latest: bool=True) -> list[File]: ...  # type: ignore[override]
        async def get_files(self, label: str) -> list[FileSummary]: ...  # type: ignore[override]
        async def get_file_labels(self, name: str='', exact: bool=False) -> list[Label]: ...  # type: ignore[override]
        async def remove_file(self, *, file_id: str='', label: str='', name: str='') -> Any: ...
        async def create_snapshot(self, label: str, name: str) -> Snapshot: ...  # type: ignore[override]
        async def get_snapshot(self, *, snapshot_id: str='', name: str='') -> Snapshot: ...  # type: ignore[override]
        async def get_snapshots(self) -> list[Snapshot]: ...  # type: ignore[override]
        async def remove_snapshot(self, *, snapshot_id: str='', name: str='') -> Any: ...

    def __init__(self, *args: Any, max_in_flight: int = MAX_IN_FLIGHT, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_in_flight = max(1, max_in_flight)
        self._lanes: list[tuple[Any, httpx.AsyncClient]] = []  # (asyncio.Semaphore, client), made on first use
        self._turn = 0

    def _lane(self) -> tuple[Any, httpx.AsyncClient]:
        import asyncio

        if not self._lanes:
            width = min(LANE_WIDTH, self.max_in_flight)
            limits = httpx.Limits(max_connections=width, max_keepalive_connections=width)
            self._lanes = [(asyncio.Semaphore(width), httpx.AsyncClient(verify=self.verify, limits=limits))
                           for _ in range(max(1, self.max_in_flight // width))]
        self._turn = (self._turn + 1) % len(self._lanes)
        return self._lanes[self._turn]

    async def _post(self, envelope: dict[str, str], timeout: httpx.Timeout) -> httpx.Response:
        gate, http = self._lane()
        async with gate:
            return await http.post(self.url, json=envelope, timeout=timeout)

    async def _do(self, call: Call) -> Any:
        import asyncio  # here, not at the top: the sync CLI should not pay asyncio's import

        envelope, timeout = self._request(call)
        attempt = 0
        while True:
            try:
                resp = await self._post(envelope, timeout)
                return call.parse(decode_reply(resp.status_code, resp.content, call.msgtype))
            except (httpx.TransportError, ServerError) as exc:
                if attempt >= self.retries or not _should_retry(call, exc):
                    if isinstance(exc, ColoniesError):
                        raise
                    raise self._wrap_transport_error(call, exc) from exc
                await asyncio.sleep(backoff(attempt, base=0.2, cap=5.0))
                attempt += 1

    async def aclose(self) -> None:
        lanes, self._lanes = self._lanes, []
        for _, http in lanes:
            await http.aclose()

    async def __aenter__(self) -> "AsyncColoniesClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
