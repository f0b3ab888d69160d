"""Pinned results against the local colony: a run's result files frozen as a snapshot, mounted exactly later."""

from __future__ import annotations

import hashlib
import os

import pytest

from pollinator.errors import ProjectError
from pollinator.pins import parse_input
from pollinator.run import Job, ProcessHandle

WRITE = ("import os\n"
         "d = os.environ['POLLINATOR_RESULT_DIR']\n"
         "os.makedirs(os.path.join(d, 'sub'), exist_ok=True)\n"
         "open(os.path.join(d, 'model.bin'), 'wb').write(os.environ['CONTENT'].encode() * 1000)\n"
         "open(os.path.join(d, 'sub', 'note.txt'), 'w').write(os.environ['CONTENT'])\n")
READ = ("import os, shutil\n"
        "src = os.environ['POLLINATOR_INPUT_PREP']\n"
        "shutil.copy(os.path.join(src, 'model.bin'), os.path.join(os.environ['POLLINATOR_RESULT_DIR'], 'seen.bin'))\n")


def _job(settings, tmp_path, name, script, **kw):
    src = tmp_path / name / "src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "job.py").write_text(script)
    fields = dict(name=name, image="python:3.12", executor_names=["dev-k8s"], cmd="python3", source="job.py",
                  src_dir=src, walltime=120)
    fields.update(kw)
    return Job.inline(settings, **fields)


def test_a_pinned_result_mounts_the_exact_files_after_the_label_is_overwritten(settings, tmp_path):
    prep, train = "pin-prep-" + os.urandom(3).hex(), "pin-train-" + os.urandom(3).hex()
    label = f"/pollinator/{prep}/result"
    with _job(settings, tmp_path, prep, WRITE, env={"CONTENT": "first"}, result_label=label) as job:
        first = job.run(timeout=300)
    assert first.result_snapshot_id
    expected = b"first" * 1000
    assert [(f.path, f.size) for f in first.result_snapshot_files] == [("model.bin", len(expected)),
                                                                      ("sub/note.txt", 5)]
    model = first.result_snapshot_files[0]
    assert model.checksum == hashlib.sha256(expected).hexdigest()
    assert parse_input(first.pinned_input()) == (first.result_label, first.result_snapshot_id)
    assert first.to_xcom()["result_snapshot_id"] == first.result_snapshot_id

    # a later run overwrites the label
    with _job(settings, tmp_path, prep, WRITE, env={"CONTENT": "second"}, result_label=label) as job:
        second = job.run(timeout=300)
    assert second.result_snapshot_id != first.result_snapshot_id

    out = tmp_path / "pinned-out"
    with _job(settings, tmp_path, train, READ, inputs={"prep": first.pinned_input()}, result_dir=out) as job:
        spec = job.spec()
        mount = next(m for m in spec.fs.snapshots if m.dir.endswith("/inputs/prep"))
        assert mount.snapshotid == first.result_snapshot_id and mount.keepsnapshot  # shown as sent, kept
        job.run(timeout=300)
    assert (out / "seen.bin").read_bytes() == expected

    latest = tmp_path / "latest-out"
    with _job(settings, tmp_path, train, READ, inputs={"prep": label}, result_dir=latest) as job:
        job.run(timeout=300)
    assert (latest / "seen.bin").read_bytes() == b"second" * 1000

    # the pinned snapshot outlives the run that mounted it: mount it again
    again = tmp_path / "again-out"
    with _job(settings, tmp_path, train, READ, inputs={"prep": first.pinned_input()}, result_dir=again) as job:
        job.run(timeout=300)
    assert (again / "seen.bin").read_bytes() == expected


def test_finishing_a_process_again_reuses_its_result_snapshot(settings, tmp_path):
    name = "pin-again-" + os.urandom(3).hex()
    with _job(settings, tmp_path, name, WRITE, env={"CONTENT": "x"}) as job:
        first = job.run(timeout=300)
    with ProcessHandle.attach(settings, first.process_id) as handle:
        again = handle.finish()
    assert again.result_snapshot_id == first.result_snapshot_id
    assert again.result_snapshot_files == first.result_snapshot_files


def test_a_missing_or_foreign_snapshot_is_refused_before_submit(settings, tmp_path, client):
    name = "pin-bad-" + os.urandom(3).hex()
    with _job(settings, tmp_path, name, READ, inputs={"prep": "/pollinator/nope/result@" + "0" * 64}) as job:
        with pytest.raises(ProjectError, match="input 'prep': snapshot 0+ does not exist"):
            job.submit()
        assert job.handle is None
    with _job(settings, tmp_path, name + "w", WRITE, env={"CONTENT": "y"}) as job:
        made = job.run(timeout=300)
    foreign = "/pollinator/other/result@" + made.result_snapshot_id
    with _job(settings, tmp_path, name, READ, inputs={"prep": foreign}) as job:
        with pytest.raises(ProjectError, match=f"is of label {made.result_label}"):
            job.submit()
        assert job.handle is None
