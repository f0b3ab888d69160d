"""Operator, trigger, sensor and decorator paths with the core Job stubbed out."""

from __future__ import annotations

import asyncio

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred

import fakes
from fakes import FakeJob, FakeStore, FakeTI, context
from pollinator_airflow.hooks import PollinatorHook
from pollinator_airflow.operators import PollinatorOperator, client_token
from pollinator_airflow.triggers import PollinatorTrigger


@pytest.fixture(autouse=True)
def stub_core(monkeypatch):
    import pollinator.run

    FakeJob.reset()
    monkeypatch.setattr(pollinator.run, "Job", FakeJob)
    monkeypatch.setattr(pollinator.run, "ProcessHandle", FakeJob)
    monkeypatch.setattr(PollinatorHook, "get_settings", lambda self: fakes.settings())
    states: dict[str, str] = {}
    monkeypatch.setattr(PollinatorHook, "get_state", lambda self, pid: states.get(pid, "RUNNING"))
    monkeypatch.setattr(PollinatorHook, "cancel", lambda self, pid: FakeJob.cancelled.append(pid))
    return states


def op(**kw) -> PollinatorOperator:
    kw.setdefault("task_id", "train")
    kw.setdefault("cmd", "python3 train.py")
    kw.setdefault("executor_names", ["dev-hpc"])
    return PollinatorOperator(**kw)


def test_needs_cmd_or_project():
    with pytest.raises(ValueError, match="project_dir= or cmd="):
        PollinatorOperator(task_id="x")


def test_template_fields_cover_user_options():
    for name in ("cmd", "args", "env", "image", "inputs", "executor_names", "walltime", "result_dir", "project_dir",
                 "name"):
        assert name in PollinatorOperator.template_fields


def test_the_operator_takes_every_core_option_by_the_core_name():
    """One list: the core's JobOptions. The signature (which Airflow's default_args read) and the template
    fields hold every option under its core name, and each one reaches the core job."""
    import inspect

    from pollinator.run.options import OPTION_NAMES, JobOptions

    params = inspect.signature(PollinatorOperator.__init__).parameters
    assert set(OPTION_NAMES) <= set(params)
    assert set(PollinatorOperator.template_fields) == {"project_dir", *OPTION_NAMES}
    given = dict(name="train-job", cmd="python3 train.py", args=["--epochs", "2"], image="python:3.12",
                 env={"A": "1"}, init_cmd="pip install x", rebuild_image=True, source="train.py",
                 executor_names=["dev-hpc"], executor_type="hpc-executor", nodes=2, processes_per_node=4, cpu="2",
                 mem="4Gi", gpu_count=1, gpu_name="a100", walltime="1h", max_retries=2, staging_allowance=120, priority=7,
                 inputs={"prep": "/pollinator/prep/result"}, src_dir="/tmp/src", data_dir="/tmp/data",
                 result_dir="/tmp/result", result_label="/pollinator/train-job/latest", launcher=False)
    assert set(given) == set(OPTION_NAMES)  # this test names them all: a new core option fails it until added
    op(**given).execute(context())
    sent = FakeJob.instances[0].options
    assert sent == given
    JobOptions.build(**sent)  # and the core takes them as they are


def test_the_old_job_name_still_works_with_a_warning_naming_the_new_name():
    from airflow.exceptions import AirflowProviderDeprecationWarning

    with pytest.warns(AirflowProviderDeprecationWarning, match=r"job_name=.*deprecated: use name="):
        o = op(job_name="legacy")
    assert o.name == "legacy" and o.job_name == "legacy"
    o.execute(context())
    assert FakeJob.instances[0].options["name"] == "legacy"


@pytest.mark.parametrize("old, new", [("job_name", "name"), ("gpu", "gpu_count")])
def test_an_old_and_a_new_name_together_is_an_error_naming_both(old, new):
    from pollinator.errors import ProjectError

    value = "x" if new == "name" else 1
    with pytest.raises(ProjectError, match=rf"both {old}= and {new}= are given.*give only {new}="):
        op(**{old: value, new: value})


def test_the_core_names_survive_dag_serialization():
    """What the dag-processor stores and the scheduler/UI read back: every option under its core name,
    including one given by its deprecated name."""
    from datetime import datetime

    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("ser", schedule=None, start_date=datetime(2025, 1, 1)) as dag:
        op(task_id="new", name="nightly-{{ ds }}", max_retries=2, priority=7, src_dir="/data/src")
        with pytest.warns(DeprecationWarning):
            op(task_id="old", job_name="legacy")
    back = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    new, old = back.get_task("new"), back.get_task("old")
    assert "name" in new.template_fields and "job_name" not in new.template_fields
    assert (new.name, new.max_retries, new.priority, new.src_dir) == ("nightly-{{ ds }}", 2, 7, "/data/src")
    assert old.name == "legacy"


