"""Hostile server data: tampered file records and log lines with terminal escapes.

Records are added through the real local server with the user's key (as a
compromised or buggy peer could), then pulled with the real CFS over HTTP.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import rel_tally
from rel_helpers import cli, tree_digest
from pollinator.cfs import CFS
from pollinator.cfs.paths import TMP_PREFIX
from pollinator.cfs.s3 import S3Store
from pollinator.colonies import crypto
from pollinator.colonies.models import File, Reference, S3Object
from pollinator.errors import SyncError, UnsafePathError
from pollinator.run import Job


def _put(settings, data: bytes) -> str:
    key = crypto.random_id()
    S3Store(settings.s3).put_small(key, data)
    return key


def _record(settings, label: str, name: str, *, key: str, size: int, checksum: str) -> File:
    s3 = settings.s3
    obj = S3Object(server=s3.host, port=s3.port, tls=False, accesskey="", secretkey="", region=s3.region,
                   encryptionkey="", encryptionalg="", object=key, bucket=s3.bucket)
    return File(colonyname=settings.colony_name, label=label, name=name, size=size, sequencenr=1,
                checksum=checksum, checksumalg="SHA256", ref=Reference(protocol="s3", s3object=obj))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def world(tmp_path):
    """target/ to pull into, and outside/ next to it that nothing may touch."""
    target, outside = tmp_path / "target", tmp_path / "outside"
    target.mkdir()
    outside.mkdir()
    (outside / "victim.txt").write_text("precious")
    return target, outside


PATH_ESCAPES = [
    ("name-dotdot", "", "../x.txt"),
    ("name-absolute", "", "/tmp/rel-hostile-abs.txt"),
    ("name-backslash", "", "..\\..\\x.txt"),
    ("label-dotdot", "/../../outside", "x.txt"),
    ("label-dot-end", "/..", "x.txt"),
    ("label-empty-component", "//x", "y.txt"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case,suffix,name", PATH_ESCAPES, ids=[c[0] for c in PATH_ESCAPES])
def test_pull_refuses_records_that_escape_the_target(settings, client, world, tmp_path, case, suffix, name):
    target, outside = world
    base = f"/rel-hostile/{case}-{os.urandom(3).hex()}"
    data = b"evil bytes"
    key = _put(settings, data)
    try:
        client.add_file(_record(settings, base + suffix, name, key=key, size=len(data), checksum=_sha(data)))
    except Exception as exc:  # a server that refuses it outright is fine too
        rel_tally.add("faults_injected")
        rel_tally.add("faults_survived")
        pytest.skip(f"the server refused the record itself: {exc}")
    good = b"good"
    client.add_file(_record(settings, base, "good.txt", key=_put(settings, good), size=4, checksum=_sha(good)))
    before = tree_digest(tmp_path)
    with pytest.raises(UnsafePathError):
        CFS(client, settings.s3).pull(base, target)
    rel_tally.add("faults_injected")
    assert tree_digest(tmp_path) == before, "pull wrote something"
    assert not Path("/tmp/rel-hostile-abs.txt").exists()
    rel_tally.add("faults_survived")


@pytest.mark.timeout(60)
def test_pull_does_not_write_through_symlinks(settings, client, world, tmp_path):
    target, outside = world
    base = f"/rel-hostile/symlink-{os.urandom(3).hex()}"
    data = b"server bytes"
    key = _put(settings, data)
    client.add_file(_record(settings, base, "victim.txt", key=key, size=len(data), checksum=_sha(data)))
    (target / "victim.txt").symlink_to(outside / "victim.txt")
    CFS(client, settings.s3).pull(base, target)
    assert (outside / "victim.txt").read_text() == "precious"
    assert not (target / "victim.txt").is_symlink() and (target / "victim.txt").read_bytes() == data

    sub_label = f"/rel-hostile/symdir-{os.urandom(3).hex()}"
    client.add_file(_record(settings, sub_label + "/sub", "planted.txt", key=key, size=len(data),
                            checksum=_sha(data)))
    (target / "sub").symlink_to(outside, target_is_directory=True)
    before = tree_digest(outside)
    with pytest.raises(UnsafePathError):
        CFS(client, settings.s3).pull(sub_label, target)
    assert tree_digest(outside) == before
    rel_tally.add("faults_injected", 2)
    rel_tally.add("faults_survived", 2)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("size_kind", ["wrong-checksum", "huge-size-wrong-checksum", "short-size"])
def test_checksum_or_size_lies_are_rejected_and_leave_nothing(settings, client, world, tmp_path, size_kind):
    target, _ = world
    base = f"/rel-hostile/{size_kind}-{os.urandom(3).hex()}"
    data = os.urandom(5000)
    key = _put(settings, data)
    size, checksum = len(data), _sha(data)
    if size_kind == "wrong-checksum":
        checksum = _sha(b"something else")
    elif size_kind == "huge-size-wrong-checksum":
        size = 40 * 1024 * 1024 * 1024  # 40 GiB claimed for 5 kB of bytes
        checksum = _sha(b"x" * 10)
    else:
        size = 100
    client.add_file(_record(settings, base, "data.bin", key=key, size=size, checksum=checksum))
    (target / "data.bin").write_bytes(b"local version")
    with pytest.raises(SyncError) as info:
        CFS(client, settings.s3).pull(base, target)
    assert "data.bin" in str(info.value)
    assert (target / "data.bin").read_bytes() == b"local version"
    assert not [p for p in target.iterdir() if p.name.startswith(TMP_PREFIX)]
    rel_tally.add("faults_injected")
    rel_tally.add("faults_survived")
    rel_tally.add("files_checked")


ESCAPES = r"\033]0;pwned\007\033[2J\033[31mred\033[0m\302\233\342\200\256bidi"
DANGEROUS = ("\x1b", "\x07", "\x9b", "\u202e")


def _assert_neutral(text: str) -> None:
    bad = [c for c in DANGEROUS if c in text]
    assert not bad, f"raw control characters reached the terminal: {bad!r}"


@pytest.mark.timeout(120)
def test_log_escape_sequences_are_neutralised_by_logs_and_run_follow(settings, colony_env, tmp_path):
    with Job.inline(settings, name="rel-escapes", executor_names=["dev-k8s"], walltime=60,
                    cmd=f"printf '{ESCAPES}\\nplain line\\n'") as job:
        result = job.run()
    out = cli(["logs", result.process_id], tmp_path, colony_env)
    assert out.returncode == 0, out.stderr
    assert "plain line" in out.stdout and "\\x1b" in out.stdout
    _assert_neutral(out.stdout + out.stderr)

    project = tmp_path / "proj"
    project.mkdir()
    assert cli(["new", "-e", "dev-k8s"], project, colony_env).returncode == 0
    text = (project / "project.yaml").read_text().replace("pip3 install numpy", "")
    (project / "project.yaml").write_text(text)
    (project / "cfs" / "src" / "main.py").write_text(
        "import sys\nsys.stdout.write('\\x1b]0;pwned\\x07\\x1b[2Jbefore\\x9b\\u202eafter\\n')\n"
        "raise SystemExit('\\x1b[31mfailing with escapes')\n")
    run = cli(["run", "--follow"], project, colony_env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "before" in run.stdout and "failing with escapes" in run.stderr
    _assert_neutral(run.stdout + run.stderr)
    rel_tally.add("faults_injected", 2)
    rel_tally.add("faults_survived", 2)


@pytest.mark.timeout(60)
def test_huge_claimed_size_with_true_checksum_gets_exactly_the_checksummed_bytes(settings, client, world):
    """The SHA-256 is the authority: a size lie cannot make us allocate or keep anything else."""
    target, _ = world
    base = f"/rel-hostile/huge-true-{os.urandom(3).hex()}"
    data = os.urandom(5000)
    client.add_file(_record(settings, base, "data.bin", key=_put(settings, data), size=40 * 1024 ** 3,
                            checksum=_sha(data)))
    CFS(client, settings.s3).pull(base, target)
    assert (target / "data.bin").read_bytes() == data
    assert not [p for p in target.iterdir() if p.name.startswith(TMP_PREFIX)]
    rel_tally.add("faults_injected")
    rel_tally.add("faults_survived")
    rel_tally.add("files_checked")
