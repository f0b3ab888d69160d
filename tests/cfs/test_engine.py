"""The engine against real moto S3 (over HTTP) and the in-memory file store.

The same behaviours run against the real Colonies dev server in
test_integration.py; these keep working (and fast) without it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cfs_fakes import FakeColonies, sha, tree, write
from pollinator.cfs import CFS
from pollinator.cfs.s3 import MiB
from pollinator.colonies.models import File, Reference, S3Object
from pollinator.errors import SyncError, UnsafePathError


@pytest.fixture
def cfs(fake, s3):
    return CFS(fake, s3, workers=4)


def make_tree(root: Path) -> dict[str, bytes]:
    files = {"a.txt": b"alpha", "empty.bin": b"", "sub/b.txt": b"beta", "sub/deeper/c.txt": b"gamma" * 1000}
    for rel, data in files.items():
        write(root / rel, data)
    return files


def test_first_sync_uploads_everything_with_sub_labels(cfs, fake, tmp_path):
    files = make_tree(tmp_path / "src")
    plan = cfs.plan(tmp_path / "src", "proj/src/", keep_local=True)
    assert plan.label == "/proj/src"
    assert plan.upload_count == 4 and plan.download_count == 0 and not plan.is_empty
    assert {lp.label for lp in plan.labels} == {"/proj/src", "/proj/src/sub", "/proj/src/sub/deeper"}
    report = cfs.apply(plan)
    assert sorted(report.uploaded) == ["/proj/src/a.txt", "/proj/src/empty.bin", "/proj/src/sub/b.txt",
                                       "/proj/src/sub/deeper/c.txt"]
    assert report.bytes_uploaded == sum(map(len, files.values()))
    rec = next(f for f in fake.files if f.name == "a.txt")
    assert rec.checksum == sha(b"alpha") and rec.checksumalg == "SHA256"
    obj = rec.ref.s3object
    assert obj.accesskey == "" and obj.secretkey == "" and obj.port > 0 and ":" not in obj.server
    assert len(obj.object) == 64
    # no Go .cfs marker by default (the user's tree holds the user's files); asked for, it is written and
    # never uploaded
    assert not list((tmp_path / "src").rglob(".cfs"))
    (tmp_path / "src" / "sub" / "new.txt").write_text("n")
    CFS(fake, cfs.s3_settings, markers=True).sync(tmp_path / "src", "/proj/src", keep_local=True)
    assert (tmp_path / "src" / "sub" / ".cfs").read_text() == '{"label":"/proj/src/sub"}'
    assert not any(f.name == ".cfs" for f in fake.files)
    assert cfs.plan(tmp_path / "src", "/proj/src", True).is_empty


def test_pull_into_empty_dir_is_byte_identical(cfs, fake, s3, tmp_path):
    files = make_tree(tmp_path / "src")
    cfs.sync(tmp_path / "src", "/p", True)
    other = CFS(fake, s3, workers=2)
    report = other.pull("/p", tmp_path / "copy")
    assert tree(tmp_path / "copy") == files
    assert len(report.downloaded) == 4
    assert not other.pull("/p", tmp_path / "copy").downloaded  # identical files are skipped


def test_no_change_resync_hashes_nothing(cfs, fake, tmp_path):
    src = tmp_path / "src"
    make_tree(src)
    old = 1_600_000_000 * 10**9
    for p in src.rglob("*"):
        if p.is_file():
            os.utime(p, ns=(old, old))
    cfs.sync(src, "/p", True)
    fresh = CFS(fake, cfs.s3_settings)
    plan = fresh.plan(src, "/p", True)
    assert plan.is_empty
    assert fresh._cache(src).hashed == 0
    assert fake.calls.count("getfilesmsg") >= 3  # one per label, not per file


@pytest.mark.parametrize("keep_local", [True, False])
def test_conflicts_and_remote_only_files(cfs, fake, s3, tmp_path, keep_local):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a / "shared.txt", "from a")
    write(a / "sub" / "only_a.txt", "a only")
    cfs.sync(a, "/c", True)
    write(b / "shared.txt", "from b, changed")
    write(b / "only_b.txt", "b only")
    other = CFS(fake, s3)
    plan = other.plan(b, "/c", keep_local)
    assert plan.conflict_count == 1
    report = other.apply(plan)
    # remote-only files are downloaded under both rules (Go LocalMissing), local-only uploaded
    assert (b / "sub" / "only_a.txt").read_text() == "a only"
    assert "/c/only_b.txt" in report.uploaded
    if keep_local:
        assert (b / "shared.txt").read_text() == "from b, changed"
        assert "/c/shared.txt" in report.uploaded
        latest = fake.get_file(label="/c", name="shared.txt")[0]
        assert latest.checksum == sha(b"from b, changed")
    else:
        assert (b / "shared.txt").read_text() == "from a"
        assert "/c/shared.txt" in report.downloaded
    assert other.plan(b, "/c", keep_local).is_empty


def test_ignore_file_applies_both_ways(cfs, fake, s3, tmp_path):
    src = tmp_path / "src"
    write(src / ".pollinatorignore", "*.log\nbuild/\n")
    write(src / "keep.txt", "k")
    write(src / "x.log", "noise")
    write(src / "build" / "out.o", "obj")
    cfs.sync(src, "/ig", True)
    names = {(f.label, f.name) for f in fake.files}
    assert names == {("/ig", "keep.txt"), ("/ig", ".pollinatorignore")}
    # a remote file matching the rules is not downloaded either
    other_dir = tmp_path / "other"
    write(other_dir / "remote.log", "r")
    CFS(fake, s3).sync(other_dir, "/ig", True)  # no ignore file there: uploads remote.log
    plan = cfs.plan(src, "/ig", True)
    assert plan.is_empty


def _hostile(fake, label, name, data_obj="deadbeef"):
    fake.files.append(File(fileid=f"id-{len(fake.files)}", colonyname="dev", label=label, name=name, size=1,
                           sequencenr=1000 + len(fake.files), checksum=sha(b"x"), checksumalg="SHA256",
                           ref=Reference(protocol="s3", s3object=S3Object(object=data_obj))))


@pytest.mark.parametrize("label,name", [("/h", "../evil"), ("/h/..", "evil"), ("/h/../../x", "evil"),
                                        ("/h", "C:evil"), ("/h", "a\\b"), ("/h", "/abs"), ("/h", "n\x00ul"),
                                        ("/h/sub\\..", "x")])
def test_hostile_records_refused_nothing_written(cfs, fake, tmp_path, label, name):
    write(tmp_path / "seed" / "good.txt", "good")
    cfs.sync(tmp_path / "seed", "/h", True)
    _hostile(fake, label, name)
    target = tmp_path / "target"
    for op in (lambda: cfs.sync(target, "/h", False), lambda: cfs.pull("/h", target)):
        with pytest.raises(UnsafePathError) as err:
            op()
        assert f"label={label!r} name={name!r}" in str(err.value)
        assert not target.exists() or list(target.rglob("*")) == []
    assert not (tmp_path / "evil").exists()


def test_hostile_snapshot_refused(cfs, fake, tmp_path):
    write(tmp_path / "seed" / "good.txt", "good")
    cfs.sync(tmp_path / "seed", "/hs", True)
    _hostile(fake, "/hs", "../../escape")
    snap = cfs.create_snapshot("/hs", "s1")
    with pytest.raises(UnsafePathError, match="escape"):
        cfs.download_snapshot(snap.snapshotid, tmp_path / "t")
    assert not (tmp_path / "t").exists() or list((tmp_path / "t").rglob("*")) == []


def test_symlinks_out_of_dir_are_not_followed(cfs, fake, tmp_path):
    outside = tmp_path / "outside"
    write(outside / "secret.txt", "secret")
    src = tmp_path / "src"
    write(src / "ok.txt", "ok")
    (src / "link_file").symlink_to(outside / "secret.txt")
    (src / "link_dir").symlink_to(outside)
    (src / "inner_link").symlink_to(src / "ok.txt")
    cfs.sync(src, "/sl", True)
    assert {f.name for f in fake.files} == {"ok.txt", "inner_link"}
    # a download into a sub-directory that is a symlink pointing out is refused
    write(tmp_path / "seed" / "linked" / "f.txt", "f")
    CFS(fake, cfs.s3_settings).sync(tmp_path / "seed", "/sl2", True)
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "linked").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        cfs.pull("/sl2", dst)
    assert not (outside / "f.txt").exists()


def test_snapshot_roundtrip(cfs, fake, tmp_path):
    files = make_tree(tmp_path / "src")
    cfs.sync(tmp_path / "src", "/snap", True)
    snap = cfs.create_snapshot("snap")
    assert len(snap.fileids) == 4
    write(tmp_path / "src" / "a.txt", "changed later")
    cfs.sync(tmp_path / "src", "/snap", True)
    cfs.download_snapshot(snap.snapshotid, tmp_path / "out")
    assert tree(tmp_path / "out") == files  # the frozen revision, not the later one
    cfs.remove_snapshot(snap.snapshotid)
    assert snap.snapshotid not in fake.snapshots


def test_large_file_multipart_and_progress(fake, s3, tmp_path):
    events = []
    cfs = CFS(fake, s3, workers=4, progress=events.append)
    cfs.store.multipart_threshold = cfs.store.multipart_chunksize = 5 * MiB
    cfs.store.transfer_config.multipart_threshold = 5 * MiB
    cfs.store.transfer_config.multipart_chunksize = 5 * MiB
    data = os.urandom(12 * MiB + 3)
    write(tmp_path / "src" / "big.bin", data)
    write(tmp_path / "src" / "small.txt", "s")
    cfs.sync(tmp_path / "src", "/big", True)
    assert events[-1].finished and events[-1].files_done == 2 and events[-1].bytes_done == len(data) + 1
    rec = next(f for f in fake.files if f.name == "big.bin")
    assert rec.checksum == hashlib.sha256(data).hexdigest()
    head = cfs.store.client.head_object(Bucket=s3.bucket, Key=rec.ref.s3object.object, ChecksumMode="ENABLED")
    assert head["ETag"].endswith('-3"') and head["ContentLength"] == len(data)  # three parts of 5 MiB
    assert head.get("ChecksumCRC32")  # every part carried a CRC32 the server checked
    other = CFS(fake, s3)
    other.store.multipart_threshold = 5 * MiB
    other.pull("/big", tmp_path / "copy")
    assert (tmp_path / "copy" / "big.bin").read_bytes() == data


def test_corrupt_object_is_not_written(cfs, fake, s3, tmp_path):
    write(tmp_path / "src" / "f.txt", "the real bytes")
    cfs.sync(tmp_path / "src", "/bad", True)
    rec = fake.files[-1]
    cfs.store.put_small(rec.ref.s3object.object, b"tampered bytes")
    with pytest.raises(SyncError, match="/bad/f.txt"):
        cfs.pull("/bad", tmp_path / "dst")
    assert list((tmp_path / "dst").iterdir()) == []  # no partial file (and no marker)


def test_missing_object_names_the_file(cfs, fake, tmp_path):
    write(tmp_path / "src" / "f.txt", "bytes")
    cfs.sync(tmp_path / "src", "/gone", True)
    cfs.store.remove(fake.files[-1].ref.s3object.object)
    with pytest.raises(SyncError, match="/gone/f.txt"):
        cfs.pull("/gone", tmp_path / "dst")
    assert not (tmp_path / "dst" / "f.txt").exists()


def test_add_file_retried_on_server_errors(cfs, fake, tmp_path):
    write(tmp_path / "src" / "f.txt", "x")
    fake.fail_next["addfilemsg"] = 2
    cfs.sync(tmp_path / "src", "/r", True)
    assert fake.calls.count("addfilemsg") == 3 and len(fake.files) == 1


def test_go_cli_record_downloads_with_our_credentials(cfs, fake, s3, tmp_path):
    obj = "f" * 64
    cfs.store.ensure_bucket()
    cfs.store.put_small(obj, b"uploaded by colonies fs sync")
    fake.files.append(File(fileid="go1", colonyname="dev", label="/go", name="big_200MB.bin", size=28, sequencenr=1,
                           checksum=sha(b"uploaded by colonies fs sync"), checksumalg="SHA256",
                           ref=Reference(protocol="s3", s3object=S3Object(
                               server=s3.endpoint, port=-1, accesskey="WRONG-KEY", secretkey="WRONG-SECRET",
                               region="us-east-1", object=obj, bucket=s3.bucket))))
    cfs.pull("/go", tmp_path / "dst")
    assert (tmp_path / "dst" / "big_200MB.bin").read_bytes() == b"uploaded by colonies fs sync"


def test_repr_has_no_secrets(cfs, s3):
    text = repr(cfs) + repr(cfs.store)
    assert s3.secret_key.get_secret_value() not in text and s3.access_key.get_secret_value() not in text


def test_new_files_are_hashed_while_uploading(fake, s3, tmp_path):
    cfs = CFS(fake, s3, workers=2)
    cfs.store.multipart_threshold = 5 * MiB
    cfs.store.transfer_config.multipart_threshold = 5 * MiB
    cfs.store.transfer_config.multipart_chunksize = 5 * MiB
    big, small = os.urandom(11 * MiB), b"small"
    write(tmp_path / "src" / "big.bin", big)
    write(tmp_path / "src" / "small.txt", small)
    plan = cfs.plan(tmp_path / "src", "/defer", True)
    assert {f.checksum for lp in plan.labels for f in lp.upload} == {""}  # nothing read during planning
    assert cfs._cache(tmp_path / "src").hashed == 0
    cfs.apply(plan)
    assert {f.name: f.checksum for f in fake.files} == {"big.bin": sha(big), "small.txt": sha(small)}
