"""Pure units: labels/paths, hashing + stat cache, planning rules, ignore rules."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pollinator.cfs.hashing import StatCache, sha256_file
from pollinator.cfs.ignore import IgnoreRules
from pollinator.cfs.paths import check_name, normalize_label, rel_dir_of, safe_target
from pollinator.cfs.plan import LocalFile, RemoteFile, plan_label
from pollinator.cfs.s3 import record_endpoint
from pollinator.errors import UnsafePathError

from cfs_fakes import sha, write


@pytest.mark.parametrize("raw,norm", [("a", "/a"), ("/a/", "/a"), ("a/b/", "/a/b"), ("", "/"), ("//x//", "/x")])
def test_normalize_label(raw, norm):
    assert normalize_label(raw) == norm


def test_rel_dir_of():
    assert rel_dir_of("/a", "/a") == ""
    assert rel_dir_of("/a/b/c", "/a") == "b/c"
    with pytest.raises(UnsafePathError):
        rel_dir_of("/ab", "/a")


@pytest.mark.parametrize("label", ["/a/..", "/a/../x", "/a/b/../../..", "/a/C:", "/a/x\\y", "/a/x\x00", "/a//x",
                                   "/a/."])
def test_hostile_labels(label):
    with pytest.raises(UnsafePathError) as err:
        rel_dir_of(label, "/a")
    assert f"label={label!r}" in str(err.value)


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "/etc/passwd", "C:evil", "c:\\x", "a\\b", "x\x00y", ".cfs"])
def test_hostile_names(name):
    with pytest.raises(UnsafePathError):
        check_name(name, label="/a")


def test_safe_target_refuses_symlinked_dir(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "sub").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        safe_target(root, "sub", "x")
    assert safe_target(root, "", "x") == Path(os.path.realpath(root)) / "x"


def test_record_endpoint_both_styles():
    assert record_endpoint("127.0.0.1:9000", -1) == "127.0.0.1:9000"
    assert record_endpoint("127.0.0.1", 9000) == "127.0.0.1:9000"


def test_sha256_streamed(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 7)
    p = write(tmp_path / "f", data)
    assert sha256_file(p) == sha(data)


def test_stat_cache_skips_unchanged_and_rehashes_changed(tmp_path):
    d = tmp_path / "d"
    p = write(d / "f", b"one")
    old = time.time_ns() - 10**9 * 5
    os.utime(p, ns=(old, old))
    c = StatCache(d)
    assert c.checksum("f", p, os.stat(p)) == sha(b"one") and c.hashed == 1
    c.save()
    c2 = StatCache(d)
    assert c2.checksum("f", p, os.stat(p)) == sha(b"one") and c2.hashed == 0
    write(p, b"two")  # new mtime (and size)
    assert c2.checksum("f", p, os.stat(p)) == sha(b"two") and c2.hashed == 1


def test_stat_cache_does_not_store_racy_entries(tmp_path):
    d = tmp_path / "d"
    p = write(d / "f", b"fresh")  # mtime is "now": a same-tick rewrite would be invisible
    c = StatCache(d)
    c.checksum("f", p, os.stat(p))
    c.save()
    c2 = StatCache(d)
    c2.checksum("f", p, os.stat(p))
    assert c2.hashed == 1


def test_stat_cache_lives_outside_the_dir(tmp_path):
    c = StatCache(tmp_path)
    assert tmp_path not in c.path.parents


def L(name, data):
    return LocalFile(name=name, size=len(data), checksum=sha(data))


def R(name, data, obj="o"):
    return RemoteFile(name=name, size=len(data), checksum=sha(data), s3_object=obj)


@pytest.mark.parametrize("keep_local", [True, False])
def test_plan_rules(keep_local):
    local = {"only_local": L("only_local", b"l"), "same": L("same", b"s"), "diff": L("diff", b"local!")}
    remote = {"only_remote": R("only_remote", b"r"), "same": R("same", b"s"), "diff": R("diff", b"remote", "obj")}
    lp = plan_label("/x", "", local, remote, keep_local)
    assert [f.name for f in lp.upload] == ["only_local"]
    assert [f.name for f in lp.download] == ["only_remote"]  # downloaded under both rules, like Go
    assert [f.name for f in lp.conflicts] == ["diff"]
    c = lp.conflicts[0]
    if keep_local:
        assert c.checksum == sha(b"local!") and c.size == 6 and c.s3_object == ""
    else:
        assert c.checksum == sha(b"remote") and c.s3_object == "obj"


def test_ignore_rules(tmp_path):
    write(tmp_path / ".pollinatorignore", "*.tmp\nbuild/\n!keep.tmp\n")
    rules = IgnoreRules.load(tmp_path)
    assert rules.ignored("a.tmp") and rules.ignored("sub/b.tmp")
    assert not rules.ignored("keep.tmp")
    assert rules.ignored("build", is_dir=True) and rules.ignored("build/x.txt")
    assert not rules.ignored("src/x.txt")
    assert rules.ignored(".cfs") and rules.ignored("sub/.cfs-tmp-abc")
    assert not IgnoreRules.load(tmp_path / "nope").ignored("a.tmp")


@pytest.mark.parametrize("method, path, query, body, extra, sign_body", [
    ("PUT", "/my-bucket/abc123", "", b"hello", {"Content-Type": "application/octet-stream"}, True),
    ("GET", "/my-bucket/abc123", "", None, {}, True),
    ("HEAD", "/my-bucket", "", None, {}, True),
    ("POST", "/my-bucket/abc123", "uploads=", None, {"x-amz-checksum-algorithm": "CRC32"}, True),
    ("PUT", "/my-bucket/abc123", "partNumber=2&uploadId=a%2Bb%3D", b"part bytes", {"x-amz-checksum-crc32": "AAAAAA=="},
     False),
    ("POST", "/my-bucket/abc123", "uploadId=xyz", b"<CompleteMultipartUpload/>", {"Content-Type": "application/xml"},
     True),
])
def test_sigv4_matches_botocores_signer_byte_for_byte(monkeypatch, method, path, query, body, extra, sign_body):
    """Our SigV4 is pinned to botocore's on every kind of request an upload sends (moto does not check signatures)."""
    import datetime

    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from cfs_fakes import s3_settings
    from pollinator.cfs.sigv4 import UNSIGNED_PAYLOAD, LeanS3

    now = datetime.datetime(2026, 12, 4, 15, 40, 7, tzinfo=datetime.timezone.utc)
    lean = LeanS3(s3_settings("127.0.0.1:9000", bucket="my-bucket"))
    ours = lean._signer.headers(method, "127.0.0.1:9000", path, query, extra,
                                sha(body or b"") if sign_body else UNSIGNED_PAYLOAD, now=now)

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: now.replace(tzinfo=None))
    request = AWSRequest(method=method, url=f"http://127.0.0.1:9000{path}" + (f"?{query}" if query else ""),
                         data=body or b"", headers=dict(extra))
    if not sign_body:
        request.context["client_config"] = type("Config", (), {"s3": {"payload_signing_enabled": False}})()
    botocore.auth.S3SigV4Auth(Credentials("test-access", "test-secret"), "s3", "us-east-1").add_auth(request)
    theirs = dict(request.headers.items())
    assert ours["Authorization"] == theirs["Authorization"]
    assert ours["X-Amz-Content-SHA256"] == theirs["X-Amz-Content-SHA256"]
    assert "test-secret" not in repr(lean) and "test-secret" not in str(ours)


def test_tracker_throttles_callback_and_logs_lines(caplog):
    import logging

    from pollinator.cfs.progress import Tracker

    seen = []
    t = Tracker(seen.append, files_total=3, bytes_total=30, label="/p", min_interval=3600, log_interval=0)
    with caplog.at_level(logging.INFO, logger="pollinator.cfs"):
        for _ in range(3):
            t.file_done(10)
        t.finish()
    assert len(seen) == 1 and seen[-1].finished and (seen[-1].files_done, seen[-1].bytes_done) == (3, 30)
    assert any("cfs /p: 3/3 files" in r.getMessage() for r in caplog.records)


def test_hashing_reader_sequential_and_seek_fallback(tmp_path):
    from pollinator.cfs.hashing import HashingReader

    data = os.urandom(100_000)
    p = write(tmp_path / "f", data)
    with open(p, "rb") as f:
        r = HashingReader(f)
        while r.read(7000):
            pass
        assert r.digest(len(data)) == sha(data)
    with open(p, "rb") as f:
        r = HashingReader(f)
        r.read(10)
        r.seek(50)
        r.read(10)
        assert r.digest(len(data)) is None  # caller must hash the file itself
