"""SQLite persistence for the local colony.

One connection, one lock: every call is a short, serialised transaction, so the
asyncio server can call it directly (a call is well under a millisecond) and
tests can still poke it from another thread. WAL + ``synchronous=NORMAL``
keeps writes cheap while surviving a process restart (the durability we
need; not an OS crash). Times are stored as integer UTC nanoseconds, already
rounded to the microsecond the way Postgres stores them for the Go server.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from pollinator.dev.wire import db_ns, now_ns

DB_FILE = "colonies.sqlite3"

WAITING, RUNNING, SUCCESS, FAILED, CANCELLED = 0, 1, 2, 3, 4
PENDING, APPROVED, REJECTED, UNREGISTERED = 0, 1, 2, 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS colonies (name TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS users (
    colony TEXT NOT NULL, name TEXT NOT NULL, id TEXT NOT NULL, email TEXT NOT NULL, phone TEXT NOT NULL,
    PRIMARY KEY (colony, name));
CREATE INDEX IF NOT EXISTS users_id ON users (colony, id);
CREATE TABLE IF NOT EXISTS executors (
    colony TEXT NOT NULL, name TEXT NOT NULL, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL, state INTEGER NOT NULL,
    requirefuncreg INTEGER NOT NULL, commission INTEGER NOT NULL, lastheard INTEGER NOT NULL, location TEXT NOT NULL,
    capabilities TEXT NOT NULL, allocations TEXT NOT NULL, PRIMARY KEY (colony, name));
CREATE TABLE IF NOT EXISTS processes (
    id TEXT PRIMARY KEY, colony TEXT NOT NULL, state INTEGER NOT NULL, is_assigned INTEGER NOT NULL,
    executortype TEXT NOT NULL, executornames TEXT, location TEXT NOT NULL, assigned TEXT NOT NULL,
    prioritytime INTEGER NOT NULL, submission INTEGER NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    waitdeadline INTEGER NOT NULL, execdeadline INTEGER NOT NULL, retries INTEGER NOT NULL, label TEXT NOT NULL,
    initiatorname TEXT NOT NULL, cpu INTEGER NOT NULL, mem INTEGER NOT NULL, attr_state INTEGER NOT NULL,
    errors TEXT, inp TEXT, outp TEXT, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS processes_queue ON processes (colony, state, executortype, prioritytime);
CREATE TABLE IF NOT EXISTS logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, pid TEXT NOT NULL, colony TEXT NOT NULL, executorname TEXT NOT NULL,
    ts INTEGER NOT NULL, msg TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_pid ON logs (pid, ts);
CREATE INDEX IF NOT EXISTS logs_executor ON logs (executorname, ts);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, colony TEXT NOT NULL, label TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL,
    seqnr INTEGER NOT NULL, checksum TEXT NOT NULL, checksumalg TEXT NOT NULL, added INTEGER NOT NULL,
    ref TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS files_name ON files (colony, label, name, seqnr);
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY, colony TEXT NOT NULL, label TEXT NOT NULL, name TEXT NOT NULL, fileids TEXT,
    added INTEGER NOT NULL, UNIQUE (colony, name));
"""

# Process columns that hold JSON (None stays SQL NULL, i.e. Go's nil slice).
_JSON_COLUMNS = {"executornames", "errors", "inp", "outp"}
# Public record key -> column name where they differ.
_COLUMN = {"start": "start_ns", "end": "end_ns", "in": "inp", "out": "outp"}


def _like_regex(text: str) -> str:
    """PostgreSQL ``LIKE '%text%'`` as a regex: ``%`` any run, ``_`` one character, ``\\`` escapes."""
    out, chars = [], iter(text)
    for ch in chars:
        if ch == "\\":
            out.append(re.escape(next(chars, "\\")))
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return "".join(out)


def _loads(text: Optional[str]) -> Any:
    return None if text is None else json.loads(text)


