"""Cancelling a sync part-way, against the real dev Colonies server and moto S3 over HTTP.

What a cancel must give (pollinator.cfs.cancel): queued transfers never start (at most the
``workers`` transfers already running finish), the call returns only when no worker is left, no
record points at missing or different bytes, no multipart upload is left open, no partial file is
left in the target directory, and a later sync completes the job exactly once.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
import uuid

import boto3
import pytest

import colonyserver
from cfs_fakes import tree, write
from fault_proxy import FaultProxy, rpc_is
from pollinator.cfs import CFS, CancelToken, SyncCancelled
from pollinator.cfs.paths import TMP_PREFIX
from pollinator.cfs.pool import WorkerPool
from pollinator.cfs.s3 import MiB

pytestmark = pytest.mark.skipif(not colonyserver.server_available(), reason="needs pollinator.dev.server")

SMALL = 600
WORKERS = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = colonyserver.start(tmp_path_factory.mktemp("colonies"))
    try:
        yield srv
    finally:
        colonyserver.stop(srv)


@pytest.fixture
def client(server):
    with server.client() as c:
        yield c


@pytest.fixture
def label() -> str:
    return f"/cancel/{uuid.uuid4().hex[:8]}"


def make_tree(root, big: int = 0) -> dict[str, bytes]:
    files = {f"d{i % 7}/f{i:04d}.txt": f"file {i}\n".encode() * 3 for i in range(SMALL)}
    if big:
        files["big.bin"] = os.urandom(big)
    for rel, data in files.items():
        write(root / rel, data)
    return files


class CancelAfter:
    """A progress callback that cancels (or interrupts) once ``n`` files are done, remembering how many were."""

    def __init__(self, n: int, act):
        self.n, self.act, self.done_at = n, act, None

    def __call__(self, p) -> None:
        if self.done_at is None and not p.finished and p.files_done >= self.n:
            self.done_at = p.files_done
            self.act()


def records(client, label: str) -> dict[str, list]:
    """rel path -> every revision the server holds."""
    out: dict[str, list] = {}
    for lb in client.get_file_labels(label, False) or []:
        if lb.name != label and not lb.name.startswith(label + "/"):
            continue
        rel_dir = lb.name[len(label):].strip("/")
        for f in client.get_files(lb.name) or []:
            rel = f"{rel_dir}/{f.name}" if rel_dir else f.name
            out[rel] = client.get_file(label=lb.name, name=f.name, latest=False)
    return out


def no_workers_left() -> bool:
    return not [t.name for t in threading.enumerate() if t.name.startswith("cfs-")]


def assert_every_record_whole(s3, recs: dict[str, list], files: dict[str, bytes]) -> None:
    raw = boto3.client("s3", endpoint_url=s3.url, aws_access_key_id="test-access",
                       aws_secret_access_key="test-secret", region_name="us-east-1")
    for rel, revs in recs.items():
        for rec in revs:
            body = raw.get_object(Bucket=s3.bucket, Key=rec.ref.s3object.object)["Body"].read()
            assert hashlib.sha256(body).hexdigest() == rec.checksum == hashlib.sha256(files[rel]).hexdigest(), rel
    assert not raw.list_multipart_uploads(Bucket=s3.bucket).get("Uploads"), "a multipart upload was left open"


def test_cancel_token_stops_queued_uploads_and_registers_only_whole_files(client, s3, tmp_path, label):
    src = tmp_path / "src"
    files = make_tree(src, big=24 * MiB)
    token = CancelToken()
    trigger = CancelAfter(5, lambda: token.cancel("the task was killed"))
    cfs = CFS(client, s3, workers=WORKERS, progress=trigger)
    cfs.store.multipart_threshold = cfs.store.multipart_chunksize = 5 * MiB
    with pytest.raises(SyncCancelled, match="the task was killed"):
        cfs.sync(src, label, True, cancel=token)
    assert no_workers_left(), "the sync returned while a worker could still register files"
    recs = records(client, label)
    # queued transfers never started: only the ones running when the token was cancelled finished
    assert trigger.done_at is not None and len(recs) <= trigger.done_at + WORKERS < len(files)
    assert_every_record_whole(s3, recs, files)
    # the next sync does the rest, and each file is registered exactly once overall
    again = CFS(client, s3, workers=4)
    again.store.multipart_threshold = again.store.multipart_chunksize = 5 * MiB
    report = again.sync(src, label, True)
    assert len(report.uploaded) == len(files) - len(recs)
    recs = records(client, label)
    assert set(recs) == set(files) and all(len(revs) == 1 for revs in recs.values())
    assert_every_record_whole(s3, recs, files)


def test_ctrl_c_during_a_pull_stops_it_and_leaves_no_partial_file(client, s3, tmp_path, label):
    files = make_tree(tmp_path / "src", big=24 * MiB)
    seed = CFS(client, s3, workers=4)
    seed.store.multipart_threshold = seed.store.multipart_chunksize = 5 * MiB
    seed.sync(tmp_path / "src", label, True)

    main = threading.main_thread().ident
    assert main is not None and threading.current_thread().ident == main
    trigger = CancelAfter(5, lambda: signal.pthread_kill(main, signal.SIGINT))  # what Ctrl-C does
    cfs = CFS(client, s3, workers=WORKERS, progress=trigger)
    cfs.store.multipart_threshold = cfs.store.multipart_chunksize = 5 * MiB
    dst = tmp_path / "dst"
    with pytest.raises(KeyboardInterrupt):
        cfs.pull(label, dst)
    assert no_workers_left()
    assert not [p for p in dst.rglob(f"{TMP_PREFIX}*")], "a partial download was left behind"
    got = tree(dst)
    assert trigger.done_at is not None and len(got) <= trigger.done_at + WORKERS < len(files)
    assert all(files[rel] == data for rel, data in got.items())
    CFS(client, s3, workers=4).pull(label, dst)
    assert tree(dst) == files


def test_cancel_ends_a_retry_backoff_and_registers_nothing(server, s3, tmp_path, label):
    write(tmp_path / "src" / "only.txt", "x")
    token = CancelToken()
    with FaultProxy(server.endpoint) as proxy, server.client(proxy.endpoint) as c:
        rule = proxy.fail(rpc_is("addfilemsg"), "colonies_500", times=None)

        def cancel_on_first_failure() -> None:
            deadline = time.monotonic() + 60
            while rule.hits == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            token.cancel("stop")

        watcher = threading.Thread(target=cancel_on_first_failure)
        watcher.start()
        try:
            with pytest.raises(SyncCancelled):  # not "cannot register" after every retry
                CFS(c, s3).sync(tmp_path / "src", label, True, cancel=token)
        finally:
            watcher.join()
        assert rule.hits < 5  # ADD_FILE_RETRIES + 1 attempts would have been made without the cancel
    with server.client() as c:
        assert not records(c, label)


# -- the pool on its own ---------------------------------------------------------------------------
def test_pool_failure_stops_queued_jobs_and_a_child_token_spares_the_caller():
    ran: list[int] = []
    caller = CancelToken()

    def job(i: int):
        def run(token: CancelToken) -> None:
            if i == 3:
                raise ValueError("boom")
            ran.append(i)
        return run

    with pytest.raises(ValueError, match="boom"):
        WorkerPool(1).run([job(i) for i in range(10)], caller)
    assert ran == [0, 1, 2] and not caller.cancelled  # the failure stopped this run, not the caller's token
    caller.cancel("bye")
    with pytest.raises(SyncCancelled, match="bye"):
        WorkerPool(3).run([job(i) for i in range(10)], caller)
    assert ran == [0, 1, 2]
    assert WorkerPool(4).map(lambda x: x * 2, list(range(50))) == [x * 2 for x in range(50)]
