"""Make this executor a member of the colony: add it with the colony key, then approve it.

The colony owner's key is only needed here, at start-up; the executor then
signs everything with its own fresh key. A stale registration under the same
name (an executor that crashed without deregistering) is replaced, because
its key died with it and nobody can use it any more.
"""

from __future__ import annotations

import logging
import socket
from typing import Optional

from pollinator.colonies import crypto
from pollinator.colonies.client import ColoniesClient
from pollinator.colonies.models import Executor
from pollinator.errors import AccessDenied, ColoniesError, ConfigError, Unreachable

log = logging.getLogger(__name__)


def default_executor_name() -> str:
    return f"pollinator-local.{socket.gethostname() or 'localhost'}"


def register_executor(colony_client: ColoniesClient, *, name: str, executor_type: str,
                      executor_prvkey: Optional[str] = None) -> str:
    """Register and approve an executor; returns its private key (generated when not given).

    ``colony_client`` must sign with the colony owner's key.
    """
    prvkey = executor_prvkey or crypto.generate_private_key()
    executor = Executor(executorid=crypto.id_from_private_key(prvkey), executortype=executor_type,
                        executorname=name, colonyname=colony_client.colony_name)
    try:
        colony_client.add_executor(executor)
    except AccessDenied as exc:
        raise ConfigError(f"the server refused to add executor {name!r}: {exc}. The executor must be "
                          "registered with the colony owner's key (COLONIES_COLONY_PRVKEY)") from exc
    except Unreachable:
        raise
    except ColoniesError as first:
        # Most likely a leftover registration with this name: replace it.
        log.warning("executor name %r is taken (%s); replacing the old registration", name, first)
        try:
            colony_client.remove_executor(name)
            colony_client.add_executor(executor)
        except ColoniesError as exc:
            raise ConfigError(f"could not register executor {name!r}: {exc}; choose another --name") from exc
    colony_client.approve_executor(name)
    log.info("registered executor %s (type %s) in colony %s", name, executor_type, colony_client.colony_name)
    return prvkey


def deregister_executor(colony_client: ColoniesClient, name: str) -> None:
    """Best effort: a self-registered executor's key dies with it, so its entry should too."""
    try:
        colony_client.remove_executor(name)
        log.info("deregistered executor %s", name)
    except ColoniesError as exc:
        log.warning("could not deregister executor %s: %s", name, exc)
