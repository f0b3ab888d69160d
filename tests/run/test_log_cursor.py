"""The log cursor: overlapping batches give each line once, and a cursor handed over resumes after it."""

from pollinator.colonies.models import Log
from pollinator.run.follow import LogCursor


def _log(ts: int, msg: str) -> Log:
    return Log(processid="p", colonyname="c", executorname="e", message=msg, timestamp=ts)


def test_overlapping_batches_deliver_each_line_once():
    cursor = LogCursor()
    assert [x.message for x in cursor.accept([_log(1, "a"), _log(2, "b")])] == ["a", "b"]
    assert cursor.query_since() == 1  # asks again from T-1: a late line stamped T is not lost
    assert [x.message for x in cursor.accept([_log(2, "b"), _log(2, "b2"), _log(3, "c")])] == ["b2", "c"]


def test_a_handed_over_cursor_skips_the_lines_at_its_timestamp():
    """A trigger rebuilt with since=T must not log the line at T again."""
    cursor = LogCursor(since=2)
    fresh = cursor.accept([_log(1, "a"), _log(2, "b"), _log(3, "c")])
    assert [x.message for x in fresh] == ["c"]
    # once past the hand-over, ties at the new timestamp are told apart by content again
    assert [x.message for x in cursor.accept([_log(3, "c"), _log(3, "c2")])] == ["c2"]


def test_pending_is_zero_right_after_each_batch_s_last_line():
    """The Airflow trigger writes its cursor durably once per batch: when ``pending`` reaches 0."""
    import asyncio

    from pollinator.colonies.models import Process, ProcessState
    from pollinator.run.follow import AsyncLogFollower

    class Client:  # two polls' batches, then the process is final and the log drained
        def __init__(self):
            self.batches = [[_log(1, "a"), _log(2, "b")], [_log(3, "c")], [], []]

        async def get_logs(self, process_id, since, count):
            return self.batches.pop(0) if self.batches else []

        async def get_process(self, process_id):
            return Process(processid="p", state=int(ProcessState.SUCCESS))

    async def run():
        follower = AsyncLogFollower(Client(), "p", min_interval=0, max_interval=0)
        return [(line.message, follower.pending) async for line in follower]

    assert asyncio.run(run()) == [("a", 1), ("b", 0), ("c", 0)]
