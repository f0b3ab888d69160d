"""Replay every captured request against the local server and diff the replies.

The captures (tests/data/colonies-protocol/*.json, see its README.md) were taken
from the real Go server in one session; ``_summary.json`` lists them in capture order. We
replay in that order, recreating the state each one needed, map the captured
ids (processes, files, snapshots, executor, log timestamps) to ours, and
compare HTTP status, error text and the reply's shape (keys, recursively,
null vs list) plus the fields that do not depend on time or randomness.

``more/`` holds later probes with their own shapes (an unsigned request, a
``null`` reply, a raw two-envelope error body); ``test_replay_more_captures``
replays every one of them on a fresh colony. (``workflows/`` is not replayed:
the local colony does not implement process graphs.)
"""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pollinator.colonies import crypto
from pollinator.colonies.rpc import encode_envelope
from server_harness import Colony_, ServerThread, start_colony

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "colonies-protocol"
NOT_REQUESTS = {"_summary", "field_compare", "pycolonies_compat", "extra_probes", "rpc_envelope_example"}
TIME_FIELDS = {"submissiontime", "starttime", "endtime", "waitdeadline", "execdeadline", "commissiontime",
               "lastheardfromtime", "added"}
VOLATILE = {"processid", "targetid", "attributeid", "assignedexecutorid", "initiatorid", "executorid", "fileid",
            "snapshotid", "fileids", "prioritytime", "timestamp", "sequencenr", "colonyid", "checksum", "object",
            "s3filename", "size", "files", "name", "accesskey", "secretkey", "server", "port"}

def load(name: str) -> dict[str, Any]:
    return json.loads((CAPTURES / f"{name}.json").read_text())


def shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if value is None:
        return None
    return type(value).__name__


def diff_shape(expected: Any, actual: Any, path: str = "") -> list[str]:
    problems: list[str] = []
    if isinstance(expected, dict) and isinstance(actual, dict):
        if list(expected) != list(actual):
            problems.append(f"{path}: keys {list(expected)} != {list(actual)}")
        for key in expected:
            if key in actual:
                problems += diff_shape(expected[key], actual[key], f"{path}.{key}")
    elif isinstance(expected, list) and isinstance(actual, list):
        if expected and actual:
            problems += diff_shape(expected[0], actual[0], f"{path}[0]")
    elif expected != actual:
        problems.append(f"{path}: {expected!r} != {actual!r}")
    return problems


