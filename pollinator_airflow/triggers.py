"""``PollinatorTrigger``: follow one remote process from the triggerer, free of any worker slot.

It streams the process's log lines into the triggerer log as they arrive
(``pollinator.run.afollow_logs``) and yields exactly one ``TriggerEvent`` when
the process is final (or when following it failed). The worker side
(``execute_complete``) then fetches the results.

Thousands of these run in one triggerer event loop, so they share one
``AsyncColoniesClient`` (one HTTP connection pool) per colony identity and
loop instead of opening one each.

Cancellation: Airflow 3.3 calls ``on_kill()`` only when a user clears, marks
failed or marks succeeded the deferred task, and not when the triggerer
restarts or hands the trigger to another triggerer. So ``on_kill`` cancels the
remote process and ``cleanup`` never does. Older Airflow versions never call
``on_kill`` on triggers: there, clearing a deferred task leaves the remote
process running (documented in docs/airflow.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import TYPE_CHECKING, Any, AsyncIterator, Optional

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from pollinator.config import Settings

FINAL_STATES = ("SUCCESS", "FAILED", "CANCELLED")


class _SharedClients:
    """Reference-counted async clients, one per (event loop, colony identity)."""

    def __init__(self) -> None:
        self._clients: dict[tuple[int, str], list[Any]] = {}  # key -> [client, users]

    @staticmethod
    def _key(settings: "Settings") -> tuple[int, str]:
        secret = hashlib.sha256(settings.prvkey.get_secret_value().encode()).hexdigest()
        ident = f"{settings.host}:{settings.port}:{settings.tls}:{settings.skip_verify}:{settings.colony_name}:{secret}"
        return id(asyncio.get_running_loop()), ident

    def acquire(self, settings: "Settings") -> Any:
        key = self._key(settings)
        entry = self._clients.get(key)
        if entry is None:
            entry = self._clients[key] = [settings.async_client(), 0]
        entry[1] += 1
        return entry[0]

    async def release(self, settings: "Settings") -> None:
        key = self._key(settings)
        entry = self._clients.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self._clients[key]
            await entry[0].aclose()


shared_clients = _SharedClients()


def _follow(client: Any, process_id: str, since: int, poll_interval: float) -> Any:
    """``afollow_logs`` paced for a triggerer: many followers in one loop, quiet ones poll every poll_interval.

    Lines land in a task log, not a terminal: after a line the next poll comes within a second (not
    50 ms), so a thousand triggers cost the loop ~2 requests per process per poll_interval.
    """
    from pollinator.run import afollow_logs

    return afollow_logs(client, process_id, since=since, min_interval=min(1.0, poll_interval),
                        max_interval=poll_interval, state_check_every=max(1.0, poll_interval))


class PollinatorTrigger(BaseTrigger):
    """Wait for a ColonyOS process to become final, logging its output meanwhile.

    :param process_id: the process to follow.
    :param colonies_conn_id: the ``colonies`` connection to reach it through.
    :param poll_interval: seconds between polls while the process is quiet.
    :param since: log timestamp (ns) already shown, so a resumed trigger does not repeat lines.
    :param checkpoint_interval: seconds of log lines after which the trigger hands its cursor back (a
        ``progress`` event) so the task defers again with it; for Airflow without the triggerer's XCom API.

    The cursor is also kept as an XCom of the task instance (:mod:`pollinator_airflow.log_cursor`):
    a trigger rebuilt from the kwargs stored at deferral (a triggerer restart, another triggerer taking
    over) starts after the last batch of lines logged, not after ``since``.
    """

    def __init__(self, process_id: str, colonies_conn_id: str = "colonies_default", poll_interval: float = 2.0,
                 since: int = 0, checkpoint_interval: float = 0.0) -> None:
        super().__init__()
        self.process_id = process_id
        self.colonies_conn_id = colonies_conn_id
        self.poll_interval = float(poll_interval)
        self.since = int(since)
        self.checkpoint_interval = float(checkpoint_interval)
        self._settings: Optional["Settings"] = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("pollinator_airflow.triggers.PollinatorTrigger",
                {"process_id": self.process_id, "colonies_conn_id": self.colonies_conn_id,
                 "poll_interval": self.poll_interval, "since": self.since,
                 "checkpoint_interval": self.checkpoint_interval})

    async def _get_settings(self) -> "Settings":
        if self._settings is None:
            from pollinator_airflow.hooks import PollinatorHook

            self._settings = await PollinatorHook(self.colonies_conn_id).aget_settings()
        return self._settings

    async def run(self) -> AsyncIterator[TriggerEvent]:
        event: dict[str, Any] = {"process_id": self.process_id, "state": "", "errors": [], "message": "",
                                 "last_timestamp": self.since}
        try:
            settings = await self._get_settings()
        except Exception as exc:
            yield TriggerEvent({**event, "status": "error", "message": f"{type(exc).__name__}: {exc}"})
            return
        from pollinator.run.handle import emit

        from pollinator_airflow.log_cursor import LogCursorStore

        store = LogCursorStore(self.task_instance, self.process_id, self.log)
        self.since = max(self.since, await store.load())  # the kwargs hold the cursor at deferral only
        event["last_timestamp"] = self.since
        saved = self.since
        client = shared_clients.acquire(settings)
        started = time.monotonic()
        try:
            follower = _follow(client, self.process_id, self.since, self.poll_interval)
            async for line in follower:
                emit(self._log_line, line)  # one log record per remote line, as the sync mode logs them
                self.since = follower.last_timestamp  # serialize() and the event carry the cursor on
                if getattr(follower, "pending", 0) == 0 and self.since != saved:
                    # the batch is in the log: record how far, durably (shielded: a triggerer stopping now
                    # cancels us, and the write that is already under way should still land)
                    saved = self.since
                    await asyncio.shield(store.save(saved))
                if self.checkpoint_interval and time.monotonic() - started >= self.checkpoint_interval:
                    # Airflow rebuilds a trigger from the kwargs stored at deferral: hand the cursor back so
                    # the task defers again with it stored (bounds what a triggerer restart can repeat)
                    event.update(status="progress", last_timestamp=self.since)
                    break
            else:
                await self._final(client, follower, event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            event.update(status="error", message=f"{type(exc).__name__}: {exc}")
        finally:
            await shared_clients.release(settings)
        yield TriggerEvent(event)

    async def _final(self, client: Any, follower: Any, event: dict[str, Any]) -> None:
        """The process is final: its state and errors into the event."""
        from pollinator.colonies.models import ProcessState

        process = getattr(follower, "process", None) or await client.get_process(self.process_id)
        state = ProcessState(process.state).name if process is not None else ""
        event.update(state=state, errors=list(getattr(process, "errors", None) or []),
                     last_timestamp=follower.last_timestamp)
        event["status"] = state.lower() if state in FINAL_STATES else "error"
        if event["status"] == "error":
            event["message"] = f"log follower ended with process in state {state or 'unknown'}"

    def _log_line(self, text: str) -> None:
        self.log.info("%s", text)

    async def on_kill(self) -> None:
        """The user cleared / marked the deferred task: cancel the remote process (Airflow 3.3+)."""
        from pollinator.run import ProcessHandle

        settings = await self._get_settings()
        self.log.info("Cancelling ColonyOS process %s", self.process_id)

        def cancel() -> None:
            with ProcessHandle.attach(settings, self.process_id) as handle:
                handle.cancel()

        await asyncio.to_thread(cancel)
