"""A job's return value: JSON the job writes to ``$POLLINATOR_RETURN``, read back when it succeeds.

Any command can hand one JSON value back without credentials to call home
(an HPC job usually has none): it writes the value to the file named by
``$POLLINATOR_RETURN``, ``$POLLINATOR_RESULT_DIR/.pollinator/return.json``.
The executor syncs the result dir back to ColonyFS like any result file; the
core reads that one file from the run's result label (no download of the
results is needed) and puts the value in ``JobResult.return_value``, which
Airflow pushes to XCom and Prefect returns. Remote Python functions use the
same file.

``.pollinator/`` in a result dir holds the run's internal files (this one and
the launcher's ``exit.json``): the process handle never lists them as the
user's result files nor pulls them into the user's ``result_dir``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional, Protocol

from pollinator.errors import ColoniesError, ProjectError
from pollinator.launcher import INTERNAL_DIR

RETURN_ENV = "POLLINATOR_RETURN"
RETURN_FILE = "return.json"
# XCom rows, Prefect results and the process record are not the place for bulk data: files are.
MAX_RETURN_BYTES = 1024 * 1024


class _Files(Protocol):
    def get_files(self, label: str) -> Any: ...


class _Store(Protocol):
    def get_small(self, key: str, size: Optional[int] = None) -> bytes: ...


def return_path(result_dir: str) -> str:
    """``$POLLINATOR_RETURN`` for a run whose result dir (on the executor) is ``result_dir``."""
    return f"{result_dir.rstrip('/')}/{INTERNAL_DIR}/{RETURN_FILE}"


def internal_label(result_label: str) -> str:
    """The ColonyFS label of a run's internal files."""
    return f"{result_label.rstrip('/')}/{INTERNAL_DIR}"


class NoReturnValue:
    """The job wrote no ``$POLLINATOR_RETURN`` file (distinct from writing ``null``)."""

    def __repr__(self) -> str:
        return "NO_RETURN_VALUE"


NO_RETURN_VALUE = NoReturnValue()


def _too_big(size: int, where: str) -> ProjectError:
    return ProjectError(f"the return value in {where} is {size} bytes, over the limit of {MAX_RETURN_BYTES} "
                        "bytes: write large results as files into $POLLINATOR_RESULT_DIR and return their names")


def decode(raw: bytes, where: str) -> Any:
    """The value in ``raw``; a clear ProjectError (no retry fixes it) when it is too big or not JSON."""
    if len(raw) > MAX_RETURN_BYTES:
        raise _too_big(len(raw), where)
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProjectError(f"the return value in {where} is not UTF-8 text ({exc.reason} at byte {exc.start}): "
                           "write JSON, e.g. json.dump(value, open(os.environ['POLLINATOR_RETURN'], 'w'))") from None
    except json.JSONDecodeError as exc:
        raise ProjectError(f"the return value in {where} is not valid JSON ({exc.msg} at line {exc.lineno} "
                           f"column {exc.colno}): write JSON, e.g. "
                           "json.dump(value, open(os.environ['POLLINATOR_RETURN'], 'w'))") from None


def read_return_value(client: _Files, store: _Store, result_label: str) -> Any:
    """The JSON value the run left in ``<result_label>/.pollinator/return.json``, or :data:`NO_RETURN_VALUE`.

    Reads the one small object straight from S3 (its size is checked before
    the GET and its SHA-256 after), so neither the results nor a worker disk
    are involved.
    """
    if not result_label:
        return NO_RETURN_VALUE
    label = internal_label(result_label)
    where = f"{label}/{RETURN_FILE}"
    try:
        rows = client.get_files(label) or []
    except ColoniesError as exc:
        raise ColoniesError(f"cannot list {label} to read the return value: {exc}") from exc
    row = next((r for r in rows if r.name == RETURN_FILE), None)
    if row is None:
        return NO_RETURN_VALUE
    if row.size > MAX_RETURN_BYTES:
        raise _too_big(row.size, where)
    raw = store.get_small(row.s3filename, row.size) if row.size else b""
    if row.checksum and hashlib.sha256(raw).hexdigest() != row.checksum:
        raise ColoniesError(f"{where}: the bytes read do not match the recorded SHA-256 {row.checksum}")
    return decode(raw, where)
