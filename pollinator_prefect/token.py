"""The client token of one Prefect task attempt: re-attach after a crash, resubmit after a failure.

The core re-attaches ``Job.submit()`` to *any* earlier process carrying the
same token, in any state. So the token must be

* the same when the same attempt runs again after its Python process died
  (the flow run is restarted and calls the task again): then the still
  running ColonyOS process is picked up instead of a second one started;
* different for a Prefect retry after the remote process FAILED: otherwise
  the retry would re-attach to the failed process and fail again.

Prefect 3 gives every task call a fresh random ``task_run.id`` and (for
in-flow runs) a random ``dynamic_key``, so neither survives a restart. What
does survive is: the flow run id, which function is called with which
arguments, how many calls of it with these arguments came before in this
flow run, and ``task_run.run_count`` (1 for the first attempt, +1 per retry).
The token is built from exactly those.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Callable, Mapping, Optional

from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects

_MAX_REMEMBERED = 10_000

_lock = threading.Lock()
_counts: dict[tuple[str, str, str], int] = {}
_occurrence_of_run: "OrderedDict[str, int]" = OrderedDict()


def function_id(func: Callable[..., Any]) -> str:
    """Module and qualified name: stable across processes, distinct for same-named functions."""
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def _occurrence(flow_run_id: str, fid: str, args_hash: str, task_run_id: str) -> int:
    """0 for the first call of ``fid`` with these arguments in this flow run (in this process), 1 next...

    A retry is the same task run, so it keeps its index.
    """
    with _lock:
        if task_run_id in _occurrence_of_run:
            return _occurrence_of_run[task_run_id]
        key = (flow_run_id, fid, args_hash)
        index = _counts.get(key, 0)
        _counts[key] = index + 1
        _occurrence_of_run[task_run_id] = index
        while len(_occurrence_of_run) > _MAX_REMEMBERED:
            _occurrence_of_run.popitem(last=False)
        if len(_counts) > _MAX_REMEMBERED:
            _counts.clear()  # a long-lived worker: old flow runs will not come back to this process
        return index


def client_token(func: Callable[..., Any], parameters: Mapping[str, Any],
                 context: Optional[TaskRunContext] = None) -> Optional[str]:
    """The token of the current task attempt, or None outside a Prefect task run."""
    ctx = context or TaskRunContext.get()
    if ctx is None:
        return None
    run = ctx.task_run
    fid = function_id(func)
    args_hash = hash_objects(dict(parameters)) or "unhashable"
    # outside a flow the task run itself is the unit that can be retried
    scope = str(run.flow_run_id or run.id)
    index = _occurrence(scope, fid, args_hash, str(run.id))
    raw = f"prefect|{scope}|{fid}|{args_hash}|{index}|{max(run.run_count, 1)}"
    return "prefect-" + hashlib.sha256(raw.encode()).hexdigest()[:40]
