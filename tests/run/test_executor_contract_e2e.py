"""What the real ColonyOS executors need, through the local colony (issue 15)."""

from __future__ import annotations

import pytest

from pollinator.colonies.models import ProcessState
from pollinator.errors import JobFailed, ProjectError
from pollinator.run import Job


def test_inputs_are_mounted_in_the_runs_own_dir_and_only_the_dry_run_shows_a_placeholder(settings, tmp_path):
    prep = Job.inline(settings, name="contract-prep", cmd="sh -c 'echo 7 > $POLLINATOR_RESULT_DIR/n.txt'",
                      executor_names=["dev-hpc"], walltime=120)
    with prep:
        label = prep.run().result_label
    runs = []
    for _ in range(2):
        job = Job.inline(settings, name="contract-reader", cmd="sh -c 'cat $POLLINATOR_INPUT_PREP/n.txt'",
                         executor_names=["dev-hpc"], walltime=120, inputs={"prep": label})
        dry = job.spec().env["POLLINATOR_INPUT_PREP"]
        assert dry == "/cfs/pollinator/contract-reader/runs/<run_id>/inputs/prep"
        lines: list[str] = []
        with job:
            job.run(on_log=lines.append)
            sent = job.client.get_process(job.process_id).spec.env["POLLINATOR_INPUT_PREP"]
        assert "7" in lines
        assert "<" not in sent and sent == f"/cfs/pollinator/contract-reader/runs/{job.run_id}/inputs/prep"
        runs.append(sent)
    assert runs[0] != runs[1], "two runs of one name shared an input dir"


def test_a_named_kube_executor_gives_the_spec_its_type(settings, kube_mimic):
    job = Job.inline(settings, name="contract-kube", cmd="true", executor_names=[kube_mimic], walltime=60)
    with job:
        result = job.run()
        sent = job.client.get_process(job.process_id).spec.conditions.executortype
    assert (result.state, result.executor, sent) == ("SUCCESS", kube_mimic, "test-kubeexecutor")


def test_an_executor_type_the_named_executor_never_has_fails_before_anything_moves(settings, kube_mimic, client):
    before = len(client.get_processes(state=0)) if hasattr(client, "get_processes") else None
    job = Job.inline(settings, name="contract-wrongtype", cmd="true", executor_names=[kube_mimic],
                     executor_type="gpu-executor", walltime=60)
    with job, pytest.raises(ProjectError, match=r"executor_type='gpu-executor' does not match executor_names: "
                                                r"kube-mimic \(type test-kubeexecutor, approved\)"):
        job.submit()
    assert job.handle is None
    unknown = Job.inline(settings, name="contract-unknown", cmd="true", executor_names=["no-such"], walltime=60)
    with unknown, pytest.raises(ProjectError, match=r"no-such not registered in colony 'dev'; registered: .*"
                                                    r"dev-hpc \(type container-executor, approved\)"):
        unknown.submit()
    assert before is None or len(client.get_processes(state=0)) == before


def test_a_failed_process_carries_the_commands_exit_code(settings, tmp_path):
    job = Job.inline(settings, name="contract-exit", cmd="echo 'quoted & ok'; exit 4", executor_names=["dev-hpc"],
                     walltime=60)
    lines: list[str] = []
    with job, pytest.raises(JobFailed) as info:
        job.run(on_log=lines.append)
    assert "quoted & ok" in lines
    assert (info.value.state, info.value.exit_code) == ("FAILED", 4)


def test_a_failing_command_on_an_executor_that_closes_success_fails_with_its_exit_code(settings, kube_mimic):
    job = Job.inline(settings, name="contract-kube-exit", cmd="echo 'about to fail'; exit 7",
                     executor_names=[kube_mimic], walltime=60)
    with job, pytest.raises(JobFailed) as info:
        job.run()
    assert (info.value.state, info.value.exit_code) == ("FAILED", 7)
    assert info.value.errors[0].startswith("the command exited with code 7")
    with settings.client() as client:  # a client of our own (the job's is shared with other jobs)
        assert client.get_process(info.value.process_id).state == ProcessState.SUCCESS  # the executor's word
    ok = Job.inline(settings, name="contract-kube-ok", cmd="echo fine > $POLLINATOR_RESULT_DIR/f.txt",
                    executor_names=[kube_mimic], walltime=60, result_dir=None)
    with ok:
        result = ok.run()
    assert result.ok and result.result_files == ["f.txt"] and result.exit_code is None  # .pollinator/ not listed
