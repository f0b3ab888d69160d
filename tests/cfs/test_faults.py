"""Retries on real HTTP failures injected by a proxy in front of moto S3."""

from __future__ import annotations

import os

import pytest

from cfs_fakes import s3_settings, sha, tree, write
from fault_proxy import FaultProxy
from pollinator.cfs import CFS
from pollinator.cfs.s3 import MiB
from pollinator.errors import SyncError


@pytest.fixture
def proxy(moto_endpoint):
    with FaultProxy(moto_endpoint) as p:
        yield p


@pytest.fixture
def flaky(fake, proxy):
    """A CFS whose S3 traffic goes through the proxy."""
    cfs = CFS(fake, s3_settings(proxy.endpoint), workers=4)
    cfs.store.ensure_bucket()
    return cfs


def is_put(method, path, body):
    return method == "PUT" and path.count("/") >= 2


def test_upload_retried_after_500s_and_drops(flaky, fake, proxy, tmp_path):
    files = {f"f{i}.txt": os.urandom(100) for i in range(6)}
    for name, data in files.items():
        write(tmp_path / "src" / name, data)
    proxy.fail(is_put, "s3_500", times=3)
    proxy.fail(is_put, "drop", times=2)
    report = flaky.sync(tmp_path / "src", "/flaky", True)
    assert len(report.uploaded) == 6
    assert sum(r.hits for r in proxy.rules) == 5
    proxy.clear()
    flaky.pull("/flaky", tmp_path / "copy")
    assert tree(tmp_path / "copy") == files


def test_download_retried_after_truncated_body(flaky, fake, proxy, tmp_path):
    write(tmp_path / "src" / "f.bin", os.urandom(50_000))
    flaky.sync(tmp_path / "src", "/trunc", True)
    obj = fake.files[-1].ref.s3object.object
    proxy.fail(lambda m, p, b: m == "GET" and obj in p, "truncate", times=2)
    flaky.pull("/trunc", tmp_path / "dst")
    assert (tmp_path / "dst" / "f.bin").read_bytes() == (tmp_path / "src" / "f.bin").read_bytes()


@pytest.mark.parametrize("size", [50_000, 12 * MiB])
def test_interrupted_download_leaves_no_partial_file(flaky, fake, proxy, tmp_path, size):
    flaky.store.multipart_threshold = 5 * MiB
    flaky.store.transfer_config.multipart_threshold = 5 * MiB
    flaky.store.transfer_config.multipart_chunksize = 5 * MiB
    write(tmp_path / "src" / "f.bin", os.urandom(size))
    write(tmp_path / "src" / "ok.txt", "fine")
    flaky.sync(tmp_path / "src", "/cut", True)
    obj = next(f for f in fake.files if f.name == "f.bin").ref.s3object.object
    proxy.fail(lambda m, p, b: m == "GET" and obj in p, "truncate", times=None)
    dst = tmp_path / "dst"
    write(dst / "f.bin", "old local version")
    with pytest.raises(SyncError, match="/cut/f.bin"):
        flaky.sync(dst, "/cut", False)
    assert (dst / "f.bin").read_text() == "old local version"  # untouched, not half-written
    assert not [p for p in dst.iterdir() if p.name.startswith(".cfs-tmp")]


def test_persisting_s3_errors_raise_sync_error_naming_the_file(flaky, proxy, tmp_path):
    write(tmp_path / "src" / "doomed.txt", "x")
    proxy.fail(is_put, "s3_500", times=None)
    with pytest.raises(SyncError, match="/doomed/doomed.txt") as err:
        flaky.sync(tmp_path / "src", "/doomed", True)
    assert "test-secret" not in str(err.value)


def _multipart(cfs: CFS) -> None:
    cfs.store.multipart_threshold = cfs.store.multipart_chunksize = 5 * MiB


def part(n: int):
    return lambda m, p, b: m == "PUT" and f"partNumber={n}&" in p


def test_multipart_upload_resends_failed_parts_and_records_the_sha256(flaky, fake, proxy, tmp_path):
    _multipart(flaky)
    data = os.urandom(12 * MiB + 5)
    write(tmp_path / "src" / "big.bin", data)
    proxy.fail(part(2), "s3_500", times=2)
    proxy.fail(part(3), "drop", times=1)
    flaky.sync(tmp_path / "src", "/mp", True)
    assert sum(r.hits for r in proxy.rules) == 3
    rec = next(f for f in fake.files if f.name == "big.bin")
    assert rec.checksum == sha(data) and rec.size == len(data)
    proxy.clear()
    flaky.pull("/mp", tmp_path / "copy")
    assert (tmp_path / "copy" / "big.bin").read_bytes() == data


def test_failed_multipart_upload_is_aborted_and_named(flaky, fake, proxy, tmp_path):
    _multipart(flaky)
    write(tmp_path / "src" / "big.bin", os.urandom(11 * MiB))
    proxy.fail(part(2), "s3_500", times=None)
    with pytest.raises(SyncError, match="/mpfail/big.bin") as err:
        flaky.sync(tmp_path / "src", "/mpfail", True)
    assert "test-secret" not in str(err.value)
    assert not fake.files  # no record points at an object that is not there
    assert any(m == "DELETE" and "uploadId=" in p for m, p in proxy.requests)
    assert not flaky.store.client.list_multipart_uploads(Bucket=flaky.store.bucket).get("Uploads")


def test_server_refusing_multipart_checksums_gets_plain_uploads(flaky, fake, proxy, tmp_path):
    _multipart(flaky)
    data = os.urandom(6 * MiB)
    write(tmp_path / "src" / "big.bin", data)
    proxy.fail(lambda m, p, b: m == "POST" and p.endswith("?uploads="), "s3_400", times=1)
    flaky.sync(tmp_path / "src", "/plain", True)
    assert proxy.rules[0].hits == 1 and flaky.store.lean.multipart_checksums is False
    proxy.clear()
    flaky.pull("/plain", tmp_path / "copy")
    assert (tmp_path / "copy" / "big.bin").read_bytes() == data


def test_file_growing_during_multipart_upload_is_not_recorded(flaky, fake, proxy, tmp_path):
    _multipart(flaky)
    big = tmp_path / "src" / "big.bin"
    write(big, os.urandom(11 * MiB))

    def append_on_part_2(method, path, body):
        if part(2)(method, path, body):
            with open(big, "ab") as f:
                f.write(b"written while uploading")
        return False

    proxy.fail(append_on_part_2, "s3_500", times=None)
    with pytest.raises(SyncError, match="changed while it was being synced"):
        flaky.sync(tmp_path / "src", "/grow", True)
    assert not [f for f in fake.files if f.name == "big.bin"]
