"""Resource normalization (pollinator.resources) against the executors' validation (pollinator.contract).

The rules mirrored by ``executor_problems`` come from colonyos/executors
``common/pkg/parsers/validate_funcspec.go``, ``cpu.go`` and ``memory.go``.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pollinator.contract import _validate_cpu, _validate_memory, executor_problems, quoting_problems, template_unsafe
from pollinator.errors import ProjectError
from pollinator.resources import (
    DEFAULT_CPU,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MEM,
    NO_LIMIT_WALLTIME,
    ResourceError,
    maxexectime_for,
    mem_mib,
    millicores,
    parse_cpu,
    parse_max_retries,
    parse_mem,
    resolve,
)
from pollinator.run.options import JobOptions
from pollinator.spec import build_spec


def test_defaults_are_explicit_and_accepted():
    res = resolve()
    assert (res.cpu, res.mem, res.walltime, res.max_retries) == (DEFAULT_CPU, DEFAULT_MEM, NO_LIMIT_WALLTIME,
                                                                  DEFAULT_MAX_RETRIES)
    assert build_spec("c", project_name="p", snapshot_id=None, cmd="true").maxexectime == NO_LIMIT_WALLTIME - 1


@pytest.mark.parametrize("wall, maxexec", [(1, 1), (2, 1), (600, 599)])
def test_maxexectime_stays_within_the_executors_rule(wall, maxexec):
    assert maxexectime_for(wall) == maxexec
    spec = build_spec("c", project_name="p", snapshot_id=None, cmd="true", walltime=wall)
    assert executor_problems(spec) == []


def test_one_error_names_field_value_and_forms():
    with pytest.raises(ResourceError) as info:
        resolve(cpu="1", mem="lots")
    assert info.value.field == "mem"
    assert str(info.value).startswith("mem: 'lots' is not a memory size: use a memory size like 1000Mi, 2Gi")
    with pytest.raises(ProjectError, match=r"^invalid job options: cpu: Value error, '0' is below 10m"):
        JobOptions.build(name="n", cmd="true", cpu="0")
    with pytest.raises(ProjectError, match=r"max_retries: .*0 is not accepted by the ColonyOS executors"):
        JobOptions.build(name="n", cmd="true", max_retries=0)


def test_job_options_carry_normalized_values():
    o = JobOptions.build(name="n", cmd="true", cpu="2.5", mem="512M", walltime="1h")
    assert (o.cpu, o.mem, o.walltime, o.max_retries) == ("2500m", "489Mi", 3600, 3)


@pytest.mark.parametrize("value, ok", [("1000m", True), ("10m", True), ("9m", False), ("1", False), ("", False),
                                       ("-100m", False), ("1.5m", False)])
def test_validate_cpu_mirror(value, ok):
    assert (_validate_cpu(value) == "") is ok


@pytest.mark.parametrize("value, ok", [("1Mi", True), ("2Gi", True), ("1.5Gi", True), ("1G", False), ("Mi", False),
                                       ("-1Gi", False), ("1024Ki", False), ("", False)])
def test_validate_memory_mirror(value, ok):
    assert (_validate_memory(value) == "") is ok


cpu_inputs = st.one_of(st.integers(1, 512), st.integers(10, 10**6).map(lambda n: f"{n}m"),
                       st.decimals(min_value="0.01", max_value="512", places=3).map(str))
mem_inputs = st.one_of(st.integers(1, 2**44),
                       st.tuples(st.integers(1, 10**6), st.sampled_from(["Ki", "Mi", "Gi", "Ti", "k", "M", "G", "T",
                                                                           "MB", "GiB", ""]))
                       .map(lambda t: f"{t[0]}{t[1]}"))


@settings(max_examples=200, deadline=None)
@given(cpu_inputs, mem_inputs, st.integers(0, 10**6), st.integers(1, 100))
def test_anything_accepted_is_run_by_the_executors(cpu, mem, walltime, retries):
    spec = build_spec("c", project_name="p", snapshot_id=None, cmd="true", cpu=cpu, mem=mem, walltime=walltime,
                      max_retries=retries)
    assert executor_problems(spec) == []


@settings(max_examples=200, deadline=None)
@given(mem_inputs)
def test_memory_is_never_rounded_down(mem):
    text = parse_mem(mem)
    wanted = parse_mem(mem)  # idempotent
    assert parse_mem(text) == wanted
    size = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9,
            "T": 10**12, "MB": 10**6, "GiB": 2**30, "": 1}
    if isinstance(mem, int):
        asked = mem
    else:
        digits = "".join(ch for ch in mem if ch.isdigit())
        asked = int(digits) * size[mem[len(digits):]]
    assert mem_mib(text) * 2**20 >= asked


@settings(max_examples=200, deadline=None)
@given(cpu_inputs)
def test_cpu_is_exact_millicores(cpu):
    from decimal import Decimal

    text = parse_cpu(cpu)
    expect = int(str(cpu)[:-1]) if str(cpu).endswith("m") else int(Decimal(str(cpu)) * 1000)
    assert millicores(text) == expect and parse_cpu(text) == text


def test_retries_parser():
    assert parse_max_retries(None) == DEFAULT_MAX_RETRIES and parse_max_retries(1) == 1
    for bad in (0, -1, True, "x"):
        with pytest.raises(ValueError):
            parse_max_retries(bad)


def test_quoting_check_finds_what_templates_change():
    assert template_unsafe("sh /cfs/pollinator/p/runs/abc/launch.sh") == ""
    assert template_unsafe('python3 -c "print(1+1)" && echo $HOME') == '"(+)&$'
    spec = build_spec("c", project_name="p", snapshot_id=None, cmd="echo 'hi'", env={"X": "a&b"})
    problems = quoting_problems(spec)
    assert any(p.startswith("kwargs.cmd holds \"'\"") for p in problems), problems
    assert any(p.startswith("env X holds '&'") for p in problems), problems
