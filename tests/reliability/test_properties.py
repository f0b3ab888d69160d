"""Property tests: any valid project round-trips through dump_yaml/load; spec invariants hold for all of them."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

import rel_tally
from pollinator.project import Conditions, Environment, GPU, Project, parse_project
from pollinator.resources import effective_walltime
from pollinator.spec import CFS_MOUNT, GO_LABEL, labels, spec_from_project

names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}", fullmatch=True)
cpus = st.one_of(st.just(""), st.integers(10, 64000).map(lambda n: f"{n}m"), st.integers(1, 256).map(str))
mems = st.one_of(st.just(""), st.builds(lambda n, u: f"{n}{u}", st.integers(1, 10**6),
                                        st.sampled_from(["", "Ki", "Mi", "Gi", "k", "M", "G"])))
text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)

def _project(project_name, conditions, environment):
    return Project.model_validate({"projectname": project_name, "conditions": conditions,
                                   "environment": environment})


projects = st.builds(
    _project,
    project_name=names,
    conditions=st.builds(Conditions, executor_names=st.one_of(st.none(), st.lists(names, max_size=3)),
                         executor_type=names, nodes=st.integers(1, 10_000),
                         processes_per_node=st.integers(1, 512), cpu=cpus, mem=mems,
                         walltime=st.integers(0, 2**31 - 1),
                         gpu=st.builds(GPU, count=st.integers(0, 16), name=text)),
    environment=st.builds(Environment, docker=text, rebuild_image=st.booleans(), init_cmd=text, cmd=text,
                          source=st.one_of(st.just(""), st.from_regex(r"[a-z]{1,8}(/[a-z]{1,8}){0,2}\.py",
                                                                      fullmatch=True))),
)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(projects)
def test_any_valid_project_round_trips_through_yaml(project):
    again = parse_project(project.dump_yaml())
    assert again == project
    assert again.dump_yaml() == project.dump_yaml()


@hsettings(max_examples=150, deadline=None)
@given(projects, st.from_regex(r"[0-9a-f]{64}", fullmatch=True), names)
def test_spec_invariants(project, snapshot_id, colony):
    spec = spec_from_project(colony, project, snapshot_id)
    lab = labels(project.project_name)
    c = project.conditions
    walltime = effective_walltime(c.walltime)  # 0 (no limit in project.yaml) is sent as one day
    assert walltime == (c.walltime or 86400)
    assert spec.maxexectime == (walltime - 1 if walltime > 1 else 1)  # Go's walltime-1; the executors need > 0
    assert 0 < spec.maxexectime <= walltime
    assert spec.conditions.walltime == walltime
    assert spec.conditions.colonyname == colony and spec.label == GO_LABEL
    assert spec.conditions.nodes == c.nodes and spec.conditions.processespernode == c.processes_per_node
    assert spec.conditions.executornames == c.executor_names
    assert [m.label for m in spec.fs.snapshots] == [lab.src] and spec.fs.snapshots[0].snapshotid == snapshot_id
    assert [d.label for d in spec.fs.dirs] == [lab.result, lab.data]
    assert spec.fs.mount == CFS_MOUNT
    assert spec.env["PROJECT_DIR"] == f"{CFS_MOUNT}/pollinator/{project.project_name}"
    for m in [*spec.fs.snapshots, *spec.fs.dirs]:
        assert m.label.startswith(f"/pollinator/{project.project_name}/")
    args = spec.kwargs["args"]
    if project.environment.source:
        assert args == [f"{spec.env['PROJECT_DIR']}/{snapshot_id}/src/{project.environment.source}"]
    else:
        assert args == []