def test_the_core_names_are_templated(oplog):
    o = op(name="nightly-{{ ds_nodash }}", init_cmd="echo {{ ds }}", cmd="python3 {{ params.script }}",
           params={"script": "train.py"})
    o.render_template_fields({"ds": "2025-01-02", "ds_nodash": "20250102", "params": {"script": "train.py"}})
    assert (o.name, o.init_cmd, o.cmd) == ("nightly-20250102", "echo 2025-01-02", "python3 train.py")
    o.execute(context())
    assert FakeJob.instances[0].options["name"] == "nightly-20250102"


class _Log:
    """Records what a component logs (Airflow 3 logs through structlog, which caplog does not see)."""

    def __init__(self):
        self.lines: list[str] = []

    def _add(self, msg, *args, **kw):
        self.lines.append(msg % args if args else msg)

    info = warning = debug = error = exception = _add

    @property
    def text(self):
        return "\n".join(self.lines)


@pytest.fixture
def oplog(monkeypatch):
    rec = _Log()
    monkeypatch.setattr(PollinatorOperator, "log", property(lambda self: rec))
    monkeypatch.setattr(PollinatorTrigger, "log", property(lambda self: rec))
    return rec


def test_sync_logs_lines_and_returns_xcom(oplog):
    ti = FakeTI()
    value = op(gpu_count=2, mem="8Gi").execute(context(ti))
    assert value["process_id"] == "proc-1" and value["state"] == "SUCCESS"
    assert value["result_files"] == ["model.json"]
    assert ti.xcoms["process_id"] == "proc-1"
    assert ti.xcoms["process_url"] == "https://dash.example/process?processid=proc-1"
    assert "hello from the executor" in oplog.lines
    job = FakeJob.instances[0]
    assert job.token == "dag/task/manual__1/-1/1"
    assert job.options["gpu_count"] == 2 and job.options["mem"] == "8Gi" and job.options["name"] == "train"
    assert "nodes" not in job.options  # unset options keep the core's defaults


def test_old_gpu_name_still_works_with_a_warning():
    with pytest.warns(DeprecationWarning, match="gpu=.*use gpu_count="):
        o = op(gpu=3)
    o.execute(context())
    assert FakeJob.instances[0].options["gpu_count"] == 3


def test_sync_failure_carries_remote_errors():
    FakeJob.fail_with = ["Traceback: ZeroDivisionError", "exit code 1"]
    with pytest.raises(AirflowException, match="ZeroDivisionError; exit code 1"):
        op().execute(context())


def test_project_dir_uses_from_project():
    op(cmd=None, project_dir="/projects/p", walltime=60).execute(context())
    assert FakeJob.instances[0].options == {"project_dir": "/projects/p", "walltime": 60, "name": "train",
                                            "executor_names": ["dev-hpc"]}


def test_durable_records_process_id_in_task_state_store():
    store = FakeStore()
    op().execute(context(store=store))
    assert store.data["pollinator_process_id"] == "proc-1"


def test_retry_reattaches_to_running_process(stub_core):
    stub_core["proc-7"] = "RUNNING"
    store = FakeStore({"pollinator_process_id": "proc-7"})
    ti = FakeTI(try_number=2)
    value = op().execute(context(ti, store))
    assert FakeJob.submitted == [] and value["process_id"] == "proc-7"
    assert ti.xcoms["process_id"] == "proc-7"


def test_retry_after_failed_process_submits_fresh(stub_core):
    stub_core["proc-7"] = "FAILED"
    store = FakeStore({"pollinator_process_id": "proc-7"})
    value = op().execute(context(FakeTI(try_number=2), store))
    assert FakeJob.submitted == ["proc-1"] and value["process_id"] == "proc-1"
    assert FakeJob.instances[-1].token == "dag/task/manual__1/-1/2"


def test_every_earlier_try_token_goes_to_the_core():
    """The core decides; the operator hands it the tokens of all earlier tries, newest first."""
    FakeJob.resumable["dag/task/manual__1/-1/1"] = "proc-old"  # try 1's process still runs
    value = op().execute(context(FakeTI(try_number=3), FakeStore()))
    assert FakeJob.earlier_tokens == [["dag/task/manual__1/-1/2", "dag/task/manual__1/-1/1"]]
    assert FakeJob.submitted == [] and value["process_id"] == "proc-old"


