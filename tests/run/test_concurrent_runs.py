"""Concurrent runs of one job name never mix (issue 14), through the real local colony.

A sweep submits many runs of one job name at the same time from one process;
each must execute its own arguments and data and return its own result.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pollinator.run import remote_function_job


def square(x: int) -> dict:
    return {"x": x, "sq": x * x}


@pytest.mark.parametrize("round_", range(2))
def test_remote_function_sweep_returns_each_inputs_own_value(settings, round_):
    name = "sweep-" + os.urandom(3).hex()

    def one(x: int):
        with remote_function_job(settings, square, (x,), name=name, executor_names=["dev-k8s", "dev-hpc"],
                                 walltime=120) as job:
            return job.run().return_value

    with ThreadPoolExecutor(max_workers=30) as pool:
        values = list(pool.map(one, range(30)))
    wrong = [(x, v) for x, v in enumerate(values) if v != {"x": x, "sq": x * x}]
    assert not wrong, f"{len(wrong)} of 30 runs returned another input's value: {wrong[:5]}"


def _inline(settings, name, tmp_path, **kw):
    from pollinator.run import Job

    fields = dict(name=name, executor_names=["dev-k8s", "dev-hpc"], walltime=120)
    fields.update(kw)
    return Job.inline(settings, **fields)


def test_run_files_are_mounted_for_the_job_only(settings, tmp_path):
    """The run-files seam: bytes given as job.run_files reach $POLLINATOR_RUN_FILES of that run alone."""
    name = "runfiles-" + os.urandom(3).hex()
    job = _inline(settings, name, tmp_path, result_dir=tmp_path / "out",
                  cmd="sh -c 'cat $POLLINATOR_RUN_FILES/greeting.txt > $POLLINATOR_RESULT_DIR/seen.txt'")
    job.run_files["greeting.txt"] = b"hello from this run\n"
    with job:
        result = job.run()
        spec = job.process.spec
    assert (tmp_path / "out" / "seen.txt").read_bytes() == b"hello from this run\n"
    assert result.run_id and spec.env["POLLINATOR_RUN_ID"] == result.run_id
    files_mount = [m for m in spec.fs.snapshots if m.label.endswith("/files")]
    assert [m.label for m in files_mount] == [f"/pollinator/{name}/runs/{result.run_id}/files"]
    assert result.result_label == f"/pollinator/{name}/runs/{result.run_id}/result"


def test_bad_run_file_name_submits_nothing(settings, tmp_path, client):
    from pollinator.errors import ProjectError

    job = _inline(settings, "runfiles-bad", tmp_path, cmd="true")
    job.run_files["../escape"] = b"x"
    with pytest.raises(ProjectError, match="run_files"):
        job.submit()
    assert job.process_id is None


def test_concurrent_runs_with_different_data_see_their_own_data(settings, tmp_path):
    """Same job name, same data file name, different bytes, submitted at once: each reads its own."""
    name = "data-" + os.urandom(3).hex()
    n = 8

    def one(i: int) -> tuple[str, Any]:
        data = tmp_path / f"data{i}"
        data.mkdir()
        (data / "value.txt").write_text(f"value {i}\n")
        with _inline(settings, name, tmp_path, data_dir=data, result_dir=tmp_path / f"out{i}",
                     cmd="sh -c 'sleep 0.2; cp $PROJECT_DIR/data/value.txt $POLLINATOR_RESULT_DIR/seen.txt'") as job:
            result = job.run()
        return (tmp_path / f"out{i}" / "seen.txt").read_text(), result

    with ThreadPoolExecutor(max_workers=n) as pool:
        seen, results = zip(*pool.map(one, range(n)))
    assert list(seen) == [f"value {i}\n" for i in range(n)]
    # each run's pinned result snapshot (issue 22) holds exactly its own file
    assert len({r.result_snapshot_id for r in results}) == n
    assert [[(f.path, f.checksum) for f in r.result_snapshot_files] for r in results] == [
        [("seen.txt", hashlib.sha256(f"value {i}\n".encode()).hexdigest())] for i in range(n)]


def test_latest_label_is_published_only_after_success(settings, tmp_path, client):
    from pollinator.cfs import CFS
    from pollinator.errors import JobFailed

    name = "latest-" + os.urandom(3).hex()
    latest = f"/pollinator/{name}/result"
    write = "echo {v} > $POLLINATOR_RESULT_DIR/out.txt; mkdir -p $POLLINATOR_RESULT_DIR/.pollinator; " \
            "echo internal > $POLLINATOR_RESULT_DIR/.pollinator/exit.json"
    with _inline(settings, name, tmp_path, cmd=f"sh -c '{write.format(v='good')}'",
                 result_dir=tmp_path / "a") as job:
        ok = job.run()
    assert ok.result_files == ["out.txt"] and ok.latest_label == latest
    assert not (tmp_path / "a" / ".pollinator").exists()
    cfs = CFS(client, settings.require_s3())
    assert [(f.label, f.name) for f in cfs.list(latest)] == [(latest, "out.txt")]
    with _inline(settings, name, tmp_path, cmd=f"sh -c '{write.format(v='bad')}; exit 3'", max_retries=1,
                 result_dir=tmp_path / "b") as job:
        with pytest.raises(JobFailed) as info:
            job.run()
    assert info.value.result.result_label != ok.result_label
    pulled = tmp_path / "latest"
    cfs.pull(latest, pulled)
    assert (pulled / "out.txt").read_text() == "good\n"


def test_dry_run_spec_lays_everything_out_per_run(tmp_path):
    """No colony needed: every mount of the spec is under the run's own dir, PROJECT_DIR included."""
    from pydantic import SecretStr

    from pollinator.config import Settings
    from pollinator.run import Job

    src, data = tmp_path / "src", tmp_path / "data"
    src.mkdir(), data.mkdir()
    (src / "main.py").write_text("print(1)\n")
    (data / "x.csv").write_text("1\n")
    settings = Settings(colony_name="dev", prvkey=SecretStr("1" * 64))
    job = Job.inline(settings, name="p", cmd="python3", source="main.py", src_dir=src, data_dir=data,
                     inputs={"prep": "/pollinator/prep/result"})
    job.run_files["launch.sh"] = b"#!/bin/sh\n"
    spec = job.spec()
    base = "/pollinator/p/runs/<run_id>"
    assert spec.env["PROJECT_DIR"] == "/cfs" + base
    assert spec.env["POLLINATOR_RESULT_DIR"] == f"/cfs{base}/result"
    assert spec.env["POLLINATOR_RUN_FILES"] == f"/cfs{base}/files"
    assert spec.env["POLLINATOR_LATEST_LABEL"] == "/pollinator/p/result"
    # the command runs through the run's launcher (issue 15): its args are in launch.sh, built at submit
    assert spec.kwargs["cmd"] == f"sh /cfs{base}/files/launch.sh" and spec.kwargs["args"] == []
    assert [(m.label, m.dir) for m in spec.fs.snapshots] == [
        (f"{base}/src", f"{base}/<snapshot>/src"), (f"{base}/data", f"{base}/data"),
        (f"{base}/files", f"{base}/files"), ("/pollinator/prep/result", f"{base}/inputs/prep")]
    assert [(m.label, m.dir) for m in spec.fs.dirs] == [(f"{base}/result", f"{base}/result")]


