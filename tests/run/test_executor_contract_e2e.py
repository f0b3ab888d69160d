"""What the real ColonyOS executors need, through the local colony (issue 15)."""

from __future__ import annotations

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
