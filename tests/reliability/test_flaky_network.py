"""Flaky storage and network: a fault-injecting proxy in front of moto S3 and the Colonies server.

Outcomes allowed: complete with every file checksum-identical, or a clear
PollinatorError after bounded retries. Never a hang (hard timeouts), never a
corrupt, half-written or stray temp file.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

import rel_tally
from rel_helpers import process_total
from pollinator.cfs import CFS
from pollinator.cfs.paths import TMP_PREFIX
from pollinator.colonies.models import ProcessState
from pollinator.errors import PollinatorError, SyncError, Unreachable
from pollinator.run import Job
from pollinator.run.follow import follow_logs
from pollinator.run.token import token_label
from fault_proxy import FaultProxy

MiB = 1024 * 1024


def _through(settings, colonies: FaultProxy | None, s3: FaultProxy | None):
    update = {}
    if colonies is not None:
        update["port"] = colonies.port
        update["host"] = "127.0.0.1"
    if s3 is not None:
        update["s3"] = settings.s3.model_copy(update={"endpoint": s3.endpoint})
    return settings.model_copy(update=update)


def _digests(root: Path) -> dict[str, str]:
    out = {}
    for path in root.rglob("*"):
        if path.is_file() and path.name != ".cfs":
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _stray_temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TMP_PREFIX)] if root.exists() else []


def _make_tree(root: Path, seed: int) -> None:
    rnd = __import__("random").Random(seed)
    for i in range(24):
        sub = root / ("" if i % 3 else f"d{i % 4}")
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i}.bin").write_bytes(rnd.randbytes(rnd.randint(0, 40_000)))
    (root / "big.bin").write_bytes(rnd.randbytes(3 * MiB + 123))


def _small_multipart(cfs: CFS) -> None:
    cfs.store.multipart_threshold = MiB
    cfs.store.transfer_config.multipart_threshold = MiB
    cfs.store.transfer_config.multipart_chunksize = 5 * MiB


@pytest.mark.timeout(150)
@pytest.mark.parametrize("seed", [11, 12])
def test_sync_and_pull_through_flaky_s3_and_server_verify_or_fail_cleanly(settings, tmp_path, seed):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _make_tree(src, seed)
    dst.mkdir()
    (dst / "f1.bin").write_bytes(b"an older local version")  # must end old or new, never half
    old_local = (dst / "f1.bin").read_bytes()
    label = f"/reliability/flaky{seed}-{os.urandom(3).hex()}"
    with FaultProxy(settings.s3.endpoint, rate=0.25, seed=seed, flavor="s3") as s3p, \
            FaultProxy(f"{settings.host}:{settings.port}", rate=0.12, seed=seed + 100, flavor="colonies") as cp:
        flaky = _through(settings, cp, s3p)
        with flaky.client(retries=6) as client:
            cfs = CFS(client, flaky.s3, workers=4)
            _small_multipart(cfs)
            started = time.monotonic()
            outcome = "ok"
            try:
                cfs.sync(src, label, keep_local=True)
                cfs.sync(dst, label, keep_local=False)
            except PollinatorError as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            elapsed = time.monotonic() - started
            injected = s3p.total_injected + cp.total_injected
    rel_tally.add("faults_injected", injected)
    assert injected > 0, "the proxies injected nothing: the test proved nothing"
    assert elapsed < 120
    assert not _stray_temps(dst) and not _stray_temps(src)
    want, got = _digests(src), _digests(dst)
    rel_tally.add("files_checked", len(want))
    for name, digest in got.items():
        if name == "f1.bin" and digest == hashlib.sha256(old_local).hexdigest():
            continue
        assert want.get(name) == digest, f"{name} is corrupt or half-written"
    rel_tally.note(f"flaky_sync_{seed}", outcome)
    if outcome == "ok":
        lost = set(want) - set(got)
        rel_tally.add("files_lost", len(lost))
        assert not lost, f"files lost: {lost}"
        rel_tally.add("faults_survived", injected)
    else:
        assert any(w in outcome for w in ("/", "S3", "server")), outcome  # names a file, S3 or the server
    # whatever happened, a clean network afterwards converges to an exact copy
    with settings.client() as client:
        cfs = CFS(client, settings.s3, workers=4)
        _small_multipart(cfs)
        cfs.sync(src, label, keep_local=True)
        cfs.sync(dst, label, keep_local=False)
    assert _digests(dst) == want


@pytest.mark.timeout(150)
def test_job_follow_through_flaky_server_gets_every_line_once(settings, tmp_path, client):
    token = "rel-flaky-" + os.urandom(4).hex()
    n = 40
    lines: list[str] = []
    with FaultProxy(f"{settings.host}:{settings.port}", rate=0.2, seed=7, flavor="colonies") as cp, \
            FaultProxy(settings.s3.endpoint, rate=0.2, seed=8, flavor="s3") as s3p:
        flaky = _through(settings, cp, s3p)
        job = Job.inline(flaky, name="rel-flaky", executor_names=["dev-k8s"], walltime=120, token=token,
                         result_dir=tmp_path / "res",
                         cmd=f"sh -c 'for i in $(seq 1 {n}); do echo n=$i; sleep 0.02; done; "
                             "echo ok > $POLLINATOR_RESULT_DIR/r.txt'")
        result, errors = None, []
        for _attempt in range(5):  # what a careful caller does: same Job, same token, bounded
            try:
                result = job.run(on_log=lambda t: lines.append(t) if t.startswith("n=") else None)
                break
            except PollinatorError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        injected = cp.total_injected + s3p.total_injected
        job.close()
    rel_tally.add("faults_injected", injected)
    assert injected > 0
    same = [p for st in ProcessState for p in client.get_processes(st, label=token_label(token))]
    assert len(same) == 1, f"{len(same)} processes for one token"
    assert result is not None, errors
    assert result.state == "SUCCESS"
    assert lines == [f"n={i}" for i in range(1, n + 1)]
    assert (tmp_path / "res" / "r.txt").read_text().strip() == "ok"
    rel_tally.add("faults_survived", injected)
    rel_tally.add("log_lines_checked", n)
    rel_tally.add("files_checked")


@pytest.mark.timeout(120)
def test_dead_s3_fails_with_sync_error_in_bounded_time(settings, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    (src / "b.bin").write_bytes(os.urandom(2 * MiB))
    with FaultProxy(settings.s3.endpoint, rate=1.0, kinds=("5xx", "reset"), flavor="s3") as s3p:
        flaky = _through(settings, None, s3p)
        with flaky.client() as client:
            cfs = CFS(client, flaky.s3, workers=2)
            _small_multipart(cfs)
            started = time.monotonic()
            with pytest.raises(SyncError) as info:
                cfs.sync(src, f"/reliability/dead-{os.urandom(3).hex()}", keep_local=True)
            elapsed = time.monotonic() - started
        rel_tally.add("faults_injected", s3p.total_injected)
    assert elapsed < 90, f"took {elapsed:.0f} s to give up"
    assert "/reliability/dead-" in str(info.value) or "S3 bucket" in str(info.value)  # names what failed
    assert flaky.s3.secret_key.get_secret_value() not in str(info.value)
    rel_tally.add("faults_survived", s3p.total_injected)  # survived = refused cleanly, no hang


@pytest.mark.timeout(120)
def test_truncated_downloads_leave_old_file_and_no_temp(settings, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "data.bin").write_bytes(os.urandom(300_000))
    (dst / "data.bin").write_bytes(b"old")
    label = f"/reliability/trunc-{os.urandom(3).hex()}"
    with settings.client() as client:
        CFS(client, settings.s3).sync(src, label, keep_local=True)
    with FaultProxy(settings.s3.endpoint, rate=1.0, kinds=("truncate",), flavor="s3",
                    only=lambda m, p, b: m == "GET") as s3p:
        flaky = _through(settings, None, s3p)
        with flaky.client() as client:
            with pytest.raises(SyncError, match="data.bin"):
                CFS(client, flaky.s3).pull(label, dst)
        rel_tally.add("faults_injected", s3p.total_injected)
    assert (dst / "data.bin").read_bytes() == b"old"
    assert not _stray_temps(dst)
    rel_tally.add("faults_survived", s3p.total_injected)
    rel_tally.add("files_checked")


@pytest.mark.timeout(60)
def test_dead_server_ends_follow_with_unreachable_in_bounded_time(settings, client):
    with Job.inline(settings, name="rel-dead", executor_names=["dev-hpc"], cmd="sh -c 'sleep 5'",
                    walltime=60) as job:
        pid = job.submit()
        before = process_total(client)
        with FaultProxy(f"{settings.host}:{settings.port}", rate=1.0, kinds=("5xx", "reset"),
                        flavor="colonies") as cp:
            flaky = _through(settings, cp, None)
            with flaky.client(retries=1) as fclient:
                started = time.monotonic()
                with pytest.raises(Unreachable, match="lost the Colonies server"):
                    list(follow_logs(fclient, pid, unreachable_timeout=3))
                elapsed = time.monotonic() - started
            rel_tally.add("faults_injected", cp.total_injected)
        assert elapsed < 20
        assert process_total(client) == before
        job.cancel()
    rel_tally.add("faults_survived", cp.total_injected)
