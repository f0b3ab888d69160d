"""The local Colonies-protocol server: a Python stand-in for the Go ``colonies server``.

Clients (the Go CLI, pycolonies, Pollinator) cannot tell it from the real one
for the messages Pollinator uses: same envelope, same replies, same status
codes and error texts (see tests/data/colonies-protocol and tests/dev).

Routes: ``POST /api`` (RPC envelope), ``GET /health``, websocket ``/pubsub``
(``subscribeprocessmsg``). Run it with::

    python -m pollinator.dev.server --host 127.0.0.1 --port 50080 --data-dir D --server-id ID
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import inspect
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator, Optional

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from pollinator.colonies import crypto
from pollinator.dev import handlers_catalog, handlers_colonies, handlers_files, handlers_logs, handlers_processes
from pollinator.dev.context import Ctx, Handler
from pollinator.dev.controller import Controller
from pollinator.dev.events import Events
from pollinator.dev.procjson import render_process
from pollinator.dev.store import Store
from pollinator.dev.wire import BadType, NoReply, RPCError, dumps

log = logging.getLogger(__name__)

HANDLERS: dict[str, Handler] = {
    **handlers_colonies.HANDLERS,
    **handlers_processes.HANDLERS,
    **handlers_logs.HANDLERS,
    **handlers_files.HANDLERS,
    **handlers_catalog.HANDLERS,
}
WAKE_ALL_ENV = "POLLINATOR_DEV_WAKE_ALL"
DEADLINE_PERIOD_S = 1.0  # the Go TimeoutLoop's RELEASE_PERIOD
BUILD_VERSION, BUILD_TIME = "", ""  # the captured Go build's ldflags were unset: versionmsg echoes ""
_HEX = re.compile("[0-9a-fA-F]*")
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


# -- envelope ----------------------------------------------------------------------------
def envelope(payloadtype: str, payload: Any, *, error: bool = False) -> str:
    text = payload if isinstance(payload, str) else dumps(payload)
    return dumps({"payloadtype": payloadtype, "payload": base64.b64encode(text.encode()).decode(), "error": error})


def _reply(status: int, body: str) -> Response:
    # gin's c.String: text/plain, whatever the content
    return Response(body, status_code=status, media_type="text/plain; charset=utf-8")


def error_body(status: int, message: str) -> str:
    return envelope("error", {"status": status, "message": message}, error=True)


def recover_identity(payload: str, signature: str) -> str:
    """The signer's id, or RPCError(403) worded like the Go crypto package."""
    if not _HEX.fullmatch(signature):
        ch = next(c for c in signature if c not in "0123456789abcdefABCDEF")
        raise RPCError(403, f"encoding/hex: invalid byte: U+{ord(ch):04X} '{ch}'")
    if len(signature) % 2:
        raise RPCError(403, "encoding/hex: odd length hex string")
    sig = bytes.fromhex(signature)
    if len(sig) != 65:
        raise RPCError(403, "Invalid signature length")
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big")
    problem = ("R is 0" if r == 0 else "S is 0" if s == 0 else "R >= group order" if r >= _N
               else "S >= group order" if s >= _N else "")
    if not problem and sig[64] > 3:
        problem = "invalid compact signature recovery code"
    if not problem:
        try:
            return crypto.recover_id(payload, signature)
        except ValueError:
            problem = "no valid solution for pubkey"
    raise RPCError(403, f"Failed to recover public key: invalid signature: {problem}")


