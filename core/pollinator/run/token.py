"""Client tokens: how a caller that crashed after submitting finds its process again.

The token travels twice in the spec: as the process ``label`` (which the
server can filter on) and as the env var ``POLLINATOR_CLIENT_TOKEN`` (which
the server copies into the process attributes). Either is enough to match.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Optional
from urllib.parse import quote

from pollinator.colonies.models import Process, ProcessState
from pollinator.errors import ColoniesReplyError

if TYPE_CHECKING:
    from pollinator.colonies.client import ColoniesClient

TOKEN_ENV = "POLLINATOR_CLIENT_TOKEN"
LABEL_PREFIX = "pollinator:"


def token_label(token: str) -> str:
    # labels are free text, but keep them short and printable
    digest = hashlib.sha256(token.encode()).hexdigest()[:32]
    return f"{LABEL_PREFIX}{digest}"


def token_env_value(token: str) -> str:
    """The token as the spec's env carries it: percent-encoded where an executor template would change it.

    (An Airflow run id holds ``+``, which the HPC executor's html/template turns into ``&#43;``.)
    """
    return quote(token, safe="/:@,=._-")


def carries_token(process: Process, token: str) -> bool:
    if process.spec.label == token_label(token):
        return True
    return (process.spec.env or {}).get(TOKEN_ENV) in (token_env_value(token), token)


def find_by_token(client: "ColoniesClient", token: str, count: int = 100) -> Optional[Process]:
    """The newest process submitted with this token, in any state."""
    label = token_label(token)
    found: list[Process] = []
    for state in ProcessState:
        try:
            candidates = client.get_processes(state, count=count, label=label)
        except ColoniesReplyError:  # an older server may not filter by label: fall back to a plain listing
            candidates = client.get_processes(state, count=count)
        found.extend(p for p in candidates if carries_token(p, token))
    if not found:
        return None
    return max(found, key=lambda p: p.prioritytime)