def _dumps(value: Any) -> Optional[str]:
    return None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Store:
    """All state of the local colony. Methods return plain dicts (records)."""

    def __init__(self, data_dir: Path):
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / DB_FILE
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT MAX(ts) FROM logs").fetchone()
        self._last_log_ts = int(row[0] or 0)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, sql: str, *args: Any) -> Optional[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _count(self, sql: str, *args: Any) -> int:
        row = self._one(sql, *args)
        return int(row[0]) if row is not None else 0

    def _all(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- colonies and users ------------------------------------------------------------
    def add_colony(self, colony_id: str, name: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO colonies (name, id) VALUES (?, ?)", (name, colony_id))

    def colony_by_name(self, name: str) -> Optional[dict[str, str]]:
        row = self._one("SELECT id, name FROM colonies WHERE name=?", name)
        return {"colonyid": row["id"], "name": row["name"]} if row else None

    def colonies(self) -> list[dict[str, str]]:
        return [{"colonyid": r["id"], "name": r["name"]} for r in self._all("SELECT id, name FROM colonies")]

    @staticmethod
    def _user(row: sqlite3.Row) -> dict[str, str]:
        return {"colonyname": row["colony"], "userid": row["id"], "name": row["name"], "email": row["email"],
                "phone": row["phone"]}

    def add_user(self, user: dict[str, str]) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO users (colony, name, id, email, phone) VALUES (?, ?, ?, ?, ?)",
                       (user["colonyname"], user["name"], user["userid"], user["email"], user["phone"]))

    def user_by_id(self, colony: str, user_id: str) -> Optional[dict[str, str]]:
        row = self._one("SELECT * FROM users WHERE colony=? AND id=?", colony, user_id)
        return self._user(row) if row else None

    def user_by_name(self, colony: str, name: str) -> Optional[dict[str, str]]:
        row = self._one("SELECT * FROM users WHERE colony=? AND name=?", colony, name)
        return self._user(row) if row else None

    def users(self, colony: str) -> list[dict[str, str]]:
        return [self._user(r) for r in self._all("SELECT * FROM users WHERE colony=? ORDER BY name", colony)]

    def remove_user(self, colony: str, name: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM users WHERE colony=? AND name=?", (colony, name))

    # -- executors ---------------------------------------------------------------------
    @staticmethod
    def _executor(row: sqlite3.Row) -> dict[str, Any]:
        return {"id": row["id"], "type": row["type"], "name": row["name"], "colony": row["colony"],
                "state": row["state"], "requirefuncreg": bool(row["requirefuncreg"]), "commission": row["commission"],
                "lastheard": row["lastheard"], "location": row["location"],
                "capabilities": json.loads(row["capabilities"]), "allocations": json.loads(row["allocations"])}

    def executor_by_id(self, executor_id: str) -> Optional[dict[str, Any]]:
        row = self._one("SELECT * FROM executors WHERE id=?", executor_id)
        return self._executor(row) if row else None

    def executor_by_name(self, colony: str, name: str) -> Optional[dict[str, Any]]:
        row = self._one("SELECT * FROM executors WHERE colony=? AND name=?", colony, name)
        return self._executor(row) if row else None

    def executors(self, colony: str) -> list[dict[str, Any]]:
        return [self._executor(r) for r in self._all("SELECT * FROM executors WHERE colony=? ORDER BY rowid", colony)]

    def put_executor(self, ex: dict[str, Any]) -> None:
        """Insert, or reactivate an UNREGISTERED row of the same name (new id, PENDING)."""
        values = (ex["id"], ex["type"], PENDING, int(ex["requirefuncreg"]), db_ns(now_ns()), ex["lastheard"],
                  ex["location"], json.dumps(ex["capabilities"]), json.dumps(ex["allocations"]))
        with self._tx() as db:
            row = db.execute("SELECT state FROM executors WHERE colony=? AND name=?",
                             (ex["colony"], ex["name"])).fetchone()
            if row is not None and row["state"] == UNREGISTERED:
                db.execute("UPDATE executors SET id=?, type=?, state=?, requirefuncreg=?, commission=?, lastheard=?, "
                           "location=?, capabilities=?, allocations=? WHERE colony=? AND name=?",
                           values + (ex["colony"], ex["name"]))
            else:
                db.execute("INSERT INTO executors (id, type, state, requirefuncreg, commission, lastheard, location, "
                           "capabilities, allocations, colony, name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           values + (ex["colony"], ex["name"]))

    def set_executor_state(self, colony: str, name: str, state: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE executors SET state=? WHERE colony=? AND name=?", (state, colony, name))

    def unregister_executor(self, colony: str, name: str) -> list[str]:
        """Mark UNREGISTERED and put its RUNNING processes back in the queue; returns their ids."""
        with self._tx() as db:
            row = db.execute("SELECT id FROM executors WHERE colony=? AND name=?", (colony, name)).fetchone()
            if row is None:
                return []
            db.execute("UPDATE executors SET state=? WHERE colony=? AND name=?", (UNREGISTERED, colony, name))
            ids = [r[0] for r in db.execute("SELECT id FROM processes WHERE assigned=? AND state=?",
                                            (row["id"], RUNNING))]
            db.execute("UPDATE processes SET is_assigned=0, start_ns=0, end_ns=0, assigned='', state=? "
                       "WHERE assigned=? AND state=?", (WAITING, row["id"], RUNNING))
            return ids

    def mark_alive(self, executor_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE executors SET lastheard=? WHERE id=?", (db_ns(now_ns()), executor_id))

    def count_executors(self, colony: str, state: Optional[int] = None) -> int:
        if state is None:
            return self._count("SELECT COUNT(*) FROM executors WHERE colony=?", colony)
        return self._count("SELECT COUNT(*) FROM executors WHERE colony=? AND state=?", colony, state)

    # -- processes ---------------------------------------------------------------------
    @staticmethod
    def _process(row: sqlite3.Row) -> dict[str, Any]:
        doc = json.loads(row["doc"])
        return {
            "id": row["id"], "colony": row["colony"], "state": row["state"], "is_assigned": bool(row["is_assigned"]),
            "executortype": row["executortype"], "assigned": row["assigned"], "prioritytime": row["prioritytime"],
            "submission": row["submission"], "start": row["start_ns"], "end": row["end_ns"],
            "waitdeadline": row["waitdeadline"], "execdeadline": row["execdeadline"], "retries": row["retries"],
            "label": row["label"], "initiatorname": row["initiatorname"], "attr_state": row["attr_state"],
            "errors": _loads(row["errors"]), "in": _loads(row["inp"]), "out": _loads(row["outp"]),
            "spec": doc["spec"], "initiatorid": doc["initiatorid"], "parents": doc["parents"],
            "children": doc["children"], "processgraphid": doc["processgraphid"],
            "waitforparents": doc["waitforparents"],
        }

    def add_process(self, p: dict[str, Any]) -> None:
        spec = p["spec"]
        doc = {"spec": spec, "initiatorid": p["initiatorid"], "parents": p["parents"], "children": p["children"],
               "processgraphid": p["processgraphid"], "waitforparents": p["waitforparents"]}
        with self._tx() as db:
            db.execute(
                "INSERT INTO processes (id, colony, state, is_assigned, executortype, executornames, location, "
                "assigned, prioritytime, submission, start_ns, end_ns, waitdeadline, execdeadline, retries, label, "
                "initiatorname, cpu, mem, attr_state, errors, inp, outp, doc) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (p["id"], p["colony"], p["state"], int(p["is_assigned"]), spec["executortype"],
                 _dumps(spec["executornames"]), spec["locationname"], p["assigned"], p["prioritytime"],
                 p["submission"], p["start"], p["end"], p["waitdeadline"], p["execdeadline"], p["retries"],
                 spec["label"], p["initiatorname"], spec["cpu"], spec["mem"], p["attr_state"], _dumps(p["errors"]),
                 _dumps(p["in"]), _dumps(p["out"]), json.dumps(doc, separators=(",", ":"), ensure_ascii=False)))

    def get_process(self, process_id: str) -> Optional[dict[str, Any]]:
        row = self._one("SELECT * FROM processes WHERE id=?", process_id)
        return self._process(row) if row else None

    def update_process(self, process_id: str, **fields: Any) -> None:
        """Set columns of one process; JSON columns take Python values."""
        sets, args = [], []
        for key, value in fields.items():
            column = _COLUMN.get(key, key)
            sets.append(f"{column}=?")
            args.append(_dumps(value) if column in _JSON_COLUMNS else value)
        with self._tx() as db:
            db.execute(f"UPDATE processes SET {', '.join(sets)} WHERE id=?", (*args, process_id))

    def remove_process(self, process_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM processes WHERE id=?", (process_id,))

    def find_processes(self, colony: str, state: int, executor_type: str, label: str, initiator: str,
                       count: int) -> list[dict[str, Any]]:
        """getprocessesmsg: one filter only (type, else initiator, else label), Go's ordering per state."""
        order = {WAITING: "prioritytime ASC", RUNNING: "start_ns ASC"}.get(state, "end_ns DESC")
        where, args = "colony=? AND state=?", [colony, state]
        if executor_type:
            where, args = where + " AND executortype=?", args + [executor_type]
        elif initiator:
            where, args = where + " AND initiatorname=?", args + [initiator]
        elif label:
            where, args = where + " AND label=?", args + [label]
        rows = self._all(f"SELECT * FROM processes WHERE {where} ORDER BY {order} LIMIT ?", *args, max(count, 0))
        return [self._process(r) for r in rows]

    def select_candidate(self, colony: str, executor_name: str, executor_type: str, location: str, cpu: int,
                         mem: int) -> Optional[dict[str, Any]]:
        """The scheduler's pick: lowest prioritytime among this type's queue, for this name or the pool."""
        row = self._one(
            "SELECT * FROM processes WHERE colony=? AND state=? AND is_assigned=0 AND executortype=? "
            "AND cpu<=? AND mem<=? AND (location='' OR lower(location)=lower(?)) "
            "AND (executornames IS NULL OR executornames='[]' "
            "     OR EXISTS (SELECT 1 FROM json_each(processes.executornames) WHERE value=?)) "
            "ORDER BY prioritytime ASC LIMIT 1",
            colony, WAITING, executor_type, cpu, mem, location, executor_name)
        return self._process(row) if row else None

    def processes_in_state(self, state: int, limit: int = 1000, newest_first: bool = False) -> list[dict[str, Any]]:
        """Oldest first (deadline checks want those); a capped listing of what is new asks for newest_first."""
        order = "DESC" if newest_first else "ASC"
        return [self._process(r) for r in self._all(
            f"SELECT * FROM processes WHERE state=? ORDER BY submission {order} LIMIT ?", state, limit)]

    def count_processes(self, colony: str, state: int) -> int:
        return self._count("SELECT COUNT(*) FROM processes WHERE colony=? AND state=?", colony, state)

    # -- logs --------------------------------------------------------------------------
    def add_log(self, process_id: str, colony: str, executor_name: str, message: str) -> int:
        """Store a line stamped with a strictly increasing ns timestamp (exclusive ``since`` stays lossless)."""
        with self._tx() as db:
            ts = max(now_ns(), self._last_log_ts + 1)
            self._last_log_ts = ts
            db.execute("INSERT INTO logs (pid, colony, executorname, ts, msg) VALUES (?, ?, ?, ?, ?)",
                       (process_id, colony, executor_name, ts, message))
            return ts

    def get_logs(self, *, process_id: str = "", executor_name: str = "", count: int, since: int,
                 latest: bool) -> list[dict[str, Any]]:
        column, key = ("executorname", executor_name) if executor_name else ("pid", process_id)
        limit = max(count, 0)
        if latest:
            rows = self._all(f"SELECT * FROM logs WHERE {column}=? ORDER BY ts DESC, seq DESC LIMIT ?", key, limit)
            rows.reverse()
        elif since > 0:
            rows = self._all(f"SELECT * FROM logs WHERE {column}=? AND ts>? ORDER BY ts, seq LIMIT ?", key, since,
                             limit)
        else:
            rows = self._all(f"SELECT * FROM logs WHERE {column}=? ORDER BY ts, seq LIMIT ?", key, limit)
        return [{"processid": r["pid"], "colonyname": r["colony"], "executorname": r["executorname"],
                 "message": r["msg"], "timestamp": r["ts"]} for r in rows]

    def search_logs(self, colony: str, text: str, days: int, count: int) -> list[dict[str, Any]]:
        """The Go query: ``MSG LIKE '%' || text || '%'`` (case-sensitive; ``%``/``_`` in text are wildcards),
        added within ``days`` days, at most ``count``, in insertion order."""
        pattern = re.compile(_like_regex(text), re.DOTALL)
        since = now_ns() - days * 86_400 * 1_000_000_000
        found: list[dict[str, Any]] = []
        if count <= 0:
            return found
        with self._lock:
            rows = self._db.execute("SELECT * FROM logs WHERE colony=? AND ts>? ORDER BY seq", (colony, since))
            for r in rows:
                if pattern.search(r["msg"]):
                    found.append({"processid": r["pid"], "colonyname": r["colony"],
                                  "executorname": r["executorname"], "message": r["msg"], "timestamp": r["ts"]})
                    if len(found) >= count:
                        break
        return found

    # -- files -------------------------------------------------------------------------
    @staticmethod
    def _file(row: sqlite3.Row) -> dict[str, Any]:
        return {"fileid": row["id"], "colonyname": row["colony"], "label": row["label"], "name": row["name"],
                "size": row["size"], "sequencenr": row["seqnr"], "checksum": row["checksum"],
                "checksumalg": row["checksumalg"], "ref": json.loads(row["ref"]), "added": row["added"]}

    def add_file(self, f: dict[str, Any]) -> None:
        """Insert with the next value of the global sequence (the client's sequencenr is ignored)."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key='file_seq'").fetchone()
            seq = (row[0] if row else 0) + 1
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('file_seq', ?)", (seq,))
            db.execute("INSERT INTO files (id, colony, label, name, size, seqnr, checksum, checksumalg, added, ref) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (f["fileid"], f["colonyname"], f["label"], f["name"], f["size"], seq, f["checksum"],
                        f["checksumalg"], db_ns(now_ns()), json.dumps(f["ref"])))

    def file_by_id(self, colony: str, file_id: str) -> Optional[dict[str, Any]]:
        row = self._one("SELECT * FROM files WHERE colony=? AND id=?", colony, file_id)
        return self._file(row) if row else None

    def files_by_name(self, colony: str, label: str, name: str, latest: bool) -> list[dict[str, Any]]:
        sql = "SELECT * FROM files WHERE colony=? AND label=? AND name=? ORDER BY seqnr DESC"
        rows = self._all(sql + (" LIMIT 1" if latest else ""), colony, label, name)
        return [self._file(r) for r in rows]

    def latest_files_in_label(self, colony: str, label: str) -> list[dict[str, Any]]:
        """The newest revision of every name in one label, ordered by name."""
        rows = self._all(
            "SELECT f.* FROM files f JOIN (SELECT name, MAX(seqnr) AS m FROM files WHERE colony=? AND label=? "
            "GROUP BY name) l ON f.name=l.name AND f.seqnr=l.m WHERE f.colony=? AND f.label=? ORDER BY f.name",
            colony, label, colony, label)
        return [self._file(r) for r in rows]

    def latest_file_summaries(self, colony: str, label: str) -> list[dict[str, Any]]:
        """getfilesmsg rows in one indexed pass (SQLite takes bare columns from the MAX(seqnr) row).

        A no-change re-sync of a 10,000-file label is mostly this query, so it avoids
        building and JSON-parsing full file records.
        """
        rows = self._all(
            "SELECT name, checksum, size, json_extract(ref, '$.s3object.object'), MAX(seqnr) FROM files "
            "WHERE colony=? AND label=? GROUP BY name ORDER BY name", colony, label)
        return [{"name": r[0], "checksum": r[1], "size": r[2], "s3filename": r[3] or ""} for r in rows]

    def label_counts(self, colony: str) -> dict[str, int]:
        """Every label with its number of file rows (all revisions), ordered by label."""
        rows = self._all("SELECT label, COUNT(*) FROM files WHERE colony=? GROUP BY label ORDER BY label", colony)
        return {r[0]: r[1] for r in rows}

    def remove_file_by_id(self, colony: str, file_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM files WHERE colony=? AND id=?", (colony, file_id))

    def remove_file_by_name(self, colony: str, label: str, name: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM files WHERE colony=? AND label=? AND name=?", (colony, label, name))

    # -- snapshots ---------------------------------------------------------------------
    @staticmethod
    def _snapshot(row: sqlite3.Row) -> dict[str, Any]:
        return {"snapshotid": row["id"], "colonyname": row["colony"], "label": row["label"], "name": row["name"],
                "fileids": _loads(row["fileids"]), "added": row["added"]}

    def add_snapshot(self, s: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO snapshots (id, colony, label, name, fileids, added) VALUES (?, ?, ?, ?, ?, ?)",
                       (s["snapshotid"], s["colonyname"], s["label"], s["name"], _dumps(s["fileids"]),
                        db_ns(s["added"])))

    def snapshot_by_id(self, colony: str, snapshot_id: str) -> Optional[dict[str, Any]]:
        row = self._one("SELECT * FROM snapshots WHERE colony=? AND id=?", colony, snapshot_id)
        return self._snapshot(row) if row else None

    def snapshot_by_name(self, colony: str, name: str) -> Optional[dict[str, Any]]:
        row = self._one("SELECT * FROM snapshots WHERE colony=? AND name=?", colony, name)
        return self._snapshot(row) if row else None

    def snapshots(self, colony: str) -> list[dict[str, Any]]:
        rows = self._all("SELECT * FROM snapshots WHERE colony=? ORDER BY added DESC", colony)
        return [self._snapshot(r) for r in rows]

    def remove_snapshot(self, colony: str, *, snapshot_id: str = "", name: str = "") -> None:
        with self._tx() as db:
            if snapshot_id:
                db.execute("DELETE FROM snapshots WHERE colony=? AND id=?", (colony, snapshot_id))
            else:
                db.execute("DELETE FROM snapshots WHERE colony=? AND name=?", (colony, name))
