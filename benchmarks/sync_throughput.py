"""CFS sync throughput against raw boto3, measured in the same run on the same servers.

Starts a moto S3 server and the Pollinator dev Colonies server on loopback
(subprocesses, real HTTP), then measures three scenarios and prints each next
to its baseline:

1. first sync of N_SMALL x 1 KiB + one BIG file, vs raw boto3 uploading the
   same bytes (put_object for the small files, the transfer manager for the big
   one, same concurrency and client config)             target <= 1.3x raw
2. no-change re-sync of N_MANY files + one HUGE file (fresh CFS instance, so
   only the on-disk stat cache helps), next to a bare walk+stat of the tree
   and to the same re-sync without the cache           target <= 0.3 s
3. one HUGE file: sync (upload) and pull (download) vs the raw boto3
   transfer manager upload_file / download_file     target >= 0.85x raw

Defaults are the issue's sizes; use the flags for a quick run, e.g.
``python benchmarks/sync_throughput.py --small 200 --big-mb 20 --many 1000 --huge-mb 100``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from pydantic import SecretStr

from pollinator.cfs import CFS
from pollinator.cfs.hashing import StatCache
from pollinator.cfs.s3 import S3Store
from pollinator.colonies import crypto
from pollinator.colonies.client import ColoniesClient
from pollinator.colonies.models import Colony, User
from pollinator.config import S3Settings

KiB, MiB = 1024, 1024 * 1024


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start")


class Rig:
    """moto S3 + the dev Colonies server, a colony and a user."""

    def __init__(self, work: Path):
        self.procs: list[subprocess.Popen] = []
        s3_port, colonies_port = free_port(), free_port()
        logs = open(work / "servers.log", "wb")
        self.procs.append(subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                            str(s3_port)], stdout=logs, stderr=subprocess.STDOUT))
        wait_http(f"http://127.0.0.1:{s3_port}/", self.procs[-1], "moto")
        server_key, colony_key, self.user_key = (crypto.generate_private_key() for _ in range(3))
        (work / "colony").mkdir()
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "pollinator.dev.server", "--host", "127.0.0.1", "--port", str(colonies_port),
             "--data-dir", str(work / "colony"), "--server-id", crypto.id_from_private_key(server_key)],
            stdout=logs, stderr=subprocess.STDOUT))
        wait_http(f"http://127.0.0.1:{colonies_port}/health", self.procs[-1], "the dev Colonies server")
        self.port = colonies_port
        with ColoniesClient("127.0.0.1", colonies_port, server_key, "dev") as server:
            server.add_colony(Colony(colonyid=crypto.id_from_private_key(colony_key), name="dev"))
            with server.with_key(colony_key) as owner:
                owner.add_user(User(colonyname="dev", userid=crypto.id_from_private_key(self.user_key), name="bench"))
        self.s3 = S3Settings(endpoint=f"127.0.0.1:{s3_port}", access_key=SecretStr("bench"),
                             secret_key=SecretStr("bench-secret"), bucket="bench")
        S3Store(self.s3).ensure_bucket()

    def client(self) -> ColoniesClient:
        return ColoniesClient("127.0.0.1", self.port, self.user_key, "dev")

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def make_files(root: Path, n: int, size: int, big: int, big_name: str = "big.bin") -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    if big:
        p = root / big_name
        chunk = os.urandom(MiB)
        with open(p, "wb") as f:
            left = big
            while left > 0:
                f.write(chunk[: min(left, MiB)] if left < MiB else chunk)
                left -= MiB
            # unique content per run: overwrite the first bytes
            f.seek(0)
            f.write(os.urandom(64))
        paths.append(p)
    sub = root / "small"
    sub.mkdir(exist_ok=True)
    for i in range(n):
        p = sub / f"f{i:05d}.bin"
        p.write_bytes(os.urandom(size))
        paths.append(p)
    old = time.time_ns() - 60 * 10**9
    for p in paths:  # as if written a minute ago (outside the stat cache's racy window)
        os.utime(p, ns=(old, old))
    return paths


def raw_upload(store: S3Store, paths: list[Path], workers: int) -> float:
    def one(p: Path) -> None:
        key = uuid.uuid4().hex
        size = p.stat().st_size
        if size < store.multipart_threshold:
            store.client.put_object(Bucket=store.bucket, Key=key, Body=p.read_bytes())
        else:
            store.client.upload_file(str(p), store.bucket, key, Config=store.transfer_config)

    t = time.perf_counter()
    paths = sorted(paths, key=lambda p: -p.stat().st_size)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, paths))
    return time.perf_counter() - t


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def line(name: str, ours: float, base: float, base_name: str, target: str, ok: bool) -> None:
    print(f"{name:<44} ours {ours:8.3f} s | {base_name} {base:8.3f} s | ratio {ours / base:5.2f} | "
          f"target {target}: {'PASS' if ok else 'FAIL'}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=1000, help="scenario 1: number of 1 KiB files")
    ap.add_argument("--big-mb", type=int, default=200, help="scenario 1: the big file, MB (10^6 bytes)")
    ap.add_argument("--many", type=int, default=10_000, help="scenario 2: number of 1 KiB files")
    ap.add_argument("--huge-mb", type=int, default=1024, help="scenarios 2 and 3: the huge file, MiB")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2,
                    help="alternate ours/baseline this many times and keep the best of each (shared machines are "
                         "noisy)")
    ap.add_argument("--only", choices=["1", "2", "3"], action="append", help="run only these scenarios")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    only = set(args.only or ["1", "2", "3"])

    work = Path(tempfile.mkdtemp(prefix="cfs-bench-"))
    os.environ["POLLINATOR_CACHE_DIR"] = str(work / "cache")
    rig = Rig(work)
    store = S3Store(rig.s3, workers=args.workers)
    print(f"cfs sync benchmark: {os.cpu_count()} CPUs, workers={args.workers}, moto + dev server on loopback")
    try:
        if "1" in only:
            d = work / "s1"
            paths = make_files(d, args.small, KiB, args.big_mb * 1000 * 1000)
            base = ours = float("inf")
            for i in range(args.repeat):
                base = min(base, raw_upload(store, paths, args.workers))
                with rig.client() as c:  # a fresh label each time: every file is uploaded and registered
                    ours = min(ours, timed(lambda: CFS(c, rig.s3, workers=args.workers).sync(d, f"/bench/s1-{i}",
                                                                                              True)))
            line(f"1. first sync {args.small} x 1 KiB + {args.big_mb} MB", ours, base, "raw boto3", "<= 1.3x",
                 ours <= 1.3 * base)

        if "2" in only or "3" in only:
            d = work / "s2"
            paths = make_files(d, args.many if "2" in only else 0, KiB, args.huge_mb * MiB, "huge.bin")
            huge = d / "huge.bin"
            huge_bytes = huge.stat().st_size
            if "3" in only:
                dl = work / "raw-download.bin"
                base_up = base_down = float("inf")
                for _ in range(args.repeat):
                    base_up = min(base_up, timed(lambda: store.client.upload_file(
                        str(huge), store.bucket, "raw-huge", Config=store.transfer_config)))
                    base_down = min(base_down, timed(lambda: store.client.download_file(
                        store.bucket, "raw-huge", str(dl), Config=store.transfer_config)))
                    dl.unlink()
            with rig.client() as c:
                first = timed(lambda: CFS(c, rig.s3, workers=args.workers).sync(d, "/bench/s2", True))
            if "3" in only:
                mb = huge_bytes / 1e6
                up_ours = first if "2" not in only else None
                label = "/bench/s2"
                if up_ours is None or args.repeat > 1:  # time the huge file alone, on fresh labels
                    single = work / "s3"
                    single.mkdir()
                    os.link(huge, single / "huge.bin")
                    up_ours = up_ours or float("inf")
                    for i in range(args.repeat):
                        StatCache(single).path.unlink(missing_ok=True)  # hashed again, like a first sync
                        with rig.client() as c:
                            up_ours = min(up_ours, timed(lambda: CFS(c, rig.s3, workers=args.workers).sync(
                                single, f"/bench/s3-{i}", True)))
                    label = "/bench/s3-0"
                print(f"{'3. ' + str(args.huge_mb) + ' MiB upload (sync)':<44} ours {mb / up_ours:8.1f} MB/s | "
                      f"raw upload_file {mb / base_up:8.1f} MB/s | ratio {base_up / up_ours:5.2f} | target >= 0.85x: "
                      f"{'PASS' if base_up / up_ours >= 0.85 else 'FAIL'}", flush=True)
                out = work / "pulled"
                down_ours = float("inf")
                for _ in range(args.repeat):
                    with rig.client() as c:
                        cfs = CFS(c, rig.s3, workers=args.workers)
                        plan = cfs.plan_pull(label, out)
                        plan.labels = [lp for lp in plan.labels if lp.rel_dir == ""]
                        down_ours = min(down_ours, timed(lambda: cfs.apply(plan)))
                    shutil.rmtree(out)
                print(f"{'3. ' + str(args.huge_mb) + ' MiB download (pull)':<44} ours {mb / down_ours:8.1f} MB/s | "
                      f"raw download_file {mb / base_down:8.1f} MB/s | ratio {base_down / down_ours:5.2f} | target "
                      f">= 0.85x: {'PASS' if base_down / down_ours >= 0.85 else 'FAIL'}", flush=True)
            if "2" in only:
                def walk() -> None:
                    for dirpath, _, names in os.walk(d):
                        for n in names:
                            os.stat(os.path.join(dirpath, n))

                floor = timed(walk)
                resync, hashed = float("inf"), 0
                for _ in range(max(3, args.repeat)):
                    with rig.client() as c:  # a fresh instance (and client) each time: only the disk cache helps
                        cfs = CFS(c, rig.s3, workers=args.workers)
                        resync = min(resync, timed(lambda: cfs.sync(d, "/bench/s2", True)))
                        hashed = max(hashed, cfs._cache(d).hashed)
                StatCache(d).path.unlink()
                with rig.client() as c:
                    nocache = timed(lambda: CFS(c, rig.s3, workers=args.workers).plan(d, "/bench/s2", True))
                print(f"{f'2. no-change re-sync {args.many} files + {args.huge_mb} MiB':<44} ours {resync:8.3f} s | "
                      f"walk+stat {floor:8.3f} s | without cache {nocache:8.3f} s | files hashed {hashed} | "
                      f"target <= 0.3 s: {'PASS' if resync <= 0.3 else 'FAIL'}", flush=True)
    finally:
        rig.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}")


if __name__ == "__main__":
    main()
