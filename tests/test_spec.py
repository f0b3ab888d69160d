"""FunctionSpec generation: golden JSON pinned to the Go pollinator's CreateFuncSpec, plus properties.

The golden texts were written by reading ``pkg/colonies/colonies.go`` (CreateFuncSpec) and
``core.FunctionSpec`` in colonyos/colonies: Go's json.MarshalIndent writes struct fields in
declaration order and map keys sorted, with a 4-space indent.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pollinator.colonies.models import FunctionSpec, SnapshotMount, SyncDirMount
from pollinator.errors import ProjectError
from pollinator.contract import executor_problems
from pollinator.project import Project, parse_project
from pollinator.resources import DEFAULT_CPU, DEFAULT_MEM, NO_LIMIT_WALLTIME
from pollinator.spec import (
    GO_LABEL,
    ProjectLabels,
    build_spec,
    labels,
    project_dir,
    source_path,
    spec_from_project,
    spec_json,
)

SCAFFOLD_YAML = """projectname: myproj
conditions:
  executorNames:
  - x
  nodes: 1
  processesPerNode: 1
  cpu: 1000m
  mem: 1000Mi
  walltime: 600
  gpu:
    count: 0
    name: ""
environment:
  docker: python:3.12-rc-bookworm
  rebuildImage: false
  init-cmd: pip3 install numpy
  cmd: python3
  source: main.py
"""

GOLDEN_SCAFFOLD = """{
    "nodename": "",
    "funcname": "execute",
    "args": [],
    "kwargs": {
        "args": [
            "/cfs/pollinator/myproj/snap1/src/main.py"
        ],
        "cmd": "python3",
        "docker-image": "python:3.12-rc-bookworm",
        "init-cmd": "pip3 install numpy",
        "rebuild-image": false
    },
    "priority": 5,
    "maxwaittime": -1,
    "maxexectime": 599,
    "maxretries": 3,
    "conditions": {
        "colonyname": "dev",
        "executornames": [
            "x"
        ],
        "executortype": "container-executor",
        "dependencies": [],
        "nodes": 1,
        "cpu": "1000m",
        "processes": 0,
        "processespernode": 1,
        "mem": "1000Mi",
        "storage": "",
        "gpu": {
            "name": "",
            "mem": "",
            "count": 0,
            "nodecount": 0
        },
        "walltime": 600
    },
    "label": "test_label",
    "fs": {
        "mount": "/cfs",
        "snapshots": [
            {
                "snapshotid": "snap1",
                "label": "/pollinator/myproj/src",
                "dir": "/pollinator/myproj/snap1/src",
                "keepfiles": true,
                "keepsnapshot": true
            }
        ],
        "dirs": [
            {
                "label": "/pollinator/myproj/result",
                "dir": "/pollinator/myproj/result",
                "keepfiles": false,
                "onconflicts": {
                    "onstart": {
                        "keeplocal": false
                    },
                    "onclose": {
                        "keeplocal": true
                    }
                }
            },
            {
                "label": "/pollinator/myproj/data",
                "dir": "/pollinator/myproj/data",
                "keepfiles": true,
                "onconflicts": {
                    "onstart": {
                        "keeplocal": false
                    },
                    "onclose": {
                        "keeplocal": false
                    }
                }
            }
        ]
    },
    "env": {
        "PROJECT_DIR": "/cfs/pollinator/myproj"
    }
}"""

# The Go example project (no source, no init-cmd, walltime 200, GPU).
JUPYTER_YAML = """projectname: jupyter
conditions:
  executorNames:
  - lumi-std
  nodes: 2
  processesPerNode: 4
  cpu: 500m
  mem: 2Gi
  walltime: 200
  gpu:
    count: 1
    name: a100
environment:
  docker: enccs/notebook
  rebuildImage: true
  cmd: jupyter lab