def test_on_kill_cancels_remote_process():
    o = op()
    o.execute(context())
    o.on_kill()
    assert FakeJob.cancelled == ["proc-1"]


def test_on_kill_before_submit_is_a_no_op():
    op().on_kill()
    assert FakeJob.cancelled == []


def test_deferrable_submits_then_defers():
    ti = FakeTI()
    store = FakeStore()
    with pytest.raises(TaskDeferred) as deferred:
        op(deferrable=True, poll_interval=7).execute(context(ti, store))
    trigger = deferred.value.trigger
    assert isinstance(trigger, PollinatorTrigger) and deferred.value.method_name == "execute_complete"
    assert trigger.process_id == "proc-1" and trigger.poll_interval == 7
    assert ti.xcoms["process_id"] == "proc-1" and store.data["pollinator_process_id"] == "proc-1"


def test_deferrable_retry_with_running_process_defers_without_submit(stub_core):
    stub_core["proc-9"] = "RUNNING"
    with pytest.raises(TaskDeferred) as deferred:
        op(deferrable=True).execute(context(FakeTI(try_number=2), FakeStore({"pollinator_process_id": "proc-9"})))
    assert deferred.value.trigger.process_id == "proc-9" and FakeJob.submitted == []


def test_execute_complete_success_fetches_results():
    value = op(deferrable=True).execute_complete(context(), {"status": "success", "process_id": "proc-3",
                                                            "state": "SUCCESS"})
    assert value["process_id"] == "proc-3" and value["result_files"] == ["model.json"]
    assert FakeJob.submitted == []  # attached, not resubmitted


def test_execute_complete_needs_no_project_dir_on_the_worker():
    """Finishing a deferred task attaches by process id: project.yaml is not read again."""
    value = op(cmd=None, project_dir="/not/on/this/worker", deferrable=True).execute_complete(
        context(), {"status": "success", "process_id": "proc-5", "state": "SUCCESS"})
    assert value["process_id"] == "proc-5"
    assert [j.options for j in FakeJob.instances] == [{}]  # one handle attached by id, no job built


@pytest.mark.parametrize("event, needle", [
    ({"status": "failed", "process_id": "p", "state": "FAILED", "errors": ["OOM killed"]}, "ended FAILED: OOM killed"),
    ({"status": "cancelled", "process_id": "p", "state": "CANCELLED", "errors": []}, "ended CANCELLED"),
    ({"status": "error", "process_id": "p", "message": "Unreachable: gone"}, "Unreachable: gone"),
])
def test_execute_complete_failure(event, needle):
    with pytest.raises(AirflowException, match=needle):
        op().execute_complete(context(), event)


def test_client_token_includes_map_index_and_try():
    assert client_token(context(FakeTI(map_index=3, try_number=2))) == "dag/task/manual__1/3/2"


# -- trigger ------------------------------------------------------------------------------------------------
def test_trigger_serialize_round_trip():
    t = PollinatorTrigger(process_id="p1", colonies_conn_id="c", poll_interval=3, since=17)
    path, kwargs = t.serialize()
    assert path == "pollinator_airflow.triggers.PollinatorTrigger"
    again = PollinatorTrigger(**kwargs)
    assert again.serialize() == (path, kwargs)
    import json

    json.dumps(kwargs)  # stored in the metadata DB as JSON


class _Follower:
    def __init__(self, lines, state, errors=()):
        from pollinator.colonies.models import Log, Process

        self._lines = [Log(message=m, timestamp=i + 1) for i, m in enumerate(lines)]
        self.process = Process(processid="p1", state=state, errors=list(errors))
        self.last_timestamp = 0

    def __aiter__(self):
        return self._gen()

    async def _gen(self):
        for line in self._lines:
            self.last_timestamp = line.timestamp
            yield line


async def _collect(trigger):
    return [event async for event in trigger.run()]


@pytest.fixture
def trigger_stubs(monkeypatch):
    import pollinator_airflow.triggers as triggers

    async def aget_settings(self):
        return fakes.settings()

    monkeypatch.setattr(PollinatorHook, "aget_settings", aget_settings)
    box = {}
    monkeypatch.setattr(triggers, "_follow", lambda client, pid, since, interval: box["follower"])
    return box


