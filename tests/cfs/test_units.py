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


def test_small_object_requests_are_signed_by_botocore_over_the_body():
    """Signing is botocore's, and it covers the bytes we send (a signed empty body would be refused by S3)."""
    from cfs_fakes import s3_settings
    from pollinator.cfs.sigv4 import LeanS3

    lean = LeanS3(s3_settings("127.0.0.1:9000", bucket="my-bucket"))
    payload = sha(b"hello")
    headers = {k.lower(): v for k, v in lean._headers("PUT", "http://127.0.0.1:9000/my-bucket/abc123",
                                                          b"hello").items()}
    assert headers["x-amz-content-sha256"] == payload
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=test-access/")
    assert "x-amz-content-sha256" in headers["authorization"].lower()
    assert "test-secret" not in repr(lean) and "test-secret" not in str(headers)


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
