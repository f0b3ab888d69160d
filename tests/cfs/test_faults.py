"""Retries on real HTTP failures injected by a proxy in front of moto S3."""

from __future__ import annotations

import os

import pytest

from cfs_fakes import s3_settings, tree, write
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
