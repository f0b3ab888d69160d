"""A stand-in executor for benchmarks: takes processes and plays them back without running anything.

Each assigned process gets ``--lines`` log lines spread over ``--seconds`` and is then closed
successful: the server traffic of a real executor (assign, addlog, close, signed with its own
registered key) without a subprocess, a log-shipper thread, a ColonyFS sync or a cancel watcher per
job. With it, N = 1,000 concurrent processes measure the followers (and the server), not 1,000 shell
loops competing for a small machine's cores.

    python benchmarks/light_executor.py --count 1000 --seconds 30 --lines 6   # env: `pollinator dev env`
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from pollinator.config import Settings
from pollinator.errors import ColoniesError, NotFound
from pollinator.executor.registration import deregister_executor, register_executor

NAME = "bench-light"


async def play(client, process_id: str, seconds: float, lines: int) -> None:
    for i in range(lines):
        await asyncio.sleep(seconds / lines)
        await client.add_log(process_id, f"line {i + 1} of {lines}\n")
    await client.close_successful(process_id)


async def serve(settings: Settings, prvkey: str, count: int, seconds: float, lines: int, idle_timeout: float) -> int:
    client = settings.async_client().with_key(prvkey)
    jobs: list[asyncio.Task] = []
    last = time.monotonic()
    async with client:
        while len(jobs) < count and time.monotonic() - last < idle_timeout:
            try:
                process = await client.assign(timeout=2)
            except NotFound:
                continue
            last = time.monotonic()
            jobs.append(asyncio.create_task(play(client, process.processid, seconds, lines)))
        results = await asyncio.gather(*jobs, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    for exc in failed[:3]:
        print(f"light executor: a job failed: {exc!r}", file=sys.stderr)
    return len(jobs) - len(failed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, required=True, help="processes to take, then exit")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each process 'runs'")
    parser.add_argument("--lines", type=int, default=4, help="log lines per process")
    parser.add_argument("--name", default=NAME)
    parser.add_argument("--type", default="container-executor")
    parser.add_argument("--idle-timeout", type=float, default=60.0, help="give up when nothing comes this long")
    args = parser.parse_args()
    settings = Settings.from_env()
    colony_key = os.environ["COLONIES_COLONY_PRVKEY"]
    with settings.client().with_key(colony_key) as colony_client:
        prvkey = register_executor(colony_client, name=args.name, executor_type=args.type)
        print("ready", flush=True)  # the parent submits once the executor is registered
        try:
            done = asyncio.run(serve(settings, prvkey, args.count, args.seconds, max(1, args.lines),
                                     args.idle_timeout))
        finally:
            try:
                deregister_executor(colony_client, args.name)
            except ColoniesError:
                pass
    print(f"light executor: {done} of {args.count} processes played", file=sys.stderr)
    return 0 if done == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
