"""Who may do what: the Go server's validator rules, with its exact messages.

Membership = an executor of the colony (APPROVED when ``approved``) or a user
of the colony. The colony owner key is *not* a member (it only administers),
exactly as in ``pkg/security/validator``.
"""

from __future__ import annotations

from pollinator.dev.store import APPROVED, Store
from pollinator.dev.wire import RPCError


def _not_member(colony_name: str) -> RPCError:
    return RPCError(403, f"Access denied, not a member of Colony with name <{colony_name}>")


def require_server_owner(recovered_id: str, server_id: str) -> None:
    if recovered_id != server_id:
        raise RPCError(403, "Access denied, not server owner")


def require_colony_owner(store: Store, recovered_id: str, colony_name: str) -> None:
    if colony_name == "":
        raise RPCError(403, "Empty Colony name")
    colony = store.colony_by_name(colony_name)
    if colony is None:
        raise RPCError(403, f"Colony with name <{colony_name}> does not exists")
    if recovered_id != colony["colonyid"]:
        raise RPCError(403, "Access denied, not colony owner")


def is_member(store: Store, recovered_id: str, colony_name: str, approved: bool = True) -> bool:
    try:
        require_membership(store, recovered_id, colony_name, approved)
    except RPCError:
        return False
    return True


def require_membership(store: Store, recovered_id: str, colony_name: str, approved: bool = True) -> None:
    colony = store.colony_by_name(colony_name)
    if colony is not None:
        executor = store.executor_by_id(recovered_id)
        if executor is not None and executor["colony"] == colony["name"]:
            if not approved or executor["state"] == APPROVED:
                return
    # The executor check failed: the Go validator falls back to the user check and reports its error.
    if colony is None:
        raise RPCError(403, f"Colony with name <{colony_name}> does not exists")
    if store.user_by_id(colony["name"], recovered_id) is None:
        raise _not_member(colony["name"])