PROJECT_YAML = """projectname: {name}
conditions:
  executorNames:
  - dev-k8s
  - dev-hpc
  nodes: 1
  processesPerNode: 1
  cpu: 100m
  mem: 100Mi
  walltime: 120
  gpu:
    count: 0
environment:
  docker: python:3.12
  rebuildImage: false
  cmd: python3
  source: main.py
"""

MAIN = """import os, time
projdir = os.environ["PROJECT_DIR"]
value = open(os.path.join(projdir, "data", "value.txt")).read()
time.sleep(0.5)
os.makedirs(os.path.join(projdir, "result"), exist_ok=True)
open(os.path.join(projdir, "result", "result.txt"), "w").write("saw " + value)
"""


def test_two_concurrent_cli_runs_of_one_project_keep_their_data_and_results(tmp_path, colony_env):
    """Two checkouts of one project (same projectname), different data, `pollinator run --follow` at once."""
    import subprocess
    import sys

    name = "cli-pair-" + os.urandom(3).hex()
    dirs = []
    for which in ("left", "right"):
        proj = tmp_path / which
        for sub in ("src", "data", "result"):
            (proj / "cfs" / sub).mkdir(parents=True)
        (proj / "project.yaml").write_text(PROJECT_YAML.format(name=name))
        (proj / "cfs" / "src" / "main.py").write_text(MAIN)
        (proj / "cfs" / "data" / "value.txt").write_text(f"{which} data\n")
        dirs.append(proj)
    procs = [subprocess.Popen([sys.executable, "-m", "pollinator.cli", "run", "--follow"], cwd=proj,
                              env={**os.environ, **colony_env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for proj in dirs]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for proj, proc, out in zip(dirs, procs, outs):
        assert proc.returncode == 0, out
        which = proj.name
        assert (proj / "cfs" / "result" / "result.txt").read_text() == f"saw {which} data\n", out


def test_jobs_of_one_process_share_one_client_per_settings():
    """No colony needed: leases are counted, the pair is closed with its last user, then built anew."""
    from pydantic import SecretStr

    from pollinator.config import Settings
    from pollinator.run import Job, shared

    settings = Settings(colony_name="dev", prvkey=SecretStr("2" * 64), port=1)
    jobs = [Job.inline(settings, name="share", cmd="true") for _ in range(3)]
    clients = {id(job.client) for job in jobs}
    assert len(clients) == 1 and shared.users(settings) == 3
    other = Settings(colony_name="other", prvkey=SecretStr("2" * 64), port=1)
    with Job.inline(other, name="share", cmd="true") as job:
        assert id(job.client) not in clients  # other settings, other client
    first = jobs[0].client
    for job in jobs:
        job.close()
        job.close()  # closing twice gives back one lease only
    assert shared.users(settings) == 0
    with Job.inline(settings, name="share", cmd="true") as job:
        assert job.client is not first  # the last user closed it; a new one is built
