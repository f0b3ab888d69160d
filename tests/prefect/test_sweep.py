"""A Prefect `.map()` sweep through the real local colony: each mapped task returns its own input's value.

Issue 14: 18 of 30 mapped remote-function tasks returned another input's value when every run of one
job name shared its src label. Run a few rounds: a race shows up as a wrong value, not as a failure.
"""

from __future__ import annotations

import pytest
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from pollinator_prefect import pollinator_task

FUNCTIONS = 50
COMMANDS = 20


@pollinator_task(executor_names=["dev-k8s", "dev-hpc"], job_name="prefect-sweep-fn", walltime=120)
def square(x: int) -> dict:
    return {"x": x, "sq": x * x}


@pollinator_task(kind="command", executor_names=["dev-k8s", "dev-hpc"], job_name="prefect-sweep-cmd",
                 walltime=120)
def tag(i: int) -> str:
    # every run writes the same result file name with its own bytes, and returns its own value
    return (f"sh -c 'mkdir -p $POLLINATOR_RESULT_DIR/.pollinator; echo value-{i} > $POLLINATOR_RESULT_DIR/out.txt; "
            f"echo {i} > $POLLINATOR_RETURN'")


@flow(task_runner=ThreadPoolTaskRunner(max_workers=FUNCTIONS + COMMANDS))
def sweep() -> tuple[list, list]:
    squares = square.map(range(FUNCTIONS))
    tags = tag.map(range(COMMANDS))
    return [s.result() for s in squares], [t.result() for t in tags]


@pytest.mark.parametrize("round_", range(2))
def test_map_sweep_returns_each_inputs_own_value(in_colony_env, settings, round_):
    squares, tags = sweep()
    wrong = [(x, v) for x, v in enumerate(squares) if v != {"x": x, "sq": x * x}]
    assert not wrong, f"{len(wrong)} of {FUNCTIONS} mapped functions returned another input's value: {wrong[:5]}"
    assert [r.return_value for r in tags] == list(range(COMMANDS))
    assert len({r.result_label for r in tags}) == COMMANDS and all(r.result_files == ["out.txt"] for r in tags)
    from pollinator.cfs import CFS

    with settings.client() as client:
        cfs = CFS(client, settings.require_s3())
        for i in (0, COMMANDS - 1):  # each run's own label holds its own bytes
            [f] = [f for f in cfs.list(tags[i].result_label) if f.name == "out.txt"]
            assert cfs.store.get_small(f.s3_object, f.size) == f"value-{i}\n".encode()
        cfs.close()