def _decode_payload(payload: str) -> str:
    """Go ignores base64 errors here; a bad payload then fails as the handler's 'invalid JSON'."""
    try:
        return base64.b64decode(payload, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""


def _version(payloadtype: str, payload: str) -> tuple[int, str]:
    """``versionmsg`` needs no signature; the reply carries the build's ldflags (empty in the captured build)."""
    try:
        msg = json.loads(_decode_payload(payload))
        if not isinstance(msg, dict):
            raise ValueError
    except ValueError:
        return 400, error_body(400, "Failed to get server version, invalid JSON")
    if msg.get("msgtype") != payloadtype:
        return 400, error_body(400, "Failed to get server version, msg.MsgType does not match payloadType")
    return 200, envelope(payloadtype, {"buildversion": BUILD_VERSION, "buildtime": BUILD_TIME,
                                       "msgtype": payloadtype})


def _server_info(host: str, port: int) -> tuple[int, str]:
    """``getserverinfomsg`` (`colonies server status`) needs no signature and ignores the payload."""
    built = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # the Go server's BUILD_TIME default: now
    return 200, envelope("getserverinfomsg", {"buildversion": "dev", "buildtime": built,
                                              "backends": [{"type": "http", "port": port, "host": host}]})


async def dispatch(ctx: Ctx, body: bytes, server: tuple[str, int] = ("0.0.0.0", 50080)) -> tuple[int, str]:
    """One RPC request to (HTTP status, reply body); "" body means gin wrote nothing.

    ``server`` is the (host, port) this server listens on, for ``getserverinfomsg``."""
    try:
        rpc = json.loads(body)
        if not isinstance(rpc, dict):
            raise ValueError("json: cannot unmarshal into Go value of type rpc.RPCMsg")
        payloadtype, payload, signature = (str(rpc.get(k) or "") for k in ("payloadtype", "payload", "signature"))
    except (ValueError, UnicodeDecodeError) as exc:
        return 400, error_body(400, f"invalid character in RPC message: {exc}"[:200])
    if payloadtype == "versionmsg":
        return _version(payloadtype, payload)
    if payloadtype == "getserverinfomsg":
        return _server_info(*server)
    try:
        recovered = recover_identity(payload, signature)
    except RPCError as exc:
        return exc.status, error_body(exc.status, exc.message)
    entry = HANDLERS.get(payloadtype)
    if entry is None:
        message = f"invalid rpcMsg.PayloadType: {payloadtype}"
        if payloadtype == "":
            message = ("invalid rpcMsg.PayloadType: empty (this usually means the client is misconfigured - check "
                       "that COLONIES_PRVKEY and other environment variables are set correctly)")
        return 403, error_body(403, message)
    try:
        msg = json.loads(_decode_payload(payload))
        if not isinstance(msg, dict):
            raise ValueError
    except ValueError:
        return 400, error_body(400, entry.invalid_json)
    if msg.get("msgtype") != payloadtype:
        return 400, error_body(400, entry.mismatch)
    try:
        result = entry.fn(ctx, recovered, msg)
        if inspect.isawaitable(result):
            result = await result
    except RPCError as exc:
        reply = error_body(exc.status, exc.message)
        if exc.then_status:
            reply += error_body(exc.then_status, exc.message)
        return exc.status, reply
    except BadType:
        return 400, error_body(400, entry.invalid_json)
    except NoReply:
        return 200, ""
    return 200, envelope(payloadtype, result)


# -- websocket /pubsub ---------------------------------------------------------------------
async def _subscribe_process(ctx: Ctx, ws: WebSocket, send_lock: asyncio.Lock, rpc: dict[str, Any]) -> None:
    """Send the process each time it is in the requested state, until ``timeout`` s; then close."""

    async def send(text: str) -> None:
        async with send_lock:
            await ws.send_text(text)

    try:
        msg = json.loads(_decode_payload(str(rpc.get("payload") or "")))
        if not isinstance(msg, dict):
            raise ValueError
    except ValueError:
        await ws.close()
        return
    if msg.get("msgtype") != rpc.get("payloadtype"):
        await send(error_body(403, "Failed to subscribe to process, msg.msgType does not match rpcMsg.PayloadType"))
        return
    process_id = str(msg.get("processid") or "")
    state, timeout = msg.get("state"), msg.get("timeout")
    if not isinstance(state, int) or not isinstance(timeout, int):
        await ws.close()
        return
    queue = ctx.events.subscribe(process_id)
    try:
        current = ctx.store.get_process(process_id)
        if current is None:
            await send(error_body(403, f"Invalid process with Id {process_id}"))
            return
        if current["state"] == state:
            await send(envelope("subscribeprocessmsg", render_process(current)))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (remaining := deadline - loop.time()) > 0:
            try:
                process = await asyncio.wait_for(queue.get(), remaining)
            except asyncio.TimeoutError:
                break
            if process["state"] == state:
                await send(envelope("subscribeprocessmsg", render_process(process)))
        with contextlib.suppress(Exception):
            await ws.close()  # the Go subscriber closes the connection when it times out
    finally:
        ctx.events.unsubscribe(process_id, queue)


async def pubsub(ws: WebSocket) -> None:
    ctx: Ctx = ws.app.state.ctx
    await ws.accept()
    send_lock = asyncio.Lock()
    tasks: set[asyncio.Task[None]] = set()
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("text") or (message.get("bytes") or b"").decode("utf-8", "replace")
            try:
                rpc = json.loads(data)
                if not isinstance(rpc, dict):
                    raise ValueError
                recover_identity(str(rpc.get("payload") or ""), str(rpc.get("signature") or ""))
            except (ValueError, RPCError):
                break  # the Go handler gives up on the connection here
            if rpc.get("payloadtype") == "subscribeprocessmsg":
                task = asyncio.create_task(_subscribe_process(ctx, ws, send_lock, rpc))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await ws.close()


# -- app -----------------------------------------------------------------------------------
async def api(request: Request) -> Response:
    host, port = request.scope.get("server") or ("0.0.0.0", 50080)
    status, body = await dispatch(request.app.state.ctx, await request.body(), (host, port))
    return _reply(status, body)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _deadline_loop(ctx: Ctx) -> None:
    while True:
        await asyncio.sleep(DEADLINE_PERIOD_S)
        try:
            ctx.controller.check_deadlines()
        except Exception:  # keep the loop alive; never crash the server from here
            log.exception("deadline check failed")


def create_app(data_dir: Path, server_id: str, *, wake_all: bool = False) -> Starlette:
    """The ASGI app; ``server_id`` is the id of the server owner key (may add colonies).

    ``wake_all``: a submit wakes every waiting assign, not just one of its type (which is what the
    real server does, see ``pollinator.dev.events``); kinder than production, so never the default."""
    store = Store(Path(data_dir))
    events = Events(wake_all=wake_all)
    ctx = Ctx(store=store, events=events, controller=Controller(store, events), server_id=server_id)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Fresh asyncio primitives for the loop actually serving (the app may be served more than once).
        ctx.events = ctx.controller.events = Events(wake_all=wake_all)
        checker = asyncio.create_task(_deadline_loop(ctx))
        try:
            yield
        finally:
            checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checker

    from pollinator.dev.dashboard import index_page, process_page

    app = Starlette(routes=[Route("/api", api, methods=["POST"]), Route("/health", health, methods=["GET"]),
                            WebSocketRoute("/pubsub", pubsub), Route("/process", process_page, methods=["GET"]),
                            Route("/", index_page, methods=["GET"])], lifespan=lifespan)
    app.state.ctx = ctx
    app.state.store = store
    return app


def serve(host: str, port: int, data_dir: Path, server_id: str, log_level: str = "warning", *,
          wake_all: bool = False) -> None:
    """Run until SIGINT/SIGTERM, then shut down gracefully and return (exit status 0)."""
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            # uvicorn re-raises the caught signal after shutting down (exit status -15); a launcher
            # stopping the local colony wants a clean exit instead.
            with super().capture_signals():
                try:
                    yield
                finally:
                    getattr(self, "_captured_signals", []).clear()

    app = create_app(data_dir, server_id, wake_all=wake_all)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=2,
                            access_log=False)
    try:
        _Server(config).run()
    finally:
        app.state.store.close()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pollinator.dev.server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50080)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--server-id", required=True, help="id of the server owner key (never the key itself)")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--wake-all", action="store_true", default=os.environ.get(WAKE_ALL_ENV, "") == "1",
                        help=f"a submit wakes every waiting assign, not just one of its type as the Go server "
                             f"does (also {WAKE_ALL_ENV}=1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    serve(args.host, args.port, args.data_dir, args.server_id, args.log_level, wake_all=args.wake_all)
    return 0


if __name__ == "__main__":
    sys.exit(main())