"""

GOLDEN_JUPYTER_COMPACT = (
    '{"nodename":"","funcname":"execute","args":[],'
    '"kwargs":{"args":[],"cmd":"jupyter lab","docker-image":"enccs/notebook","init-cmd":"","rebuild-image":true},'
    '"priority":5,"maxwaittime":-1,"maxexectime":199,"maxretries":3,'
    '"conditions":{"colonyname":"c1","executornames":["lumi-std"],"executortype":"container-executor",'
    '"dependencies":[],"nodes":2,"cpu":"500m","processes":0,"processespernode":4,"mem":"2Gi","storage":"",'
    '"gpu":{"name":"a100","mem":"","count":1,"nodecount":0},"walltime":200},'
    '"label":"test_label",'
    '"fs":{"mount":"/cfs","snapshots":[{"snapshotid":"S","label":"/pollinator/jupyter/src",'
    '"dir":"/pollinator/jupyter/S/src","keepfiles":true,"keepsnapshot":true}],'
    '"dirs":[{"label":"/pollinator/jupyter/result","dir":"/pollinator/jupyter/result","keepfiles":false,'
    '"onconflicts":{"onstart":{"keeplocal":false},"onclose":{"keeplocal":true}}},'
    '{"label":"/pollinator/jupyter/data","dir":"/pollinator/jupyter/data","keepfiles":true,'
    '"onconflicts":{"onstart":{"keeplocal":false},"onclose":{"keeplocal":false}}}]},'
    '"env":{"PROJECT_DIR":"/cfs/pollinator/jupyter"}}'
)


def test_golden_scaffold_project():
    spec = spec_from_project("dev", parse_project(SCAFFOLD_YAML), "snap1")
    assert spec_json(spec) == GOLDEN_SCAFFOLD


def test_golden_go_example_without_source():
    spec = spec_from_project("c1", parse_project(JUPYTER_YAML), "S")
    assert json.dumps(spec.to_wire(), separators=(",", ":")) == GOLDEN_JUPYTER_COMPACT


def test_missing_executor_names_is_null_like_go_nil_slice():
    spec = spec_from_project("c", parse_project("projectname: p\n"), "s")
    assert spec.to_wire()["conditions"]["executornames"] is None


def test_walltime_zero_is_sent_as_the_documented_no_limit():
    # Go sends walltime 0 / maxexectime -1, which every ColonyOS executor refuses (validate_funcspec.go)
    spec = spec_from_project("c", parse_project("projectname: p\n"), "s")
    assert (spec.conditions.walltime, spec.maxexectime) == (NO_LIMIT_WALLTIME, NO_LIMIT_WALLTIME - 1)
    assert (spec.conditions.cpu, spec.conditions.mem, spec.maxretries) == (DEFAULT_CPU, DEFAULT_MEM, 3)


def test_executor_type_extension_reaches_conditions():
    p = parse_project("projectname: p\nconditions:\n  executorType: slurm-executor\n")
    assert spec_from_project("c", p, "s").conditions.executortype == "slurm-executor"


def test_spec_round_trips_through_wire_model():
    spec = spec_from_project("dev", parse_project(SCAFFOLD_YAML), "snap1")
    again = FunctionSpec.model_validate(json.loads(spec_json(spec)))
    assert spec_json(again) == GOLDEN_SCAFFOLD


def test_labels_and_paths():
    assert labels("p") == ProjectLabels(src="/pollinator/p/src", data="/pollinator/p/data",
                                        result="/pollinator/p/result")
    assert project_dir("p") == "/cfs/pollinator/p"
    assert source_path("p", "s", "a/b.py") == "/cfs/pollinator/p/s/src/a/b.py"
    with pytest.raises(ProjectError):
        labels("a/b")


def test_build_spec_inline_job():
    spec = build_spec(
        "col", project_name="job1", snapshot_id=None, image="python:3.12", cmd="python3", args=["-c", "print(1)"],
        env={"B": "2", "A": "1"}, executor_names=None, executor_type="local-executor", cpu=2, mem="1Gi",
        walltime="1h", label="pollinator", max_retries=1, priority=1,
        extra_snapshot_mounts=[SnapshotMount(snapshotid="x", label="/l", dir="/d")],
        extra_sync_dirs=[SyncDirMount(label="/extra", dir="/extra")],
    )
    wire = spec.to_wire()
    assert wire["kwargs"] == {"args": ["-c", "print(1)"], "cmd": "python3", "docker-image": "python:3.12",
                              "init-cmd": "", "rebuild-image": False}
    assert list(wire["env"]) == ["A", "B", "PROJECT_DIR"]  # sorted, like Go maps
    assert wire["fs"]["snapshots"] == [{"snapshotid": "x", "label": "/l", "dir": "/d", "keepfiles": False,
                                        "keepsnapshot": False}]
    assert [d["label"] for d in wire["fs"]["dirs"]] == ["/pollinator/job1/result", "/pollinator/job1/data", "/extra"]
    assert (spec.maxexectime, spec.conditions.walltime, spec.conditions.cpu) == (3599, 3600, "2000m")
    assert (spec.label, spec.maxretries, spec.priority) == ("pollinator", 1, 1)


def test_build_spec_defaults_are_go_values():
    spec = build_spec("c", project_name="p", snapshot_id="s")
    assert (spec.funcname, spec.maxwaittime, spec.maxretries, spec.priority, spec.label) == (
        "execute", -1, 3, 5, GO_LABEL)
    assert spec.conditions.executortype == "container-executor"


@pytest.mark.parametrize("kwargs, match", [
    ({"project_name": ""}, "project_name"),
    ({"project_name": "a/b"}, "project_name"),
    ({"snapshot_id": ""}, "snapshot id"),
    ({"snapshot_id": "a/b"}, "snapshot id"),
    ({"nodes": 0}, "nodes"),
    ({"processes_per_node": 0}, "processes_per_node"),
    ({"gpu_count": -1}, "gpu_count"),
    ({"cpu": "lots"}, "^cpu: 'lots' is not a CPU request: use cores"),
    ({"cpu": "5m"}, "^cpu: '5m' is below 10m"),
    ({"mem": "1 lot"}, "^mem: '1 lot' is not a memory size: use"),
    ({"max_retries": 0}, "^max_retries: 0 is not accepted by the ColonyOS executors"),
    ({"max_retries": -1}, "^max_retries: -1 "),
    ({"walltime": -1}, "negative"),
    ({"walltime": "soon"}, "walltime"),
    ({"env": {"PROJECT_DIR": "/x"}}, "PROJECT_DIR"),
    ({"env": {"A=B": "x"}}, "env name"),
    ({"executor_type": ""}, "executor_type"),
    ({"executor_names": ["ok", ""]}, "empty name"),
])
def test_build_spec_rejects(kwargs, match):
    base = {"project_name": "p", "snapshot_id": "s"}
    with pytest.raises(ProjectError, match=match):
        build_spec("c", **{**base, **kwargs})


# -- property-based ----------------------------------------------------------------------------------

from test_project import projects  # noqa: E402  (same generator; tests/ is on sys.path under pytest)

snapshot_ids = st.from_regex(r"[0-9a-f]{1,64}", fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(projects(), snapshot_ids, st.text(max_size=20))
def test_spec_from_any_project_has_the_go_shape(project: Project, snapshot_id: str, colony: str):
    spec = spec_from_project(colony, project, snapshot_id)
    wire = json.loads(spec_json(spec))
    p, c, e = project.project_name, project.conditions, project.environment
    lab = labels(p)
    assert list(wire) == ["nodename", "funcname", "args", "kwargs", "priority", "maxwaittime", "maxexectime",
                          "maxretries", "conditions", "label", "fs", "env"]
    assert wire["args"] == [] and wire["funcname"] == "execute"
    assert list(wire["kwargs"]) == sorted(wire["kwargs"])
    assert wire["kwargs"]["args"] == ([f"/cfs/pollinator/{p}/{snapshot_id}/src/{e.source}"] if e.source else [])
    assert wire["kwargs"]["cmd"] == e.cmd and wire["kwargs"]["docker-image"] == e.docker
    assert wire["kwargs"]["rebuild-image"] is e.rebuild_image and wire["kwargs"]["init-cmd"] == e.init_cmd
    assert wire["env"] == {"PROJECT_DIR": f"/cfs/pollinator/{p}"}
    wall = c.walltime or NO_LIMIT_WALLTIME
    assert wire["maxexectime"] == max(wall - 1, 1) and wire["conditions"]["walltime"] == wall
    assert wire["conditions"]["colonyname"] == colony
    assert wire["conditions"]["executornames"] == c.executor_names
    assert wire["conditions"]["executortype"] == c.executor_type
    assert (wire["conditions"]["nodes"], wire["conditions"]["processespernode"]) == (c.nodes, c.processes_per_node)
    assert (wire["conditions"]["cpu"], wire["conditions"]["mem"]) == (c.cpu or DEFAULT_CPU, c.mem or DEFAULT_MEM)
    assert executor_problems(spec) == []  # every project the model takes is one the real executors run
    assert wire["conditions"]["gpu"] == {"name": c.gpu.name, "mem": "", "count": c.gpu.count, "nodecount": 0}
    assert wire["fs"]["mount"] == "/cfs"
    assert wire["fs"]["snapshots"] == [{"snapshotid": snapshot_id, "label": lab.src,
                                        "dir": f"/pollinator/{p}/{snapshot_id}/src", "keepfiles": True,
                                        "keepsnapshot": True}]
    assert [(d["label"], d["dir"], d["keepfiles"], d["onconflicts"]["onstart"]["keeplocal"],
             d["onconflicts"]["onclose"]["keeplocal"]) for d in wire["fs"]["dirs"]] == [
        (lab.result, lab.result, False, False, True), (lab.data, lab.data, True, False, False)]


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True).filter(lambda k: k != "PROJECT_DIR"),
                       st.text(max_size=10), max_size=5),
       st.lists(st.text(max_size=10), max_size=5))
def test_build_spec_env_and_args_properties(env, args):
    spec = build_spec("c", project_name="p", snapshot_id=None, env=env, args=args)
    assert spec.env == {**env, "PROJECT_DIR": "/cfs/pollinator/p"}
    assert list(spec.env) == sorted(spec.env)
    assert spec.kwargs["args"] == args
    assert spec.fs.snapshots == []
