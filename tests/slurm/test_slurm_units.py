"""The Slurm backend without Slurm: translation rules, script text, state mapping on a scripted CLI."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Optional

import pytest
from typer.testing import CliRunner

from pollinator.colonies.models import GPU, Conditions, FunctionSpec, Process
from pollinator.executor.backend import AbortSignal, LaunchSpec
from pollinator.executor.container_engine import image_uri, sif_name
from pollinator.executor.slurm import JobTag, SlurmBackend
from pollinator.executor.slurm_cli import JobInfo, QueuedJob, SlurmError
from pollinator.executor.slurm_script import (
    BatchRequest, Container, LabelDecoder, cpus_per_task, gres, layout, mem_mib, render_batch_script,
    render_rank_script, slurm_time,
)


@pytest.mark.parametrize("cpu,expected", [("", 0), ("500m", 1), ("1000m", 1), ("1500m", 2), ("2", 2), ("2.5", 3)])
def test_cpus_per_task_rounds_up(cpu, expected):
    assert cpus_per_task(cpu) == expected


@pytest.mark.parametrize("mem,expected", [("", 0), ("64Mi", 64), ("1Gi", 1024), ("1G", 954), ("1048576", 1),
                                          ("1500k", 2), ("0.5Gi", 512)])
def test_mem_in_mib_rounds_up(mem, expected):
    assert mem_mib(mem) == expected


@pytest.mark.parametrize("seconds,expected", [(1, "00:01:00"), (59, "00:01:00"), (60, "00:01:00"),
                                              (61, "00:02:00"), (3600, "01:00:00"), (90000, "1-01:00:00")])
def test_slurm_time_is_whole_minutes(seconds, expected):
    assert slurm_time(seconds) == expected


def test_gres_and_layout():
    assert gres(0, "a100") == ""
    assert gres(2, "a100") == "gpu:a100:2"
    assert gres(1, "") == "gpu:1"
    assert gres(1, "weird name;rm") == "gpu:weirdnamerm:1"
    assert layout(1, 0) == (1, 1)
    assert layout(4, 2) == (2, 2)
    assert layout(1, 2) == (1, 1)  # the init-cmd runs once even when the job has 2 per node
    assert layout(3, 0) == (1, 3)


def test_batch_script_directives(tmp_path):
    req = BatchRequest(job_name="pid123", job_dir=tmp_path / "job", workdir=tmp_path / "work", nodes=2,
                       tasks_per_node=4, cpus_per_task=2, mem_mib=1024, gres="gpu:a100:1", time="00:10:00",
                       partition="gpu", account="proj42", extra_directives=("--qos=short",))
    script = render_batch_script(req)
    directives = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert directives == [
        "#SBATCH --job-name=pid123", "#SBATCH --partition=gpu", "#SBATCH --account=proj42", "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4", "#SBATCH --cpus-per-task=2", "#SBATCH --mem=1024M",
        "#SBATCH --gres=gpu:a100:1", "#SBATCH --time=00:10:00", f"#SBATCH --output={tmp_path}/job/stdout.log",
        f"#SBATCH --error={tmp_path}/job/stderr.log", f"#SBATCH --chdir={tmp_path}/work", "#SBATCH --no-requeue",
        "#SBATCH --qos=short"]
    assert f"srun --label --kill-on-bad-exit=1 /bin/sh {tmp_path}/job/rank.sh" in script
    rank = render_rank_script(req)
    assert 'export POLLINATOR_RANK="${SLURM_PROCID:-0}"' in rank
    assert f"/bin/sh {tmp_path}/job/command.sh" in rank


def test_rank_script_with_a_container(tmp_path):
    req = BatchRequest(job_name="p", job_dir=tmp_path, workdir=Path("/w"),
                       container=Container(engine="/usr/bin/apptainer", image="/img/python_3.12.sif",
                                           binds=("/fs:/fs", "/fs:/cfs"), gpus=True))
    rank = render_rank_script(req)
    assert (f"/usr/bin/apptainer exec --nv --bind /fs:/fs --bind /fs:/cfs --pwd /w /img/python_3.12.sif "
            f"/bin/sh {tmp_path}/command.sh") in rank
    assert image_uri("python:3.12") == "docker://python:3.12"
    assert image_uri("oras://ghcr.io/x/y:1") == "oras://ghcr.io/x/y:1"
    assert sif_name("docker://ghcr.io/org/img:1.0") == "ghcr.io_org_img_1.0.sif"


def test_label_decoder():
    many = LabelDecoder(2)
    assert many("1: hello") == "[rank 1] hello"
    assert many(" 0: x: y") == "[rank 0] x: y"
    assert many("slurmstepd: error: *** JOB 3 ***") == "slurmstepd: error: *** JOB 3 ***"
    assert LabelDecoder(1)("0: only rank") == "only rank"


def test_exit_status():
    assert JobInfo("1", "FAILED", exit_code="3:0").exit_status() == 3
    assert JobInfo("1", "TIMEOUT", exit_code="0:15").exit_status() == -15
    assert JobInfo("1", "FAILED").exit_status() is None


# -- the backend on a scripted Slurm ------------------------------------------------------------------
class FakeCli:
    """Plays a job's life: each job_info call returns the next state; writes the job's output files."""

    def __init__(self, states: list[JobInfo], stdout: str = "", rank_codes: Optional[dict[int, int]] = None,
                 submit_error: str = ""):
        self.states = states
        self.stdout, self.rank_codes, self.submit_error = stdout, rank_codes or {}, submit_error
        self.cancelled: list[str] = []
        self.env: dict[str, str] = {}
        self.script = ""
        self.queue: list[QueuedJob] = []
        """Other jobs in squeue (earlier attempts', other executors'); a scancel takes them out."""

    def submit(self, script: Path, *, env) -> str:
        if self.submit_error:
            raise SlurmError(self.submit_error)
        self.env, self.script = dict(env), script.read_text()
        self.rank_script = (script.parent / "rank.sh").read_text()
        (script.parent / "stdout.log").write_text(self.stdout)
        for rank, code in self.rank_codes.items():
            (script.parent / f"exit.{rank}").write_text(f"{code}\n")
        return "12"

    def job_info(self, job_id: str) -> Optional[JobInfo]:
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)
        if any(job.job_id == job_id for job in self.queue):
            self.queue = [job for job in self.queue if job.job_id != job_id]
            return
        self.states = [JobInfo(job_id, "CANCELLED", exit_code="0:15")]

    def queued(self, *, name: str = "") -> list[QueuedJob]:
        return [job for job in self.queue if not name or job.name == name]


def _process(**conditions) -> Process:
    spec = FunctionSpec(funcname="execute", kwargs={"cmd": "echo", "args": [], "docker-image": "python:3.12"},
                        conditions=Conditions(**conditions))
    return Process(processid="p" * 64, spec=spec)


def _run(tmp_path, cli, ranks=1, abort=None, deadline=None, **env):
    backend = SlurmBackend(tmp_path / "fs", cli=cli, detect_engine=False, tick=0.01, poll=0.01)  # type: ignore[arg-type]
    lines: list[str] = []
    launch = LaunchSpec(command="echo hi", cwd=tmp_path, env={"PATH": "/usr/bin", **env}, ranks=ranks,
                        ranks_per_node=ranks, deadline=deadline,
                        process=_process(cpu="1500m", mem="1Gi", gpu=GPU(name="a100", count=1)))
    return backend.run(launch, lines.append, abort or AbortSignal()), lines


def test_completed_job_streams_ranks_and_succeeds(tmp_path):
    cli = FakeCli([JobInfo("12", "PENDING", reason="Priority"), JobInfo("12", "RUNNING", nodes="n1"),
                   JobInfo("12", "COMPLETED", exit_code="0:0")], stdout="0: a\n1: b\n", rank_codes={0: 0, 1: 0})
    result, lines = _run(tmp_path, cli, ranks=2, SLURM_JOB_ID="99", SLURM_CONF="/etc/x.conf",
                         POLLINATOR_OUTPUT_FILE=str(tmp_path / "out.json"))
    assert result.ok and result.exit_codes == [0, 0]
    assert "[rank 0] a" in lines and "[rank 1] b" in lines
    assert "[executor] Slurm job 12 RUNNING on n1" in lines
    assert "--cpus-per-task=2" in cli.script and "--mem=1024M" in cli.script and "--gres=gpu:a100:1" in cli.script
    assert "SLURM_JOB_ID" not in cli.env and cli.env["SLURM_CONF"] == "/etc/x.conf"
    assert cli.env["POLLINATOR_OUTPUT_FILE"].endswith("/output.json")  # on the shared fs, copied back after
    assert any("no container engine" in line for line in lines)
    assert not list((tmp_path / "fs" / ".slurm").iterdir())  # a successful job leaves no files behind


def test_timeout_names_the_job_and_its_limit(tmp_path):
    cli = FakeCli([JobInfo("12", "RUNNING"), JobInfo("12", "TIMEOUT", exit_code="0:15", time_limit="00:01:00")])
    result, _ = _run(tmp_path, cli)
    assert result.timed_out and not result.ok
    assert result.reason == "Slurm job 12 TIMEOUT after walltime 00:01:00"


@pytest.mark.parametrize("state,words", [("OUT_OF_MEMORY", "more memory"), ("NODE_FAIL", "node of the job failed"),
                                         ("PREEMPTED", "preempted"), ("CANCELLED", "outside this executor")])
def test_other_end_states_fail_with_a_reason(tmp_path, state, words):
    cli = FakeCli([JobInfo("12", "RUNNING"), JobInfo("12", state, exit_code="0:9")])
    result, _ = _run(tmp_path, cli)
    assert not result.ok and not result.timed_out and not result.aborted
    assert result.reason.startswith(f"Slurm job 12 {state}") and words in result.reason
    assert result.exit_codes == [-9]


def test_failed_rank_is_named(tmp_path):
    cli = FakeCli([JobInfo("12", "FAILED", exit_code="7:0", reason="NonZeroExitCode")], rank_codes={1: 7})
    result, _ = _run(tmp_path, cli, ranks=2)
    assert result.exit_codes == [-15, 7]
    assert result.reason == "Slurm job 12 FAILED: rank 1 exited with code 7 (NonZeroExitCode)"


def test_abort_scancels(tmp_path):
    cli = FakeCli([JobInfo("12", "RUNNING")])
    abort = AbortSignal()
    threading.Timer(0.1, abort.set, args=("cancelled",)).start()
    result, lines = _run(tmp_path, cli, abort=abort)
    assert cli.cancelled == ["12"] and result.aborted == "cancelled"
    assert "[executor] scancel 12 (cancelled)" in lines


def test_backstop_cancels_a_job_slurm_did_not_end(tmp_path):
    cli = FakeCli([JobInfo("12", "PENDING", reason="Resources")])
    backend = SlurmBackend(tmp_path / "fs", cli=cli, detect_engine=False, tick=0.01, poll=0.01,  # type: ignore[arg-type]
                           timeout_grace=0.05)
    launch = LaunchSpec(command="true", cwd=tmp_path, env={}, deadline=time.monotonic() + 0.05)
    result = backend.run(launch, lambda _line: None, AbortSignal())
    assert result.timed_out and cli.cancelled == ["12"]
    assert "still PENDING" in result.reason


def test_submission_failure_is_a_start_error(tmp_path):
    result, _ = _run(tmp_path, FakeCli([JobInfo("12", "RUNNING")], submit_error="sbatch failed: invalid account"))
    assert not result.ok and "invalid account" in result.start_error


# -- CLI ---------------------------------------------------------------------------------------------------
def test_dev_slurm_without_the_packages_says_how_to_install(monkeypatch):
    from pollinator.cli.main import app
    from pollinator.dev import slurm_cluster

    monkeypatch.setattr(slurm_cluster, "find_binary", lambda name: None)
    out = CliRunner().invoke(app, ["dev", "--slurm", "--data-dir", "/nonexistent/never-created"])
    assert out.exit_code == 2, out.output
    assert "apt-get install slurm-wlm munge" in " ".join(out.output.split())


def test_executor_start_rejects_an_unknown_backend(monkeypatch):
    from pollinator.cli.main import app

    for key, value in {"COLONIES_SERVER_HOST": "127.0.0.1", "COLONIES_SERVER_PORT": "1", "COLONIES_COLONY_NAME": "c",
                       "COLONIES_COLONY_PRVKEY": "a" * 64, "COLONIES_PRVKEY": "b" * 64, "AWS_S3_ENDPOINT": "x:1",
                       "AWS_S3_ACCESSKEY": "k", "AWS_S3_SECRETKEY": "s", "AWS_S3_BUCKET": "b"}.items():
        monkeypatch.setenv(key, value)
    out = CliRunner().invoke(app, ["executor", "start", "--backend", "pbs"])
    assert out.exit_code == 2, out.output
    assert "not a backend" in out.output


def test_image_is_pulled_once_and_run_through_the_engine(tmp_path):
    engine = tmp_path / "apptainer"
    engine.write_text('#!/bin/sh\n[ "$1" = pull ] && echo sif > "$3" && echo "$4" >> "$3"\n')
    engine.chmod(0o755)
    backend = SlurmBackend(tmp_path / "fs", cli=None, engine=str(engine), tick=0.01, poll=0.01)
    lines: list[str] = []
    for _ in range(2):
        cli = FakeCli([JobInfo("12", "COMPLETED", exit_code="0:0")], rank_codes={0: 0})
        backend.cli = cli  # type: ignore[assignment]
        launch = LaunchSpec(command="python3 -V", cwd=tmp_path, env={}, process=_process(gpu=GPU(count=1)))
        assert backend.run(launch, lines.append, AbortSignal()).ok
    sif = tmp_path / "fs" / ".images" / "python_3.12.sif"
    assert sif.read_text() == "sif\ndocker://python:3.12\n"
    assert sum("pulling docker://python:3.12" in line for line in lines) == 1
    assert any(f"using {sif}" in line for line in lines)
    assert not any("no container engine" in line for line in lines)
    fs = (tmp_path / "fs").resolve()
    assert f"{engine} exec --nv --bind {fs}:{fs} --bind {fs}:/cfs --pwd {tmp_path} {sif} /bin/sh" in cli.rank_script


# -- walltime is run time (issue 16) -----------------------------------------------------------------------
def test_walltime_is_run_time_pending_does_not_count_and_running_past_it_is_cancelled(tmp_path):
    """--time is the walltime (not the time left until a deadline); time PENDING does not use it up; the
    executor scancels a job RUNNING past its walltime in seconds, once, and says so."""
    cli = FakeCli([JobInfo("12", "PENDING", reason="Resources")] * 30 + [JobInfo("12", "RUNNING")])
    backend = SlurmBackend(tmp_path / "fs", cli=cli, detect_engine=False, tick=0.01, poll=0.01)  # type: ignore[arg-type]
    launch = LaunchSpec(command="true", cwd=tmp_path, env={}, walltime=0.2, process=_process())
    lines: list[str] = []
    result = backend.run(launch, lines.append, AbortSignal())
    assert "#SBATCH --time=00:01:00" in cli.script
    assert any("RUNNING" in line for line in lines)  # it got to run after 30 PENDING polls
    assert result.timed_out and cli.cancelled == ["12"]
    assert result.reason == "Slurm job 12 ran for its walltime of 0.2 s; the executor cancelled it"


def test_server_deadline_cancels_a_pending_job_once(tmp_path):
    cli = FakeCli([JobInfo("12", "PENDING", reason="Priority")])
    backend = SlurmBackend(tmp_path / "fs", cli=cli, detect_engine=False, tick=0.01, poll=0.01)  # type: ignore[arg-type]
    launch = LaunchSpec(command="true", cwd=tmp_path, env={}, walltime=600, deadline=time.monotonic() + 0.1,
                        process=_process())
    result = backend.run(launch, lambda _line: None, AbortSignal())
    assert "#SBATCH --time=00:10:00" in cli.script
    assert result.timed_out and cli.cancelled == ["12"]
    assert "still PENDING at the server's deadline for this attempt" in result.reason


# -- never two attempts of one process at once (issue 16, item 3) ---------------------------------------------
def test_job_tag_round_trips_and_ignores_foreign_comments():
    tag = JobTag("ab" * 32, 2, "dev/my hpc:1", "0123abcd")
    assert tag.text() == f"pollinator:{'ab' * 32}:2:dev/my_hpc_1:0123abcd"
    assert JobTag.parse(tag.text()) == JobTag("ab" * 32, 2, "dev/my_hpc_1", "0123abcd")
    for foreign in ("", "(null)", "a job of someone else", "pollinator:x:one:o:i", "pollinator:x:1:o"):
        assert JobTag.parse(foreign) is None


def test_an_earlier_attempts_job_is_scancelled_before_the_next_is_submitted(tmp_path):
    """A killed executor's job of attempt 1 is still RUNNING when attempt 2 starts here: it is cancelled and
    gone from the queue before sbatch; jobs of other processes and untagged ones are left alone."""
    pid = "p" * 64
    cli = FakeCli([JobInfo("12", "COMPLETED", exit_code="0:0")], rank_codes={0: 0})
    cli.queue = [QueuedJob("7", "RUNNING", pid, JobTag(pid, 0, "dev/dead-hpc", "olderrun").text()),
                 QueuedJob("8", "RUNNING", pid, "not ours"),
                 QueuedJob("9", "RUNNING", "q" * 64, JobTag("q" * 64, 0, "dev/dead-hpc", "olderrun").text())]
    submitted_after: list[list[str]] = []
    submit = cli.submit

    def watched_submit(script, *, env):
        submitted_after.append([job.job_id for job in cli.queue])
        return submit(script, env=env)

    cli.submit = watched_submit  # type: ignore[method-assign]
    process = _process()
    process.retries = 1
    backend = SlurmBackend(tmp_path / "fs", cli=cli, detect_engine=False, tick=0.01, poll=0.01)  # type: ignore[arg-type]
    backend.bind_executor("dev/live-hpc")
    lines: list[str] = []
    result = backend.run(LaunchSpec(command="true", cwd=tmp_path, env={}, process=process), lines.append,
                         AbortSignal())
    assert result.ok
    assert cli.cancelled == ["7"] and submitted_after == [["8", "9"]]
    assert ("[executor] Slurm job 7 of attempt 1 of this process (executor dead-hpc) is still RUNNING: scancel "
            "before attempt 2 starts") in lines
    assert f"#SBATCH --comment=pollinator:{pid}:1:dev/live-hpc:{backend.instance}" in cli.script


def test_an_earlier_job_that_does_not_leave_the_queue_keeps_the_attempt_from_starting(tmp_path):
    pid = "p" * 64
    cli = FakeCli([JobInfo("12", "RUNNING")])
    stuck = QueuedJob("7", "COMPLETING", pid, JobTag(pid, 0, "dev/x", "old").text())
    cli.queue = [stuck]
    cli.cancel = lambda job_id: cli.cancelled.append(job_id)  # type: ignore[method-assign]  # it never leaves
    backend = SlurmBackend(tmp_path / "fs", cli=cli, detect_engine=False, tick=0.01, poll=0.01,  # type: ignore[arg-type]
                           cancel_wait=0.1)
    result = backend.run(LaunchSpec(command="true", cwd=tmp_path, env={}, process=_process()), lambda _l: None,
                         AbortSignal())
    assert not result.ok and cli.script == "" and cli.cancelled == ["7"]
    assert "Slurm job(s) 7 of an earlier attempt of this process did not end" in result.start_error


def test_a_restarted_executor_reaps_only_what_its_earlier_run_left(tmp_path):
    cli = FakeCli([JobInfo("12", "RUNNING")])
    backend = SlurmBackend(tmp_path / "fs", cli=cli, detect_engine=False)  # type: ignore[arg-type]
    assert backend.reap_orphans() == []  # not bound to an executor: it cannot tell its jobs
    backend.bind_executor("dev/hpc")
    cli.queue = [QueuedJob("1", "RUNNING", "a", JobTag("a" * 64, 0, "dev/hpc", "deadrun").text()),
                 QueuedJob("2", "PENDING", "b", JobTag("b" * 64, 3, "dev/hpc", "deadrun").text()),
                 QueuedJob("3", "RUNNING", "c", JobTag("c" * 64, 0, "dev/hpc", backend.instance).text()),
                 QueuedJob("4", "RUNNING", "d", JobTag("d" * 64, 0, "dev/other-hpc", "deadrun").text()),
                 QueuedJob("5", "RUNNING", "e", "a user's own job")]
    assert backend.reap_orphans() == ["1", "2"]
    assert [job.job_id for job in cli.queue] == ["3", "4", "5"]
