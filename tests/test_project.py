"""project.yaml: Go compatibility, located errors, scalar rules, round trips (incl. property-based)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pollinator.errors import ProjectError
from pollinator.project import (
    DEFAULT_EXECUTOR_TYPE,
    Project,
    load_project,
    parse_cpu,
    parse_mem,
    parse_project,
    parse_walltime,
)

# The Go repository's example, byte for byte (trailing spaces included).
GO_EXAMPLE = """projectname: jupyter
conditions:
  executorNames:
  - lumi-std 
  nodes: 1
  processesPerNode: 1
  cpu: 1000m
  mem: 1000Mi
  walltime: 200 
  gpu:
    count: 0
    name: ""
environment:
  docker: enccs/notebook
  rebuildImage: false
  cmd: jupyter lab --allow-root --ip 0.0.0.0 --notebook-dir / --NotebookApp.token=secret
tunnel:
  user: USER
  jumpHost: HOST
  jumpHostPort: 22
  sshKey: XXX/.ssh/id_lumi_rsa
  localPort: 38888 
  remotePort: 8888 
"""

# What the Go tool's GenerateProjectConfig writes (yaml.v2 Marshal of the Project struct).
GO_SCAFFOLD = """projectname: {name}
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
tunnel: null
"""


def _error(text: str) -> str:
    with pytest.raises(ProjectError) as info:
        parse_project(text, source="p.yaml")
    return str(info.value)


# -- Go compatibility ------------------------------------------------------------------------------

def test_go_example_loads():
    p = parse_project(GO_EXAMPLE)
    assert p.project_name == "jupyter"
    assert p.conditions.executor_names == ["lumi-std"]
    assert p.conditions.executor_type == DEFAULT_EXECUTOR_TYPE
    assert (p.conditions.nodes, p.conditions.processes_per_node) == (1, 1)
    assert (p.conditions.cpu, p.conditions.mem, p.conditions.walltime) == ("1000m", "1000Mi", 200)
    assert p.environment.docker == "enccs/notebook"
    assert p.environment.source == "" and p.environment.init_cmd == ""
    assert p.tunnel is not None and p.tunnel.jump_host_port == 22 and p.tunnel.remote_port == 8888


def test_scaffold_matches_go_generate_project_config():
    p = Project.scaffold("x")
    assert re.fullmatch(r"[0-9a-f]{64}", p.project_name)
    assert p.dump_yaml() == GO_SCAFFOLD.format(name=p.project_name)
    assert Project.scaffold("x").project_name != p.project_name  # fresh every time


def test_scaffold_executor_type_is_written_only_when_not_default():
    p = Project.scaffold("x", "slurm-executor")
    text = p.dump_yaml()
    assert "  executorType: slurm-executor\n" in text
    assert parse_project(text).conditions.executor_type == "slurm-executor"
    assert "executorType" not in Project.scaffold("x").dump_yaml()


def test_go_example_round_trips_through_dump():
    p = parse_project(GO_EXAMPLE)
    again = parse_project(p.dump_yaml())
    assert again == p
    assert yaml.safe_load(p.dump_yaml())["tunnel"]["sshKey"] == "XXX/.ssh/id_lumi_rsa"


def test_missing_sections_take_defaults():
    p = parse_project("projectname: a\nconditions:\nenvironment:\n")
    assert p.conditions.nodes == 1 and p.conditions.walltime == 0 and p.conditions.executor_names is None
    assert p.environment.cmd == "" and p.tunnel is None


def test_load_project_from_dir_and_file(tmp_path: Path):
    (tmp_path / "project.yaml").write_text(GO_EXAMPLE)
    for arg in (tmp_path, tmp_path / "project.yaml", str(tmp_path)):
        p = load_project(arg)
        assert p.project_name == "jupyter"
        assert p.path == tmp_path / "project.yaml"
        assert p.root == tmp_path and p.cfs_dir == tmp_path / "cfs"


def test_load_project_missing_file_names_it(tmp_path: Path):
    with pytest.raises(ProjectError, match=r"project\.yaml: no such file.*pollinator new"):
        load_project(tmp_path)


def test_write_then_load(tmp_path: Path):
    p = Project.scaffold("e1")
    path = p.write(tmp_path)
    assert path == tmp_path / "project.yaml"
    assert load_project(tmp_path) == p


# -- located errors --------------------------------------------------------------------------------

def test_unknown_key_has_line_and_did_you_mean():
    msg = _error("projectname: a\nconditions:\n  nodes: 2\n  walltim: 5\n")
    assert msg.startswith("p.yaml:4: conditions.walltim: unknown key `walltim`: did you mean `walltime`?")
    assert "\n" not in msg


def test_wrong_case_go_key_is_hinted():
    msg = _error("projectname: a\nconditions:\n  executornames: [x]\n")
    assert "p.yaml:3: conditions.executornames" in msg and "did you mean `executorNames`" in msg


def test_python_field_names_are_not_accepted_in_yaml():
    msg = _error("projectname: a\nenvironment:\n  init_cmd: x\n")
    assert "p.yaml:3: environment.init_cmd: unknown key" in msg and "did you mean `init-cmd`" in msg


def test_all_problems_in_one_error_sorted_by_line():
    msg = _error("projectname: a/b\nconditions:\n  nodes: 0\n  cpu: 1.2.3\n  mem: lots\n"
                 "  gpu:\n    count: -1\nenvironment:\n  rebuildImage: 'yes'\n")
    lines = msg.splitlines()
    assert lines[0] == "p.yaml: 6 problems"
    assert [int(re.search(r"p\.yaml:(\d+):", l).group(1)) for l in lines[1:]] == [1, 3, 4, 5, 7, 9]
    assert "projectname: 'a/b' is not a safe project name" in msg
    assert "conditions.nodes: " in msg and "an integer >= 1" in msg
    assert "conditions.cpu: '1.2.3' is not a CPU request: use cores like 1, 4 or 2.5, or millicores like 500m" in msg
    assert "conditions.mem: 'lots' is not a memory size" in msg
    assert "conditions.gpu.count:" in msg and ">= 0" in msg
    assert "environment.rebuildImage:" in msg and "true or false" in msg


def test_missing_projectname():
    msg = _error("conditions:\n  nodes: 1\n")
    assert msg.startswith("p.yaml:1: projectname: required")


def test_list_item_error_has_item_line():
    msg = _error("projectname: a\nconditions:\n  executorNames:\n  - ok\n  - ''\n")
    assert msg.startswith("p.yaml:5: conditions.executorNames[1]: an executor name must not be empty")


def test_executor_names_must_be_a_list():
    msg = _error("projectname: a\nconditions:\n  executorNames: lumi\n")
    assert "p.yaml:3: conditions.executorNames:" in msg and "a list of executor names" in msg


@pytest.mark.parametrize("text, expect", [
    ("", "the file is empty"),
    ("- a\n- b\n", "must be a YAML mapping"),
    ("projectname: [a\n", "not valid YAML"),
    ("projectname: a\nprojectname: b\n", "p.yaml:2: projectname: duplicate key (first on line 1)"),
    ("projectname: a\nconditions: 5\n", "p.yaml:2: conditions:"),
    ("projectname: a\nconditions:\n  nodes: '2'\n", "p.yaml:3: conditions.nodes:"),
    ("projectname: a\nconditions:\n  nodes: true\n", "p.yaml:3: conditions.nodes:"),
    ("projectname: a\nconditions:\n  walltime: -5\n", "p.yaml:3: conditions.walltime: -5 is negative"),
    ("projectname: a\nenvironment:\n  source: ../../etc/passwd\n", "p.yaml:3: environment.source:"),
    ("projectname: a\nenvironment:\n  source: /abs.py\n", "not a file inside cfs/src"),
    ("projectname: ..\n", "not a safe project name"),
    ("projectname: ''\n", "not a safe project name"),
    ("projectname: -x\n", "not a safe project name"),
    ("projectname: a\ntunnel:\n  localPort: 70000\n", "p.yaml:3: tunnel.localPort:"),
    ("projectname: a\nextra: 1\n", "p.yaml:2: extra: unknown key `extra`"),
])
def test_bad_files(text: str, expect: str):
    assert expect in _error(text)


def test_load_project_error_names_the_path(tmp_path: Path):
    (tmp_path / "project.yaml").write_text("projectname: a\nconditions:\n  cpu: x\n")
    with pytest.raises(ProjectError) as info:
        load_project(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'project.yaml'}:3: conditions.cpu:")


def test_scalars_are_taken_as_text_like_go():
    p = parse_project("projectname: 123\nconditions:\n  cpu: 2\n  mem: 1048576\nenvironment:\n  cmd: 7\n")
    # cpu/mem numbers are cores and bytes, normalized into the executors' forms (pollinator.resources)
    assert (p.project_name, p.conditions.cpu, p.conditions.mem, p.environment.cmd) == ("123", "2000m", "1Mi", "7")


def test_go_written_resources_load_and_dump_unchanged():
    text = "projectname: p\nconditions:\n  cpu: 1000m\n  mem: 1000Mi\n  walltime: 600\n"
    c = yaml.safe_load(parse_project(text).dump_yaml())["conditions"]
    assert (c["cpu"], c["mem"], c["walltime"]) == ("1000m", "1000Mi", 600)


# -- scalar rules ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, out", [("500m", "500m"), ("1", "1000m"), ("2.5", "2500m"), (1, "1000m"),
                                        (2.5, "2500m"), ("", ""), (None, ""), (" 4 ", "4000m"), ("0.01", "10m"),
                                        ("10m", "10m"), ("0500m", "500m")])
def test_cpu_ok(value, out):
    assert parse_cpu(value) == out


@pytest.mark.parametrize("value", ["1.2.3", "m", "1.5m", "-1", "1 cpu", True, float("nan"), "0", "9m", "0.0005",
                                   "0.001"])
def test_cpu_bad(value):
    with pytest.raises(ValueError):
        parse_cpu(value)


@pytest.mark.parametrize("value, out", [("1000Mi", "1000Mi"), ("1Gi", "1Gi"), ("512M", "489Mi"), ("1G", "954Mi"),
                                        ("64k", "1Mi"), ("1048576", "1Mi"), (1048576, "1Mi"), ("1.5Gi", "1536Mi"),
                                        ("", ""), ("1Ti", "1024Gi"), ("1 GB", "954Mi"), ("1GiB", "1Gi"),
                                        ("2097152Ki", "2Gi"), (3 * 2**30, "3Gi"), ("1048577", "2Mi")])
def test_mem_ok(value, out):
    assert parse_mem(value) == out


@pytest.mark.parametrize("value", ["Gi", "-1Gi", "0Mi", "0", "1Xi", "lots", False, [1]])
def test_mem_bad(value):
    with pytest.raises(ValueError):
        parse_mem(value)


@pytest.mark.parametrize("value, seconds", [
    (600, 600), (0, 0), ("600", 600), ("90s", 90), ("30m", 1800), ("1h", 3600), ("1h30m", 5400),
    ("2d", 172800), ("30:00", 1800), ("01:00:00", 3600), ("1-00:00:00", 86400), ("90:00", 5400), ("1H", 3600),
])
def test_walltime_ok(value, seconds):
    assert parse_walltime(value) == seconds


@pytest.mark.parametrize("value", ["", "1x", "1:2:3:4", "01:61:00", "1:00:60", -1, True, 1.5, "h", 2**31])
def test_walltime_bad(value):
    with pytest.raises(ValueError):
        parse_walltime(value)


def test_walltime_string_is_dumped_as_go_int():
    p = parse_project("projectname: a\nconditions:\n  walltime: 1h\n")
    assert yaml.safe_load(p.dump_yaml())["conditions"]["walltime"] == 3600


# -- property-based ----------------------------------------------------------------------------------

names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}", fullmatch=True)
labels_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)
cpus = st.one_of(st.integers(10, 10**6).map(lambda n: f"{n}m"), st.integers(1, 512).map(str),
                 st.tuples(st.integers(1, 64), st.integers(0, 999)).map(lambda t: f"{t[0]}.{t[1]}"), st.just(""))
mems = st.one_of(st.tuples(st.integers(1, 10**6), st.sampled_from(["Ki", "Mi", "Gi", "Ti", "k", "K", "M", "G", ""]))
                 .map(lambda t: f"{t[0]}{t[1]}"), st.just(""))


@st.composite
def projects(draw) -> Project:
    return Project(
        project_name=draw(names),
        conditions={
            "executor_names": draw(st.one_of(st.none(), st.lists(labels_text.filter(lambda s: s.strip()),
                                                                 max_size=3))),
            "executor_type": draw(labels_text.filter(lambda s: s.strip()) | st.just(DEFAULT_EXECUTOR_TYPE)),
            "nodes": draw(st.integers(1, 10**4)),
            "processes_per_node": draw(st.integers(1, 256)),
            "cpu": draw(cpus),
            "mem": draw(mems),
            "walltime": draw(st.integers(0, 2**31 - 1)),
            "gpu": {"count": draw(st.integers(0, 16)), "name": draw(labels_text)},
        },
        environment={
            "docker": draw(labels_text), "rebuild_image": draw(st.booleans()), "init_cmd": draw(labels_text),
            "cmd": draw(labels_text),
            "source": draw(st.one_of(st.just(""), st.from_regex(r"[a-z][a-z0-9_]{0,8}(/[a-z0-9_]{1,8}){0,2}\.py",
                                                                  fullmatch=True))),
        },
    )


@settings(max_examples=150, deadline=None)
@given(projects())
def test_dump_then_parse_is_identity(project: Project):
    text = project.dump_yaml()
    again = parse_project(text)
    assert again == project
    assert again.dump_yaml() == text
    keys = yaml.safe_load(text)
    assert list(keys) == ["projectname", "conditions", "environment", "tunnel"]
    assert list(keys["environment"]) == ["docker", "rebuildImage", "init-cmd", "cmd", "source"]


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=12), st.integers() | st.text(max_size=8) | st.none(), max_size=4),
       st.dictionaries(st.text(max_size=12), st.integers() | st.text(max_size=8) | st.booleans(), max_size=4))
def test_arbitrary_mappings_load_or_raise_one_project_error(conditions, environment):
    text = yaml.safe_dump({"projectname": "p", "conditions": conditions, "environment": environment})
    try:
        parse_project(text)
    except ProjectError as exc:
        assert str(exc).startswith("project.yaml")


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_any_text_loads_or_raises_project_error(text: str):
    try:
        parse_project(text)
    except ProjectError:
        pass


# -- inputs: (Pollinator extension) ----------------------------------------------------------------

def test_inputs_extension_loads_dumps_only_when_used_and_checks_labels():
    text = "projectname: b\ninputs:\n  prep: /pollinator/prep/result\n  raw: /data/raw\n"
    project = parse_project(text, source="p.yaml")
    assert project.inputs == {"prep": "/pollinator/prep/result", "raw": "/data/raw"}
    dumped = project.dump_yaml()
    assert "inputs:\n  prep: /pollinator/prep/result\n  raw: /data/raw\n" in dumped
    assert parse_project(dumped).inputs == project.inputs
    # a Go-written file has none and dumps without the key: the Go tool keeps reading what we write
    go = parse_project(GO_EXAMPLE)
    assert go.inputs == {} and "inputs" not in go.dump_yaml()
    assert parse_project("projectname: b\ninputs:\n").inputs == {}
    # merged with the caller's inputs (same name: the caller's label)
    opts = parse_project(text + "environment:\n  cmd: cat\n").job_options(inputs={"prep": "/pollinator/other/result", "extra": "/x"})
    assert opts.inputs == {"prep": "/pollinator/other/result", "raw": "/data/raw", "extra": "/x"}


@pytest.mark.parametrize("body, expect", [
    ("inputs:\n  bad-name: /x\n", "p.yaml:2: inputs: input name 'bad-name' must be a valid identifier"),
    ("inputs:\n  prep: pollinator/prep/result\n", "label 'pollinator/prep/result' must be an absolute ColonyFS label"),
    ("inputs:\n  prep: /a/../b\n", "must be an absolute ColonyFS label like /pollinator/prep/result"),
    ("inputs:\n- /pollinator/prep/result\n", "p.yaml:2: inputs:"),
])
def test_bad_inputs_name_the_field_and_the_fix(body: str, expect: str):
    assert expect in _error("projectname: b\n" + body)


def test_inputs_take_a_label_or_a_label_pinned_to_a_snapshot():
    from pollinator.pins import InputRef, parse_input, pinned
    from pollinator.run.options import JobOptions

    assert parse_input("/pollinator/p/result") == InputRef("/pollinator/p/result", None)
    assert parse_input(pinned("/pollinator/p/runs/r/result", "abc")) == InputRef("/pollinator/p/runs/r/result", "abc")
    assert parse_input("/pollinator/a@b/result").snapshot_id is None  # an '@' inside the label is the label's
    opts = JobOptions.build(name="t", cmd="x", inputs={"prep": "/pollinator/p/result@abc"})
    assert opts.inputs == {"prep": "/pollinator/p/result@abc"}
    for bad, why in [("/pollinator/p/result@", "give the snapshot id"), ("pollinator/p@abc", "absolute")]:
        with pytest.raises(ProjectError, match=f"inputs: .*input 'prep': .*{why}"):
            JobOptions.build(name="t", cmd="x", inputs={"prep": bad})
