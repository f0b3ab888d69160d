"""CFS sync against raw boto3 and the Go ``colonies`` CLI, measured in the same run on the same servers.

Starts moto's S3 server and the Pollinator dev Colonies server on loopback
(subprocesses, real HTTP: the same two servers ``pollinator dev`` runs) and
measures, for two sizes (default: 1,000 x 1 KiB + 200 MB, and 10,000 x 1 KiB
+ 1 GiB, the small files in a sub-directory):

* first sync (fresh label, stat cache removed, so every file is hashed and
  uploaded) - ``CFS.sync`` in this process, next to raw boto3 uploading the
  same bytes (put_object + the transfer manager, same concurrency) and next to
  ``colonies fs sync`` (the Go CLI, when a ``colonies`` binary is on PATH;
  skipped otherwise), with CPU seconds per 1,000 files (ours: this process's
  CPU during the sync; the Go CLI's: its child CPU from getrusage);
* no-change re-sync of the same tree and label (a fresh ``CFS`` each time, so
  only the on-disk stat cache helps; the Go CLI re-hashes everything);
* for the big file alone: upload throughput (sync of a directory holding only
  it) against boto3's ``upload_file`` and the Go CLI, and download (pull)
  against ``download_file``.

With each first sync the CPU the two servers spent on it is printed too: on
loopback the moto server (one Python process, each request on its own
connection and thread) is the bottleneck for small files, for both clients
alike, so the wall ratio cannot fall much below the ratio of the servers' CPU.

``pollinator sync`` as a whole process (Python start-up included) is printed
beside them for reference. Runs are alternated (ours, baselines, ours, ...)
and medians reported; the load average is printed with each size, as the
machine may be shared. Targets (issue 21): first sync <= 0.8x the Go CLI's
wall time and <= its CPU; no-change re-sync <= 0.5x the Go CLI's; big-file
upload >= the better of boto3 and the Go CLI.

Quick run: ``python benchmarks/sync_throughput.py --small 200 --big-mb 20 --many 1000 --huge-mb 100 --repeat 1``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import httpx
import psutil
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
    """moto S3 + the dev Colonies server on loopback, a colony and a user; ``env`` is what the CLIs read."""

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
        SERVERS[:] = [psutil.Process(p.pid) for p in self.procs]
        with ColoniesClient("127.0.0.1", colonies_port, server_key, "dev") as server:
            server.add_colony(Colony(colonyid=crypto.id_from_private_key(colony_key), name="dev"))
            with server.with_key(colony_key) as owner:
                owner.add_user(User(colonyname="dev", userid=crypto.id_from_private_key(self.user_key), name="bench"))
        self.s3 = S3Settings(endpoint=f"127.0.0.1:{s3_port}", access_key=SecretStr("bench"),
                             secret_key=SecretStr("bench-secret"), bucket="bench")
        S3Store(self.s3).ensure_bucket()
        # the variables `pollinator dev env` exports, which both CLIs read
        self.env = {**os.environ, "COLONIES_SERVER_HOST": "127.0.0.1", "COLONIES_SERVER_PORT": str(colonies_port),
                    "COLONIES_TLS": "false", "COLONIES_SERVER_TLS": "false", "COLONIES_INSECURE": "true",
                    "COLONIES_COLONY_NAME": "dev", "COLONIES_PRVKEY": self.user_key,
                    "AWS_S3_ENDPOINT": self.s3.endpoint, "AWS_S3_ACCESSKEY": "bench",
                    "AWS_S3_SECRETKEY": "bench-secret",
                    "AWS_S3_REGION_KEY": self.s3.region, "AWS_S3_BUCKET": "bench", "AWS_S3_TLS": "false",
                    "AWS_S3_SKIPVERIFY": "false"}

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
            f.seek(0)
            f.write(os.urandom(64))  # unique content per run
        paths.append(p)
    if n:
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


@dataclass
class Sample:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    servers: list[tuple[float, float]] = field(default_factory=list)  # (moto, Colonies) CPU seconds

    @property
    def w(self) -> float:
        return statistics.median(self.wall)

    @property
    def c(self) -> float:
        return statistics.median(self.cpu)

    def servers_text(self) -> str:
        if not self.servers:
            return ""
        moto = statistics.median(m for m, _ in self.servers)
        colonies = statistics.median(c for _, c in self.servers)
        return f"servers cpu: moto {moto:6.2f} s, Colonies {colonies:5.2f} s"


SERVERS: list[psutil.Process] = []  # moto, then the dev Colonies server (set by Rig)


def _servers_cpu() -> tuple[float, float]:
    if len(SERVERS) < 2:
        return (0.0, 0.0)
    moto, colonies = (p.cpu_times() for p in SERVERS[:2])
    return (moto.user + moto.system, colonies.user + colonies.system)


def _servers_delta(sample: Sample, before: tuple[float, float]) -> None:
    after = _servers_cpu()
    sample.servers.append((after[0] - before[0], after[1] - before[1]))


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def in_process(sample: Sample, fn: Callable[[], object]) -> None:
    """Wall and this process's CPU (all threads) around ``fn``."""
    c, t, srv = _self_cpu(), time.perf_counter(), _servers_cpu()
    fn()
    sample.wall.append(time.perf_counter() - t)
    sample.cpu.append(_self_cpu() - c)
    _servers_delta(sample, srv)