@pytest.mark.parametrize("status", ["success", "failed", "cancelled"])
def test_trigger_yields_exactly_one_event(trigger_stubs, oplog, status):
    from pollinator.colonies.models import ProcessState

    state = {"success": ProcessState.SUCCESS, "failed": ProcessState.FAILED,
             "cancelled": ProcessState.CANCELLED}[status]
    trigger_stubs["follower"] = _Follower(["line one", "line two"], int(state), ["boom"] if status == "failed" else [])
    events = asyncio.run(_collect(PollinatorTrigger(process_id="p1")))
    assert len(events) == 1
    payload = events[0].payload
    assert payload["status"] == status and payload["process_id"] == "p1" and payload["last_timestamp"] == 2
    assert "line one" in oplog.lines and "line two" in oplog.lines
    if status == "failed":
        assert payload["errors"] == ["boom"]


def test_trigger_logs_one_record_per_remote_line_and_serializes_its_cursor(trigger_stubs, oplog):
    """A log entry carrying several lines (one executor batch) becomes one record per line, as in sync mode."""
    from pollinator.colonies.models import ProcessState

    trigger_stubs["follower"] = _Follower(["a\nb\n", "c\n"], int(ProcessState.SUCCESS))
    trigger = PollinatorTrigger(process_id="p1")
    events = asyncio.run(_collect(trigger))
    assert oplog.lines == ["a", "b", "c"]
    assert trigger.serialize()[1]["since"] == 2 and events[0].payload["last_timestamp"] == 2


def test_trigger_checkpoint_hands_the_cursor_back_and_the_task_defers_again_with_it(trigger_stubs, oplog):
    """A triggerer restart rebuilds the trigger from the kwargs stored at deferral: a checkpoint re-defers so
    those kwargs hold the cursor."""
    from pollinator.colonies.models import ProcessState

    trigger_stubs["follower"] = _Follower(["a\n", "b\n", "c\n"], int(ProcessState.RUNNING))
    events = asyncio.run(_collect(PollinatorTrigger(process_id="p1", checkpoint_interval=1e-9)))
    assert len(events) == 1 and events[0].payload["status"] == "progress"
    assert events[0].payload["last_timestamp"] == 1 and oplog.lines == ["a"]
    o = op(deferrable=True, log_checkpoint_interval=60)
    with pytest.raises(TaskDeferred) as deferred:
        o.execute_complete(context(), events[0].payload)
    again = deferred.value.trigger
    assert again.since == 1 and again.checkpoint_interval == 60 and again.process_id == "p1"
    assert FakeJob.submitted == []


def test_process_url_ends_the_log_line(oplog):
    """Airflow's log viewer links a URL up to the next space: nothing may be glued to its end."""
    op().execute(context())
    line = next(text for text in oplog.lines if text.startswith("ColonyOS process proc-1"))
    assert line.endswith(" https://dash.example/process?processid=proc-1")


def test_trigger_error_is_one_event(trigger_stubs):
    class Broken:
        last_timestamp = 0

        def __aiter__(self):
            return self

        async def __anext__(self):
            from pollinator.errors import Unreachable

            raise Unreachable("server went away")

    trigger_stubs["follower"] = Broken()
    events = asyncio.run(_collect(PollinatorTrigger(process_id="p1")))
    assert len(events) == 1 and events[0].payload["status"] == "error"
    assert "server went away" in events[0].payload["message"]


def test_trigger_on_kill_cancels(trigger_stubs):
    asyncio.run(PollinatorTrigger(process_id="p5").on_kill())
    assert FakeJob.cancelled == ["p5"]


def test_trigger_cleanup_does_not_cancel(trigger_stubs):
    asyncio.run(PollinatorTrigger(process_id="p5").cleanup())
    assert FakeJob.cancelled == []


# -- sensor -------------------------------------------------------------------------------------------------
def _sensor_process(monkeypatch, state, errors=()):
    from pollinator.colonies.models import Process

    monkeypatch.setattr(PollinatorHook, "get_process",
                        lambda self, pid: Process(processid=pid, state=state, errors=list(errors), out=["o"]))


def test_sensor_poke(monkeypatch):
    from pollinator_airflow.sensors import PollinatorSensor

    s = PollinatorSensor(task_id="wait", process_id="p1")
    _sensor_process(monkeypatch, 1)
    assert not s.poke(context())
    _sensor_process(monkeypatch, 2)
    assert s.poke(context()).xcom_value == {"process_id": "p1", "state": "SUCCESS", "output": ["o"]}
    _sensor_process(monkeypatch, 3, ["bad input"])
    with pytest.raises(AirflowException, match="bad input"):
        s.poke(context())


