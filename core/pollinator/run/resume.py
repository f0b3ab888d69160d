"""May a caller pick up an earlier process instead of submitting a new one? One rule for every entry point.

The CLI (``.pollinator/run.json``), the Airflow operator (sync and deferrable,
every try) and the Prefect task all hand the core what they remember (client
token strings, a process id); the decision is made here:

* a process that is WAITING or RUNNING is still doing the work: follow it;
* one that ended SUCCESS did the work: take its results, do not run it again;
* one that ended FAILED or CANCELLED was a finished attempt: submitting again
  is what a retry means.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional, Union

from pollinator.colonies.models import Process, ProcessState
from pollinator.errors import NotFound
from pollinator.run.token import find_by_token

if TYPE_CHECKING:
    from pollinator.colonies.client import ColoniesClient

StateLike = Union[ProcessState, int, str]

ACTIVE = (ProcessState.WAITING, ProcessState.RUNNING)
RESUMABLE = (*ACTIVE, ProcessState.SUCCESS)


def _state(state: StateLike) -> ProcessState:
    return ProcessState[state] if isinstance(state, str) else ProcessState(state)


def is_active(state: StateLike) -> bool:
    """Still waiting or running (state as the enum, its number or its name)."""
    return _state(state) in ACTIVE


def is_resumable(state: StateLike) -> bool:
    """Worth picking up instead of submitting anew: active, or ended SUCCESS."""
    return _state(state) in RESUMABLE


def find_resumable(client: "ColoniesClient", tokens: Iterable[Optional[str]]) -> Optional[Process]:
    """The process of the first token (in the order given: the caller's own first) that may be resumed."""
    for token in tokens:
        if not token:
            continue
        process = find_by_token(client, token)
        if process is not None and is_resumable(process.state):
            return process
    return None


def resumable_process(client: "ColoniesClient", process_id: str) -> Optional[Process]:
    """``process_id``'s process if it may be resumed; None if it ended FAILED/CANCELLED or is gone."""
    try:
        process = client.get_process(process_id)
    except NotFound:
        return None
    return process if is_resumable(process.state) else None
