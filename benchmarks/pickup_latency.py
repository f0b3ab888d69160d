"""Pick-up latency of name-targeted processes with several executors of one type waiting.

A real Colonies server wakes ONE waiting assign long-poll per submit, chosen by
executor type, not by the name a spec targets (FACTS "Added 2026-11-30"). The
local server does the same by default, so this measures what a real colony
gives: ``--executors`` local executors of one type wait (their default poll
pacing, or ``--poll-timeout``/``--lanes``), and each job names one of them at
random, submitted at a random moment. Latency = the server's start time minus
its submission time. Also prints the request cost: assign requests per second
per idle executor, counted while nothing is queued.

``--baseline`` also runs the old executor (one 10 s long-poll) the same way.

    .venv/bin/python benchmarks/pickup_latency.py [--jobs 60] [--executors 4] [--baseline]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from pydantic import SecretStr

from pollinator.colonies import crypto
from pollinator.colonies.client import ColoniesClient
from pollinator.colonies.models import Colony, Conditions, FunctionSpec, User, parse_go_time
from pollinator.config import Settings
from pollinator.executor import LocalExecutor

# conditions the ColonyOS executors (and the local colony's strict executors) accept
EXECUTOR_READY = dict(nodes=1, processespernode=1, cpu="1000m", mem="1000Mi", walltime=61)

TARGET_P99_S = 1.0
EXECUTOR_TYPE = "bench-pickup"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, server_id: str, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "POLLINATOR_DEV_WAKE_ALL"}  # real-server wake-ups
    proc = subprocess.Popen([sys.executable, "-m", "pollinator.dev.server", "--host", "127.0.0.1", "--port",
                             str(port), "--data-dir", str(data_dir), "--server-id", server_id], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # quiet: stopped long-polls
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("server did not start")


def measure(settings: Settings, colony_key: str, root: Path, args: argparse.Namespace, poll_timeout: int,
            lanes: int, label: str) -> None:
    executors = [LocalExecutor(settings, name=f"{label}-{i}", executor_type=EXECUTOR_TYPE, fs_dir=root / f"{label}{i}",
                               max_jobs=2, register_with_colony_prvkey=colony_key, poll_timeout=poll_timeout,
                               poll_lanes=lanes) for i in range(args.executors)]
    threads = [threading.Thread(target=ex.run_forever, daemon=True) for ex in executors]
    for thread in threads:
        thread.start()
    rng = random.Random(args.seed)
    latencies: list[float] = []
    try:
        time.sleep(max(2.0, poll_timeout))  # every executor is polling
        # request cost while idle
        before = sum(ex.pacer.polls for ex in executors)
        time.sleep(args.idle)
        idle_rate = (sum(ex.pacer.polls for ex in executors) - before) / args.idle / len(executors)
        with settings.client() as user:
            for _ in range(args.jobs):
                time.sleep(rng.uniform(0, args.spread))  # a random moment in the executors' poll cycles
                target = rng.choice(executors)
                spec = FunctionSpec(funcname="execute", kwargs={"cmd": "true", "args": [], "docker-image": ""},
                                    maxwaittime=-1, maxexectime=60, maxretries=1,  # what strict executors accept
                                    conditions=Conditions(colonyname="dev", executortype=EXECUTOR_TYPE,
                                                          executornames=[target.name], **EXECUTOR_READY))
                pid = user.submit(spec).processid
                while not (p := user.get_process(pid)).is_final:
                    time.sleep(0.02)
                if p.assignedexecutorid != target.executor_id:
                    raise SystemExit(f"process {pid} ran on the wrong executor")
                start, submitted = parse_go_time(p.starttime), parse_go_time(p.submissiontime)
                assert start is not None and submitted is not None
                latencies.append((start - submitted).total_seconds())
    finally:
        for ex in executors:
            ex.stop()
        for thread in threads:
            thread.join(30)
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    verdict = "OK" if p99 <= TARGET_P99_S else "MISSED"
    print(f"{label:9} long-polls {lanes} x {poll_timeout} s: p50 {p50 * 1000:.0f} ms  p99 {p99 * 1000:.0f} ms  "
          f"max {latencies[-1] * 1000:.0f} ms  (n={len(latencies)}; target p99 <= {TARGET_P99_S:.0f} s) "
          f"{verdict if label == 'paced' else ''}")
    print(f"{'':9} request cost: {idle_rate:.2f} assign requests/s per idle executor")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--executors", type=int, default=4)
    parser.add_argument("--poll-timeout", type=int, default=1, help="the executors' long-poll (s)")
    parser.add_argument("--lanes", type=int, default=2, help="overlapping long-polls per executor")
    parser.add_argument("--spread", type=float, default=1.0, help="random pause before each submit (s, max)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle polling to count requests")
    parser.add_argument("--baseline", action="store_true", help="also run one 10 s long-poll per executor")
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()
    keys = {k: crypto.generate_private_key() for k in ("server", "colony", "user")}
    port = free_port()
    print(f"machine: nproc={os.cpu_count()} python={platform.python_version()} ({platform.platform()})")
    print(f"{args.executors} local executors of one type waiting; each job names one of them; the server wakes "
          f"one waiter per submit by type (as the real one)")
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(Path(tmp) / "server", crypto.id_from_private_key(keys["server"]), port)
        try:
            with ColoniesClient("127.0.0.1", port, keys["server"], "dev") as server:
                server.add_colony(Colony(colonyid=crypto.id_from_private_key(keys["colony"]), name="dev"))
                server.with_key(keys["colony"]).add_user(
                    User(colonyname="dev", userid=crypto.id_from_private_key(keys["user"]), name="bench"))
            settings = Settings(host="127.0.0.1", port=port, colony_name="dev", prvkey=SecretStr(keys["user"]))
            measure(settings, keys["colony"], Path(tmp), args, args.poll_timeout, args.lanes, "paced")
            if args.baseline:
                measure(settings, keys["colony"], Path(tmp), args, 10, 1, "baseline")
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
