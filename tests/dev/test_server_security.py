"""Who may do what on the local server (rules and texts of pkg/security/validator)."""

from __future__ import annotations

import pytest

from pollinator.colonies import crypto
from pollinator.colonies.models import Colony, Conditions, Executor, FunctionSpec, User
from pollinator.errors import AccessDenied
from server_harness import Colony_, start_colony

NOT_MEMBER = "Access denied, not a member of Colony with name <dev>"


@pytest.fixture(scope="module")
def colony(tmp_path_factory) -> Colony_:
    c = start_colony(tmp_path_factory.mktemp("sec"))
    yield c
    c.server.stop()


def _spec(**kw) -> FunctionSpec:
    return FunctionSpec(funcname="f", maxexectime=60, maxwaittime=-1,
                        conditions=Conditions(colonyname="dev", executortype="capture-executor"), **kw)


def test_only_server_owner_adds_colonies(colony: Colony_) -> None:
    status, reply = colony.raw({"msgtype": "addcolonymsg", "colony": {"colonyid": "a" * 64, "name": "x"}},
                               colony.colony_key)
    assert (status, reply["message"]) == (403, "Access denied, not server owner")
    status, reply = colony.raw({"msgtype": "addcolonymsg", "colony": {"colonyid": "a" * 64, "name": "dev"}},
                               colony.server_key)
    assert (status, reply["message"]) == (400, "A Colony with name <dev> already exists")


def test_colony_owner_is_not_a_member(colony: Colony_) -> None:
    status, reply = colony.raw({"msgtype": "getcolonymsg", "colonyname": "dev"}, colony.colony_key)
    assert (status, reply["message"]) == (403, NOT_MEMBER)


def test_only_colony_owner_registers_executors_and_users(colony: Colony_) -> None:
    ex = Executor(executorid="b" * 64, executortype="t", executorname="n", colonyname="dev").to_wire()
    status, reply = colony.raw({"msgtype": "addexecutormsg", "executor": ex}, colony.user_key)
    assert (status, reply["message"]) == (403, "Access denied, not colony owner")
    user = User(colonyname="dev", userid="c" * 64, name="mallory").to_wire()
    status, reply = colony.raw({"msgtype": "addusermsg", "user": user}, colony.executor_key)
    assert (status, reply["message"]) == (403, "Access denied, not colony owner")


def test_unknown_key_and_garbage_signature(colony: Colony_) -> None:
    stranger = crypto.generate_private_key()
    for msg in ({"msgtype": "getcolonymsg", "colonyname": "dev"},
                {"msgtype": "assignprocessmsg", "colonyname": "dev", "timeout": 1}):
        assert colony.raw(msg, stranger) == (403, {"status": 403, "message": NOT_MEMBER})
    status, reply = colony.raw({"msgtype": "getcolonymsg", "colonyname": "dev"}, colony.user_key,
                               signature="00" * 65)
    assert (status, reply["message"]) == (403, "Failed to recover public key: invalid signature: R is 0")
    status, reply = colony.raw({"msgtype": "getcolonymsg", "colonyname": "dev"}, colony.user_key, signature="zz")
    assert status == 403
    # A valid signature over a *different* payload recovers some other id: not a member.
    other = colony.raw({"msgtype": "getcolonymsg", "colonyname": "dev"}, colony.user_key,
                       signature=crypto.sign("something else", colony.user_key))
    assert other == (403, {"status": 403, "message": NOT_MEMBER})


def test_unknown_msgtype_and_payloadtype_mismatch(colony: Colony_) -> None:
    assert colony.raw({"msgtype": "nosuchmsg"}, colony.user_key) == (
        403, {"status": 403, "message": "invalid rpcMsg.PayloadType: nosuchmsg"})
    status, reply = colony.raw({"msgtype": "getcolonymsg", "colonyname": "dev"}, colony.user_key,
                               payloadtype="getprocessmsg")
    assert (status, reply["message"]) == (400, "Failed to get process, msg.MsgType does not match payloadType")


def test_unapproved_rejected_and_removed_executors_are_refused(colony: Colony_) -> None:
    owner = colony.client(colony.colony_key)
    key = crypto.generate_private_key()
    owner.add_executor(Executor(executorid=crypto.id_from_private_key(key), executortype="capture-executor",
                                executorname="late", colonyname="dev"))
    me = colony.client(key)
    with pytest.raises(AccessDenied, match="not a member"):
        me.assign(timeout=-1)
    owner.approve_executor("late")
    with pytest.raises(Exception, match="No process available"):
        me.assign(timeout=-1)
    owner.reject_executor("late")
    with pytest.raises(AccessDenied):
        me.get_colony()
    owner.approve_executor("late")
    owner.remove_executor("late")
    with pytest.raises(AccessDenied):
        me.assign(timeout=-1)
    assert owner.with_key(colony.user_key).get_executor("late").state == 3  # UNREGISTERED, kept for traceability


def test_reregistering_a_name_replaces_its_id(colony: Colony_) -> None:
    owner = colony.client(colony.colony_key)
    old_key, new_key = crypto.generate_private_key(), crypto.generate_private_key()
    for key in (old_key, new_key):
        added = owner.add_executor(Executor(executorid=crypto.id_from_private_key(key),
                                            executortype="capture-executor", executorname="probe-1",
                                            colonyname="dev"))
        assert added.state == 0
        owner.approve_executor("probe-1")
    assert colony.raw({"msgtype": "assignprocessmsg", "colonyname": "dev", "timeout": -1}, old_key) == (
        403, {"status": 403, "message": NOT_MEMBER})
    got = owner.with_key(colony.user_key).get_executor("probe-1")
    assert got.executorid == crypto.id_from_private_key(new_key)


def test_only_the_assigned_executor_logs_and_closes(colony: Colony_) -> None:
    user, executor = colony.client(colony.user_key), colony.client(colony.executor_key)
    process = user.submit(_spec())
    assigned = executor.assign(timeout=1)
    assert assigned.processid == process.processid
    status, reply = colony.raw({"msgtype": "addlogmsg", "processid": process.processid, "message": "x"},
                               colony.user_key)
    assert (status, reply["message"]) == (
        403, "Failed to add log, not allowed to add log, only the assigned Executor may att logs")
    for msgtype, how in (("closesuccessfulmsg", "successful"), ("closefailedmsg", "failed")):
        status, reply = colony.raw({"msgtype": msgtype, "processid": process.processid, "out": [], "errors": []},
                                   colony.user_key)
        assert (status, reply["message"]) == (403, f"Failed to close process as {how}, not allowed to close "
                                                   f"process as {how}")
    executor.close_successful(process.processid, ["ok"])
    status, reply = colony.raw({"msgtype": "closefailedmsg", "processid": process.processid, "errors": ["late"]},
                               colony.executor_key)
    assert (status, reply["message"]) == (400, "Tried to set successful process as failed")
    assert user.get_process(process.processid).errors == []


def test_logs_count_limit_and_null_payload(colony: Colony_) -> None:
    user, executor = colony.client(colony.user_key), colony.client(colony.executor_key)
    process = user.submit(_spec())
    executor.assign(timeout=1)
    status, reply = colony.raw({"msgtype": "getlogsmsg", "colonyname": "dev", "processid": process.processid,
                                "count": 501, "since": 0}, colony.user_key)
    assert (status, reply["message"]) == (403, "Count exceeds max log count (500)")
    assert colony.raw({"msgtype": "getlogsmsg", "colonyname": "dev", "processid": process.processid, "count": 10,
                       "since": 0}, colony.user_key) == (200, None)
    executor.close_successful(process.processid)