def child(sample: Sample, argv: list[str], env: dict[str, str]) -> None:
    """Wall and child CPU of a whole process (waited for, so getrusage(RUSAGE_CHILDREN) includes it)."""
    c, t, srv = _child_cpu(), time.perf_counter(), _servers_cpu()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=1800)
    sample.wall.append(time.perf_counter() - t)
    sample.cpu.append(_child_cpu() - c)
    _servers_delta(sample, srv)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")


def raw_upload(store: S3Store, paths: list[Path], workers: int) -> None:
    def one(p: Path) -> None:
        key = uuid.uuid4().hex
        if p.stat().st_size < store.multipart_threshold:
            store.client.put_object(Bucket=store.bucket, Key=key, Body=p.read_bytes())
        else:
            store.client.upload_file(str(p), store.bucket, key, Config=store.transfer_config)

    paths = sorted(paths, key=lambda p: -p.stat().st_size)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, paths))


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, rig: Rig, go: Optional[str]):
        self.args, self.work, self.rig, self.go = args, work, rig, go
        self.store = S3Store(rig.s3, workers=args.workers)
        self.cli_env = {**rig.env, "POLLINATOR_CACHE_DIR": os.environ["POLLINATOR_CACHE_DIR"]}
        self.failed: list[str] = []

    def ours(self, d: Path, label: str, *, fresh: bool) -> Callable[[], object]:
        if fresh:
            StatCache(d).path.unlink(missing_ok=True)  # hashed again, like a first sync

        def run() -> None:
            with self.rig.client() as c:
                CFS(c, self.rig.s3, workers=self.args.workers).sync(d, label, True)

        return run

    def go_argv(self, d: Path, label: str) -> list[str]:
        return [self.go or "colonies", "fs", "sync", "-l", label, "-d", str(d), "--yes", "--quite"]

    def cli_argv(self, d: Path, label: str) -> list[str]:
        return [sys.executable, "-m", "pollinator.cli", "sync", str(d), "--label", label]

    def check(self, name: str, ok: bool) -> str:
        if not ok:
            self.failed.append(name)
        return verdict(ok)

    def size(self, tag: str, n: int, big: int) -> None:
        args, pairs = self.args, self.args.repeat
        d = self.work / tag
        print(f"\n== {tag}: {n:,} x 1 KiB + {big / 1e6:,.0f} MB ({load()})", flush=True)
        paths = make_files(d, n, KiB, big)
        first, raw, gofirst, cli = Sample(), Sample(), Sample(), Sample()
        run = uuid.uuid4().hex[:6]
        for i in range(pairs):
            # alternate who goes first so a burst of load from elsewhere hurts both sides alike
            order = ["ours", "raw", "go", "cli"] if i % 2 == 0 else ["go", "raw", "ours", "cli"]
            for who in order:
                if who == "ours":
                    in_process(first, self.ours(d, f"/bench/{run}/{tag}-ours-{i}", fresh=True))
                elif who == "raw":
                    in_process(raw, lambda: raw_upload(self.store, paths, args.workers))
                elif who == "go" and self.go:
                    child(gofirst, self.go_argv(d, f"/bench/{run}/{tag}-go-{i}"), self.rig.env)
                elif who == "cli" and not args.no_cli:
                    StatCache(d).path.unlink(missing_ok=True)
                    child(cli, self.cli_argv(d, f"/bench/{run}/{tag}-cli-{i}"), self.cli_env)
        per_k = max(n, 1) / 1000
        print(f"first sync            ours {first.w:8.3f} s  cpu {first.c:6.2f} s ({first.c / per_k:5.2f} s/1k files)"
              f" | raw boto3 {raw.w:8.3f} s  cpu {raw.c:6.2f} s | ratio {first.w / raw.w:5.2f}", flush=True)
        print(f"  ours: {first.servers_text()}", flush=True)
        if cli.wall:
            print(f"  `pollinator sync` process {cli.w:8.3f} s  cpu {cli.c:6.2f} s (start-up included)", flush=True)
        if gofirst.wall:
            ok_w, ok_c = first.w <= 0.8 * gofirst.w, first.c <= gofirst.c
            print(f"  vs Go CLI {gofirst.w:8.3f} s  cpu {gofirst.c:6.2f} s ({gofirst.c / per_k:5.2f} s/1k files) | "
                  f"wall ratio {first.w / gofirst.w:5.2f} (target <= 0.8: {self.check(f'{tag} first wall', ok_w)}) | "
                  f"cpu ratio {first.c / gofirst.c:5.2f} (target <= 1.0: {self.check(f'{tag} first cpu', ok_c)})",
                  flush=True)
            print(f"  Go CLI: {gofirst.servers_text()}", flush=True)

        # no-change re-sync: our label from pair 0 (the stat cache is from the last sync of ours: same files)
        re_ours, re_go, re_cli = Sample(), Sample(), Sample()
        self.ours(d, f"/bench/{run}/{tag}-ours-0", fresh=False)()  # the cache now describes this label's files
        hashed = 0
        for i in range(max(3, pairs)):
            for who in (["ours", "go", "cli"] if i % 2 == 0 else ["go", "ours", "cli"]):
                if who == "ours":
                    def again() -> None:
                        nonlocal hashed
                        with self.rig.client() as c:
                            cfs = CFS(c, self.rig.s3, workers=args.workers)
                            cfs.sync(d, f"/bench/{run}/{tag}-ours-0", True)
                            hashed = max(hashed, cfs._cache(d).hashed)
                    in_process(re_ours, again)
                elif who == "go" and self.go:
                    child(re_go, self.go_argv(d, f"/bench/{run}/{tag}-go-0"), self.rig.env)
                elif who == "cli" and not args.no_cli:
                    child(re_cli, self.cli_argv(d, f"/bench/{run}/{tag}-ours-0"), self.cli_env)
        print(f"no-change re-sync     ours {re_ours.w:8.3f} s  cpu {re_ours.c:6.2f} s (files hashed: {hashed})",
              flush=True)
        if re_cli.wall:
            print(f"  `pollinator sync` process {re_cli.w:8.3f} s  cpu {re_cli.c:6.2f} s (start-up included)",
                  flush=True)
        if re_go.wall:
            ok = re_ours.w <= 0.5 * re_go.w
            print(f"  vs Go CLI {re_go.w:8.3f} s  cpu {re_go.c:6.2f} s | ratio {re_ours.w / re_go.w:5.2f} "
                  f"(target <= 0.5: {self.check(f'{tag} re-sync', ok)})", flush=True)
        print(f"  ({load()})", flush=True)
        if not args.keep_trees:
            shutil.rmtree(d, ignore_errors=True)

    def big_file(self, mib: int) -> None:
        args, pairs = self.args, self.args.repeat
        d = self.work / "big-alone"
        print(f"\n== one {mib} MiB file ({load()})", flush=True)
        make_files(d, 0, 0, mib * MiB)
        big = d / "big.bin"
        mb = big.stat().st_size / 1e6
        up, raw_up, go_up, down, raw_down = Sample(), Sample(), Sample(), Sample(), Sample()
        run = uuid.uuid4().hex[:6]
        dl = self.work / "raw-download.bin"
        for i in range(pairs):
            for who in (["ours", "raw", "go"] if i % 2 == 0 else ["go", "raw", "ours"]):
                if who == "ours":
                    in_process(up, self.ours(d, f"/bench/{run}/big-{i}", fresh=True))
                elif who == "raw":
                    in_process(raw_up, lambda: self.store.client.upload_file(str(big), self.store.bucket, f"raw-{run}",
                                                                             Config=self.store.transfer_config))
                elif who == "go" and self.go:
                    child(go_up, self.go_argv(d, f"/bench/{run}/big-go-{i}"), self.rig.env)
            in_process(raw_down, lambda: self.store.client.download_file(self.store.bucket, f"raw-{run}", str(dl),
                                                                         Config=self.store.transfer_config))
            dl.unlink()
            out = self.work / "pulled"
            with self.rig.client() as c:
                cfs = CFS(c, self.rig.s3, workers=args.workers)
                plan = cfs.plan_pull(f"/bench/{run}/big-0", out)
                in_process(down, lambda: cfs.apply(plan))
            shutil.rmtree(out)
        best = max(mb / raw_up.w, mb / go_up.w if go_up.wall else 0.0)
        ok = mb / up.w >= best
        go_txt = f" | Go CLI {mb / go_up.w:7.1f} MB/s" if go_up.wall else ""
        print(f"upload (sync)         ours {mb / up.w:7.1f} MB/s | boto3 upload_file {mb / raw_up.w:7.1f} MB/s"
              f"{go_txt} | "
              f"target >= the better: {self.check('big upload', ok)}", flush=True)
        print(f"download (pull)       ours {mb / down.w:7.1f} MB/s | boto3 download_file {mb / raw_down.w:7.1f} MB/s "
              f"| ratio {raw_down.w / down.w:5.2f}", flush=True)
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=1000, help="size 1: number of 1 KiB files")
    ap.add_argument("--big-mb", type=int, default=200, help="size 1: the big file, MB (10^6 bytes)")
    ap.add_argument("--many", type=int, default=10_000, help="size 2: number of 1 KiB files")
    ap.add_argument("--huge-mb", type=int, default=1024, help="size 2 and the throughput case: the big file, MiB")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3, help="alternated runs per case; medians are reported")
    ap.add_argument("--only", choices=["1", "2", "3"], action="append",
                    help="1: size 1, 2: size 2, 3: the big file alone")
    ap.add_argument("--no-cli", action="store_true", help="skip the `pollinator sync` process figures")
    ap.add_argument("--keep-trees", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    only = set(args.only or ["1", "2", "3"])

    go = shutil.which("colonies")
    work = Path(tempfile.mkdtemp(prefix="cfs-bench-"))
    os.environ["POLLINATOR_CACHE_DIR"] = str(work / "cache")
    rig = Rig(work)
    bench = Bench(args, work, rig, go)
    print(f"cfs sync benchmark {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {os.cpu_count()} CPUs, "
          f"workers={args.workers}, {args.repeat} alternated runs (medians), moto + dev Colonies server on loopback; "
          f"Go CLI: {go or 'not on PATH (skipped)'}; {load()}", flush=True)
    try:
        if "1" in only:
            bench.size("size1", args.small, args.big_mb * 1000 * 1000)
        if "2" in only:
            bench.size("size2", args.many, args.huge_mb * MiB)
        if "3" in only:
            bench.big_file(args.huge_mb)
    finally:
        rig.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}")
    print(f"\n{'all targets met' if not bench.failed else 'targets missed: ' + ', '.join(bench.failed)} "
          f"({'with' if go else 'without'} the Go CLI; {load()})", flush=True)


if __name__ == "__main__":
    main()