def diff_values(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Deterministic fields must be equal; times must agree on zero vs non-zero."""
    problems: list[str] = []
    key = path.rsplit(".", 1)[-1]
    if key in VOLATILE:
        return problems
    if key in TIME_FIELDS:
        if (expected == "0001-01-01T00:00:00Z") != (actual == "0001-01-01T00:00:00Z"):
            problems.append(f"{path}: {expected!r} vs {actual!r}")
        return problems
    if isinstance(expected, dict) and isinstance(actual, dict):
        for k in expected:
            if k in actual:
                problems += diff_values(expected[k], actual[k], f"{path}.{k}")
    elif isinstance(expected, list) and isinstance(actual, list):
        if len(expected) == len(actual):
            for i, (e, a) in enumerate(zip(expected, actual)):
                problems += diff_values(e, a, f"{path}[{i}]")
    elif expected != actual:
        problems.append(f"{path}: {expected!r} != {actual!r}")
    return problems


class Replay:
    """Captured ids -> ours, and the state-building steps the captures needed."""

    def __init__(self, colony: Colony_):
        self.c = colony
        self.ids: dict[Any, Any] = {}
        self.user = colony.client(colony.user_key)
        self.executor = colony.client(colony.executor_key)
        self.ids[load("addexecutormsg")["request_msg"]["executor"]["executorid"]] = crypto.id_from_private_key(
            colony.executor_key)

    def map(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.map(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.map(v) for v in value]
        if isinstance(value, (str, int)) and not isinstance(value, bool) and value in self.ids:
            return self.ids[value]
        return value

    def key_for(self, name: str, msgtype: str) -> str:
        c = self.c
        if name.startswith("error_unknown_key"):
            return crypto.generate_private_key()
        if msgtype in ("addexecutormsg", "approveexecutormsg", "removeexecutormsg"):
            return c.colony_key
        if name in ("addlogmsg_not_assigned_executor", "closesuccessfulmsg_by_other_identity"):
            return c.user_key
        if msgtype in ("assignprocessmsg", "addlogmsg", "closesuccessfulmsg", "closefailedmsg"):
            return c.executor_key
        return c.user_key

    # -- state builders --------------------------------------------------------------------
    def spec(self, cmd: str = "echo", args: list[str] | None = None, **extra: Any) -> dict[str, Any]:
        spec = {"conditions": {"colonyname": "dev", "executortype": "capture-executor"}, "funcname": "execute",
                "kwargs": {"cmd": cmd, "args": ["hello", "world"] if args is None else args}, "maxwaittime": -1,
                "maxexectime": 60, "maxretries": 0}
        spec.update(extra)
        return spec

    def submit(self, captured_id: str, assign: bool = False, **spec: Any) -> str:
        status, reply = self.c.raw({"msgtype": "submitfuncspecmsg", "spec": self.spec(**spec)}, self.c.user_key)
        assert status == 200, reply
        self.ids[captured_id] = reply["processid"]
        if assign:
            status, got = self.c.raw({"msgtype": "assignprocessmsg", "colonyname": "dev", "timeout": 1},
                                     self.c.executor_key)
            assert status == 200 and got["processid"] == reply["processid"], got
        return reply["processid"]

    def before(self, name: str) -> None:
        """Recreate what the real session had done before this capture."""
        if name == "getlogsmsg_since0":
            pid = self.ids[load("addlogmsg")["request_msg"]["processid"]]
            for line in ("line 1\n", "line 2\n"):
                self.executor.add_log(pid, line)
            mine = [log.timestamp for log in self.user.get_logs(pid)]
            captured = [entry["timestamp"] for entry in load("getlogsmsg_since0")["reply"]]
            self.ids.update(zip(captured, mine))
        elif name == "closefailedmsg":
            self.submit(load(name)["request_msg"]["processid"], assign=True, cmd="false", args=[])
        elif name == "closesuccessfulmsg_by_other_identity":
            self.submit(load(name)["request_msg"]["processid"], assign=True)
        elif name == "cancelprocessmsg_waiting":
            self.submit(load(name)["request_msg"]["processid"])
        elif name == "cancelprocessmsg_running":
            self.submit(load(name)["request_msg"]["processid"], assign=True)
        elif name == "getfilelabelsmsg_all":
            store = self.c.server.app.state.store
            for label, n in (("/bench", 3), ("/bench_big", 1), ("/bench_small", 2), ("/out", 1)):
                for i in range(n):
                    store.add_file(self._file(label, f"f{i}.bin"))
        elif name == "getfilesmsg_1000_files":
            store = self.c.server.app.state.store
            for i in range(1000):
                store.add_file(self._file("/bench_small", f"small_{i:04d}.bin"))
        elif name == "getfilemsg_cli_uploaded":
            captured = load(name)["reply"][0]
            self.c.raw({"msgtype": "addfilemsg", "file": {**captured, "fileid": ""}}, self.c.user_key)

    @staticmethod
    def _file(label: str, name: str) -> dict[str, Any]:
        return {"fileid": crypto.random_id(), "colonyname": "dev", "label": label, "name": name, "size": 1,
                "checksum": "00", "checksumalg": "SHA256",
                "ref": {"protocol": "s3", "s3object": {"server": "127.0.0.1", "port": 9000, "tls": False,
                                                       "accesskey": "", "secretkey": "", "region": "us-east-1",
                                                       "encryptionkey": "", "encryptionalg": "", "object": name,
                                                       "bucket": "b"}}}

    def after(self, name: str, reply: Any) -> None:
        """Learn the ids our server generated where the capture has its own."""
        captured = load(name).get("reply")
        if name in ("submitfuncspecmsg", "addfilemsg", "addfilemsg_second_revision", "createsnapshotmsg"):
            key = {"submitfuncspecmsg": "processid", "createsnapshotmsg": "snapshotid"}.get(name, "fileid")
            self.ids[captured[key]] = reply[key]

    # -- the odd ones ----------------------------------------------------------------------
    def longpoll_wakeup(self) -> tuple[int, Any, float]:
        capture = load("assignprocessmsg_longpoll_wakeup")
        out: dict[str, Any] = {}

        def poll() -> None:
            out["reply"] = self.c.raw(capture["request_msg"], self.c.executor_key)
            out["t"] = time.perf_counter()

        thread = threading.Thread(target=poll)
        thread.start()
        time.sleep(0.5)
        t0 = time.perf_counter()
        self.submit(capture["reply"]["processid"], cmd="echo")
        thread.join(10)
        status, reply = out["reply"]
        return status, reply, (out["t"] - t0) * 1000


@pytest.fixture(scope="module")
def replay(tmp_path_factory) -> Replay:
    server_key = crypto.generate_private_key()
    server = ServerThread(tmp_path_factory.mktemp("replay"), crypto.id_from_private_key(server_key)).start()
    colony = Colony_(server=server, server_key=server_key)
    from pollinator.colonies.models import Colony, User

    with colony.client(server_key) as c:
        c.add_colony(Colony(colonyid=crypto.id_from_private_key(colony.colony_key), name="dev"))
    with colony.client(colony.colony_key) as c:
        c.add_user(User(colonyname="dev", userid=crypto.id_from_private_key(colony.user_key), name="rig-user"))
    yield Replay(colony)
    server.stop()


def test_replay_all_captures(replay: Replay) -> None:
    """One test so the captures replay in their original order; all problems are reported together."""
    order = list(json.loads((CAPTURES / "_summary.json").read_text()))
    on_disk = {p.stem for p in CAPTURES.glob("*.json")} - NOT_REQUESTS
    assert set(order) == on_disk, "every capture is replayed"
    problems: list[str] = []
    for name in order:
        capture = load(name)
        request = capture["request_msg"]
        replay.before(name)
        payloadtype = signature = None
        if name == "assignprocessmsg_longpoll_wakeup":
            status, reply, wake_ms = replay.longpoll_wakeup()
            # the poll asks for 10 s: waking well before that is the behaviour (the real server took 12-18 ms;
            # a loaded CI box may take hundreds), timing out instead is the bug
            if wake_ms > 5000:
                problems.append(f"{name}: long-poll woke {wake_ms:.0f} ms after the submit (not by the submit)")
        else:
            if name == "error_payloadtype_mismatch":
                payloadtype = "getprocessesmsg"  # the Go reply names the handler of the envelope's type
            if name == "error_bad_signature":
                signature = "00" * 65
            t0 = time.perf_counter()
            status, reply = replay.c.raw(replay.map(request), replay.key_for(name, request["msgtype"]),
                                         payloadtype=payloadtype, signature=signature)
            elapsed = (time.perf_counter() - t0) * 1000
            if name.startswith("assignprocessmsg_empty_timeout") and capture["elapsed_ms"] > 500:
                # it must really block for its timeout (not return at once, not hang); slack for a loaded box
                if not capture["elapsed_ms"] - 100 <= elapsed <= capture["elapsed_ms"] + 3000:
                    problems.append(f"{name}: blocked {elapsed:.0f} ms, real server {capture['elapsed_ms']} ms")
        if status != capture["http_status"]:
            problems.append(f"{name}: HTTP {status} != {capture['http_status']} ({reply})")
            continue
        expected = capture["reply"]
        if capture["http_status"] >= 400:
            if reply != expected:
                problems.append(f"{name}: {reply} != {expected}")
            continue
        problems += [f"{name}: shape {p}" for p in diff_shape(shape(expected), shape(reply))]
        if name != "getcolonystatsmsg":  # counts depend on the whole history of the real server
            problems += [f"{name}: value {p}" for p in diff_values(expected, reply)]
        replay.after(name, reply)
    assert not problems, "\n".join(problems)


# -- more/ -------------------------------------------------------------------------------
MORE = CAPTURES / "more"
MORE_VOLATILE = {"buildtime", "host", "port", "processid", "timestamp"}


def _more_values(expected: Any, actual: Any, path: str = "") -> list[str]:
    key = path.rsplit(".", 1)[-1]
    if key in MORE_VOLATILE:
        return []
    if isinstance(expected, dict) and isinstance(actual, dict):
        return [p for k in expected if k in actual for p in _more_values(expected[k], actual[k], f"{path}.{k}")]
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [p for i, (e, a) in enumerate(zip(expected, actual)) for p in _more_values(e, a, f"{path}[{i}]")]
    return [] if expected == actual else [f"{path}: {expected!r} != {actual!r}"]


def _running_process(colony: Colony_) -> str:
    user, executor = colony.client(colony.user_key), colony.client(colony.executor_key)
    spec = {"conditions": {"colonyname": "dev", "executortype": colony.executor_type}, "funcname": "execute",
            "maxwaittime": -1, "maxexectime": 60, "maxretries": 0}
    status, reply = colony.raw({"msgtype": "submitfuncspecmsg", "spec": spec}, colony.user_key)
    assert status == 200, reply
    assert executor.assign(timeout=-1).processid == reply["processid"]
    user.close()
    return reply["processid"]


MORE_NAMES = sorted(p.stem for p in MORE.glob("*.json"))
NUL_CAPTURE = "addlogmsg_nul_byte"


def test_replay_more_captures(tmp_path) -> None:
    """Every capture in more/ but the NUL one (below), each with the state it needed, on a fresh colony
    (captured colony `real` = `dev`)."""
    assert NUL_CAPTURE in MORE_NAMES and len(MORE_NAMES) >= 8, "the more/ captures are there"
    replay_more(tmp_path, [n for n in MORE_NAMES if n != NUL_CAPTURE])


def test_replay_more_nul_byte_capture(tmp_path) -> None:
    """A NUL in a log line: 400 with the Go server's two error envelopes back to back, nothing stored."""
    replay_more(tmp_path, [NUL_CAPTURE])


def replay_more(tmp_path: Path, names: list[str]) -> None:
    colony = start_colony(tmp_path / "more")
    store = colony.server.app.state.store
    problems: list[str] = []
    try:
        for name in names:
            capture = json.loads((MORE / f"{name}.json").read_text())
            request = json.loads(json.dumps(capture["request_msg"]).replace('"real"', '"dev"'))
            if name == "searchlogsmsg":  # the real colony had these lines; ours gets the same ones
                pid = _running_process(colony)
                for entry in capture["reply"]:
                    store.add_log(pid, "dev", entry["executorname"], entry["message"])
                store.add_log(pid, "dev", "perfexec", "no match in this line\n")
            if "processid" in request:
                request["processid"] = _running_process(colony)
            envelope = encode_envelope(request, colony.user_key if request["msgtype"] != "addlogmsg"
                                       else colony.executor_key)
            if capture.get("signed") is False:
                envelope["signature"] = ""
            resp = httpx.post(colony.server.url + "/api", json=envelope, timeout=30)
            if resp.status_code != capture["http_status"]:
                problems.append(f"{name}: HTTP {resp.status_code} != {capture['http_status']} ({resp.text[:200]})")
                continue
            if "raw_reply_body" in capture:  # compared byte for byte (the NUL refusal's two envelopes)
                if resp.text != capture["raw_reply_body"]:
                    problems.append(f"{name}: body {resp.text!r} != {capture['raw_reply_body']!r}")
                continue
            body = json.loads(resp.content)
            if (body["payloadtype"], body["error"]) != (capture["reply_payloadtype"], capture["reply_error_flag"]):
                problems.append(f"{name}: envelope {body['payloadtype']}/{body['error']}")
            reply = json.loads(base64.b64decode(body["payload"]))
            expected = json.loads(json.dumps(capture["reply"]).replace('"real"', '"dev"'))
            problems += [f"{name}: shape {p}" for p in diff_shape(shape(expected), shape(reply))]
            problems += [f"{name}: value {p}" for p in _more_values(expected, reply)]
        if NUL_CAPTURE in names:
            nul = json.loads((MORE / f"{NUL_CAPTURE}.json").read_text())["request_msg"]["message"]
            if store.search_logs("dev", nul, 1, 100):
                problems.append(f"{NUL_CAPTURE}: the refused line was stored")
    finally:
        colony.server.stop()
    assert not problems, "\n".join(problems)