def test_sensor_deferrable(monkeypatch):
    from pollinator_airflow.sensors import PollinatorSensor

    s = PollinatorSensor(task_id="wait", process_id="p1", deferrable=True, poke_interval=5, timeout=60)
    _sensor_process(monkeypatch, 1)
    with pytest.raises(TaskDeferred) as deferred:
        s.execute(context())
    assert deferred.value.trigger.process_id == "p1" and deferred.value.trigger.poll_interval == 5
    _sensor_process(monkeypatch, 2)
    assert s.execute_complete(context(), {"status": "success", "process_id": "p1"})["state"] == "SUCCESS"
    with pytest.raises(AirflowException, match="ended FAILED: x"):
        s.execute_complete(context(), {"status": "failed", "state": "FAILED", "process_id": "p1", "errors": ["x"]})


# -- decorator ----------------------------------------------------------------------------------------------
def test_decorator_runs_function_remotely(monkeypatch):
    import pollinator.run
    from airflow.sdk import DAG, task

    calls = {}

    def remote_function_job(settings, func, args, kwargs, **options):
        calls.update(func=func.__name__, args=args, kwargs=kwargs, options=options)
        return FakeJob(options, options.get("token"))

    monkeypatch.setattr(pollinator.run, "remote_function_job", remote_function_job)

    with DAG("d") as dag:
        @task.pollinator(executor_names=["dev-hpc"], gpu_count=1)
        def add(a: int, b: int = 0) -> int:
            return a + b

        add(1, b=2)
    o = dag.get_task("add")
    ti = FakeTI(task_id=o.task_id)
    value = o.execute(context(ti))
    assert value == {"answer": 42}
    assert calls["func"] == "add" and calls["args"] == [1] and calls["kwargs"] == {"b": 2}
    assert calls["options"]["executor_names"] == ["dev-hpc"] and calls["options"]["gpu_count"] == 1
    assert calls["options"]["token"] == "dag/add/manual__1/-1/1"
    assert ti.xcoms["pollinator"]["process_id"] == "proc-1"


def test_decorator_refuses_the_options_a_function_job_sets_itself():
    """cmd/args/source/src_dir are the runner's: a DAG import error naming them, not a silent override."""
    from airflow.sdk import DAG, task

    from pollinator.errors import ProjectError

    with DAG("d"):
        with pytest.raises(ProjectError, match=r"@task.pollinator: cmd=, src_dir= cannot be given"):
            @task.pollinator(executor_names=["dev-hpc"], cmd="python3 x.py", src_dir="/tmp")
            def f() -> int:
                return 1

            f()


def test_decorator_takes_the_core_names_and_the_old_job_name_with_a_warning(monkeypatch):
    import pollinator.run
    from airflow.exceptions import AirflowProviderDeprecationWarning
    from airflow.sdk import DAG, task

    calls = []
    monkeypatch.setattr(pollinator.run, "remote_function_job",
                        lambda settings, func, args, kwargs, **options: calls.append(options) or FakeJob(options))
    with DAG("d") as dag:
        @task.pollinator(executor_names=["dev-hpc"], name="adder", max_retries=1, priority=9)
        def add(a: int) -> int:
            return a

        add(1)
        with pytest.warns(AirflowProviderDeprecationWarning, match="job_name=.*use name="):
            @task.pollinator(executor_names=["dev-hpc"], job_name="old-adder")
            def old(a: int) -> int:
                return a

            old(1)
    for task_id in ("add", "old"):
        dag.get_task(task_id).execute(context(FakeTI(task_id=task_id)))
    assert [c["name"] for c in calls] == ["adder", "old-adder"]
    assert (calls[0]["max_retries"], calls[0]["priority"]) == (1, 9)


API_TOKEN = "s3cr3t-token"


def test_decorator_refuses_a_token_like_global_without_retry_or_submission():
    """The real remote_function_job: the global is refused before anything is uploaded, and no retry helps."""
    from airflow.sdk import DAG, task
    from airflow.sdk.exceptions import AirflowFailException

    with DAG("d") as dag:
        @task.pollinator(executor_names=["dev-hpc"])
        def call_api(x: int) -> str:
            return f"{API_TOKEN}:{x}"

        call_api(1)
    o = dag.get_task("call_api")
    assert o.function_source.source.startswith("def call_api(x: int) -> str:")  # captured at parse time
    with pytest.raises(AirflowFailException, match=r"API_TOKEN .its name reads like a credential") as info:
        o.execute(context(FakeTI(task_id=o.task_id)))
    assert "s3cr3t-token" not in str(info.value)
    assert FakeJob.instances == []
