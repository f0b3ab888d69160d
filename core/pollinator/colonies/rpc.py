"""The Colonies RPC envelope, and every message Pollinator sends, built once.

A :class:`Call` is a pure description (msgtype, JSON body, how to parse the
reply, whether it is safe to resend). The sync and async clients only differ
in how they move a Call over HTTP, so the message building lives here, once.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from pydantic import BaseModel

from pollinator.colonies import crypto
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
from pollinator.errors import ColoniesError, error_for_status

MAX_LOG_COUNT = 500  # the server answers 403 above this


def encode_envelope(msg: dict[str, Any], prvkey: str) -> dict[str, str]:
    """Wrap a message as the server expects: base64 JSON payload, signed."""
    payload = base64.b64encode(json.dumps(msg, separators=(",", ":")).encode()).decode()
    return {"payloadtype": msg["msgtype"], "payload": payload, "signature": crypto.sign(payload, prvkey)}


def decode_reply(status: int, body: bytes, msgtype: str = "") -> Any:
    """The decoded reply payload, or the matching ColoniesError."""
    try:
        try:
            envelope = json.loads(body)
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":
                raise
            # The Go server answers some refusals (PostgreSQL's, e.g. a NUL in a log message) with two
            # error envelopes back to back; the first one is the answer.
            envelope, _end = json.JSONDecoder().raw_decode(body.decode("utf-8", "replace").lstrip())
        payload_b64 = envelope.get("payload", "")
        payload = json.loads(base64.b64decode(payload_b64)) if payload_b64 else None
    except (ValueError, AttributeError, TypeError) as exc:
        snippet = body[:200].decode("utf-8", "replace")
        raise ColoniesError(
            f"the server sent a reply that is not a Colonies envelope: {snippet!r}", status=status, msgtype=msgtype
        ) from exc
    if envelope.get("error") or envelope.get("payloadtype") == "error" or status >= 400:
        if isinstance(payload, dict):
            message = str(payload.get("message", "")) or f"HTTP {status}"
            code = int(payload.get("status") or status)
        else:
            message, code = f"HTTP {status}", status
        raise error_for_status(code, message, msgtype)
    return payload


def _model(cls: type[BaseModel]) -> Callable[[Any], Any]:
    return lambda payload: cls.model_validate(payload) if payload is not None else None


def _list_of(cls: type[BaseModel]) -> Callable[[Any], list[Any]]:
    return lambda payload: [cls.model_validate(item) for item in (payload or [])]


def _raw(payload: Any) -> Any:
    return payload


@dataclass(frozen=True)
class Call:
    """One RPC: what to send and how to read the answer."""

    msgtype: str
    body: dict[str, Any]
    parse: Callable[[Any], Any] = _raw
    idempotent: bool = False
    extra_timeout: float = 0.0  # long-polls block on the server this long
    message: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", {"msgtype": self.msgtype, **self.body})


class Messages:
    """Every message Pollinator uses. Subclasses implement ``_do``.

    In the sync client ``_do`` returns the parsed reply; in the async client a
    coroutine of it, so these methods are written once for both faces.
    """

    colony_name: str

    def _do(self, call: Call) -> Any:  # pragma: no cover - implemented by clients
        raise NotImplementedError

    # -- colonies, users, executors ------------------------------------------------
    def add_colony(self, colony: Colony) -> Colony:
        return self._do(Call("addcolonymsg", {"colony": colony.to_wire()}, _model(Colony)))

    def get_colony(self, colony_name: Optional[str] = None) -> Colony:
        return self._do(Call("getcolonymsg", {"colonyname": colony_name or self.colony_name}, _model(Colony), True))

    def add_user(self, user: User) -> User:
        return self._do(Call("addusermsg", {"user": user.to_wire()}, _model(User)))

    def add_executor(self, executor: Executor) -> Executor:
        return self._do(Call("addexecutormsg", {"executor": executor.to_wire()}, _model(Executor)))

    def approve_executor(self, executor_name: str) -> Any:
        body = {"colonyname": self.colony_name, "executorname": executor_name}
        return self._do(Call("approveexecutormsg", body, _raw, True))

    def reject_executor(self, executor_name: str) -> Any:
        body = {"colonyname": self.colony_name, "executorname": executor_name}
        return self._do(Call("rejectexecutormsg", body, _raw, True))

    def remove_executor(self, executor_name: str) -> Any:
        body = {"colonyname": self.colony_name, "executorname": executor_name}
        return self._do(Call("removeexecutormsg", body, _raw))

    def get_executor(self, executor_name: str) -> Executor:
        body = {"colonyname": self.colony_name, "executorname": executor_name}
        return self._do(Call("getexecutormsg", body, _model(Executor), True))

    def get_executors(self) -> list[Executor]:
        return self._do(Call("getexecutorsmsg", {"colonyname": self.colony_name}, _list_of(Executor), True))

    def get_colony_statistics(self) -> Statistics:
        return self._do(Call("getcolonystatsmsg", {"colonyname": self.colony_name}, _model(Statistics), True))

    # -- processes ----------------------------------------------------------------
    def submit(self, spec: FunctionSpec) -> Process:
        return self._do(Call("submitfuncspecmsg", {"spec": spec.to_wire()}, _model(Process)))

    def get_process(self, process_id: str) -> Process:
        return self._do(Call("getprocessmsg", {"processid": process_id}, _model(Process), True))

    def get_processes(self, state: int, count: int = 100, executor_type: str = "", label: str = "", initiator: str = "") -> list[Process]:
        body = {
            "colonyname": self.colony_name,
            "count": count,
            "state": int(state),
            "executortype": executor_type,
            "label": label,
            "initiator": initiator,
        }
        return self._do(Call("getprocessesmsg", body, _list_of(Process), True))

    def cancel_process(self, process_id: str) -> Any:
        return self._do(Call("cancelprocessmsg", {"processid": process_id}, _raw, True))

    def remove_process(self, process_id: str) -> Any:
        return self._do(Call("removeprocessmsg", {"processid": process_id, "all": False}, _raw))

    def assign(self, timeout: int = 10, available_cpu: str = "", available_mem: str = "") -> Process:
        body = {"colonyname": self.colony_name, "timeout": timeout, "availablecpu": available_cpu,
                "availablemem": available_mem}
        return self._do(Call("assignprocessmsg", body, _model(Process), False, max(timeout, 0) + 5.0))

    def close_successful(self, process_id: str, out: Optional[list[Any]] = None) -> Any:
        return self._do(Call("closesuccessfulmsg", {"processid": process_id, "out": out or []}, _raw))

    def close_failed(self, process_id: str, errors: list[str]) -> Any:
        return self._do(Call("closefailedmsg", {"processid": process_id, "errors": list(errors)}, _raw))

    def set_output(self, process_id: str, out: list[Any]) -> Any:
        return self._do(Call("setoutputmsg", {"processid": process_id, "out": out}, _raw, True))

    # -- logs ---------------------------------------------------------------------
    def add_log(self, process_id: str, message: str) -> Any:
        return self._do(Call("addlogmsg", {"processid": process_id, "message": message}, _raw))

    def get_logs(self, process_id: str, since: int = 0, count: int = MAX_LOG_COUNT, latest: bool = False,
                 executor_name: str = "") -> list[Log]:
        body = {"colonyname": self.colony_name, "processid": process_id, "executorname": executor_name,
                "count": min(count, MAX_LOG_COUNT), "since": since, "latest": latest}
        return self._do(Call("getlogsmsg", body, _list_of(Log), True))

    # -- files and snapshots ------------------------------------------------------
    def add_file(self, file: File) -> File:
        return self._do(Call("addfilemsg", {"file": file.to_wire()}, _model(File)))

    def get_file(self, *, file_id: str = "", label: str = "", name: str = "", latest: bool = True) -> list[File]:
        body = {"colonyname": self.colony_name, "fileid": file_id, "label": label, "name": name, "latest": latest}
        return self._do(Call("getfilemsg", body, _list_of(File), True))

    def get_files(self, label: str) -> list[FileSummary]:
        body = {"label": label, "colonyname": self.colony_name}
        return self._do(Call("getfilesmsg", body, _list_of(FileSummary), True))

    def get_file_labels(self, name: str = "", exact: bool = False) -> list[Label]:
        body = {"colonyname": self.colony_name, "name": name, "exact": exact}
        return self._do(Call("getfilelabelsmsg", body, _list_of(Label), True))

    def remove_file(self, *, file_id: str = "", label: str = "", name: str = "") -> Any:
        body = {"colonyname": self.colony_name, "fileid": file_id, "label": label, "name": name}
        return self._do(Call("removefilemsg", body, _raw))

    def create_snapshot(self, label: str, name: str) -> Snapshot:
        body = {"colonyname": self.colony_name, "label": label, "name": name}
        return self._do(Call("createsnapshotmsg", body, _model(Snapshot)))

    def get_snapshot(self, *, snapshot_id: str = "", name: str = "") -> Snapshot:
        body = {"colonyname": self.colony_name, "snapshotid": snapshot_id, "name": name}
        return self._do(Call("getsnapshotmsg", body, _model(Snapshot), True))

    def get_snapshots(self) -> list[Snapshot]:
        return self._do(Call("getsnapshotsmsg", {"colonyname": self.colony_name}, _list_of(Snapshot), True))

    def remove_snapshot(self, *, snapshot_id: str = "", name: str = "") -> Any:
        body = {"colonyname": self.colony_name, "snapshotid": snapshot_id, "name": name}
        return self._do(Call("removesnapshotmsg", body, _raw))
