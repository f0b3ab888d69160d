"""Latency of one job cycle on the local colony server.

Starts ``python -m pollinator.dev.server`` on a free loopback port, sets up a
colony with an approved executor, then repeats: user submits -> executor
(already long-polling) is assigned -> executor closes -> user sees SUCCESS.
Prints median/p95 latency and cycles/s next to the targets.

    .venv/bin/python benchmarks/local_colony_latency.py [--cycles 300]
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from pollinator.colonies import crypto
from pollinator.colonies.client import ColoniesClient
from pollinator.colonies.models import Colony, Conditions, Executor, FunctionSpec, User

TARGET_MEDIAN_MS = 60.0
REAL_SERVER_MS = "53-59 ms"
TARGET_RATE = 100.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, server_id: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "pollinator.dev.server", "--host", "127.0.0.1", "--port",
                             str(port), "--data-dir", str(data_dir), "--server-id", server_id])
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("server did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8, help="clients in flight for the throughput phase")
    args = parser.parse_args()
    keys = {k: crypto.generate_private_key() for k in ("server", "colony", "user", "executor")}
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(Path(tmp), crypto.id_from_private_key(keys["server"]), port)
        try:
            run(port, keys, args.cycles, args.concurrency)
        finally:
            proc.terminate()
            proc.wait(10)


def run(port: int, keys: dict[str, str], cycles: int, concurrency: int) -> None:
    def client(key: str) -> ColoniesClient:
        return ColoniesClient("127.0.0.1", port, keys[key], "dev", retries=0)

    client("server").add_colony(Colony(colonyid=crypto.id_from_private_key(keys["colony"]), name="dev"))
    owner = client("colony")
    owner.add_user(User(colonyname="dev", userid=crypto.id_from_private_key(keys["user"]), name="bench"))
    owner.add_executor(Executor(executorid=crypto.id_from_private_key(keys["executor"]), executortype="bench",
                                executorname="bench-1", colonyname="dev"))
    owner.approve_executor("bench-1")
    user, executor = client("user"), client("executor")
    spec = FunctionSpec(funcname="noop", maxexectime=60, maxwaittime=-1,
                        conditions=Conditions(colonyname="dev", executortype="bench"))
    stop = threading.Event()
    done: queue.Queue[str] = queue.Queue()

    def executor_loop() -> None:  # a real executor: long-poll, close at once
        while not stop.is_set():
            try:
                process = executor.assign(timeout=1)
            except Exception:
                continue
            executor.close_successful(process.processid, ["ok"])
            done.put(process.processid)

    workers = [threading.Thread(target=executor_loop, daemon=True) for _ in range(2)]
    for worker in workers:
        worker.start()

    def one_cycle(poll_s: float = 0.002) -> float:
        t0 = time.perf_counter()
        process = user.submit(spec)
        while user.get_process(process.processid).state != 2:  # the client polls like `pollinator run` would
            time.sleep(poll_s)
        return (time.perf_counter() - t0) * 1000

    # Phase 1, latency: one job at a time.
    latencies = sorted(one_cycle() for _ in range(cycles))
    # Phase 2, throughput: `concurrency` clients submitting and waiting in parallel.
    per_client = max(1, cycles // concurrency)
    t_start = time.perf_counter()
    clients = [threading.Thread(target=lambda: [one_cycle(0.02) for _ in range(per_client)]) for _ in range(concurrency)]
    for t in clients:
        t.start()
    for t in clients:
        t.join()
    rate = per_client * concurrency / (time.perf_counter() - t_start)
    sequential_rate = 1000 / statistics.mean(latencies)
    stop.set()
    for worker in workers:
        worker.join(3)
    median = statistics.median(latencies)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(f"machine: nproc={os.cpu_count()} python={platform.python_version()} ({platform.platform()})")
    print(f"cycles: {cycles} sequential submit -> assign -> close -> client sees SUCCESS")
    print(f"median: {median:.1f} ms   (target <= {TARGET_MEDIAN_MS:.0f} ms; real Go server {REAL_SERVER_MS})"
          f"  {'OK' if median <= TARGET_MEDIAN_MS else 'MISSED'}")
    print(f"p95:    {p95:.1f} ms")
    print(f"rate:   {rate:.0f} cycles/s with {concurrency} clients in flight (target >= {TARGET_RATE:.0f}/s)  "
          f"{'OK' if rate >= TARGET_RATE else 'MISSED'};  one at a time: {sequential_rate:.0f}/s")


if __name__ == "__main__":
    main()
