"""Executor discovery and exit-record rules (pure functions; the colony tests drive them end to end)."""

from __future__ import annotations

import pytest

from pollinator.colonies.models import Capabilities, Executor, Software
from pollinator.errors import ProjectError
from pollinator.run.discovery import DOCKER, HPC, KUBE, OTHER, discover, family_of
from pollinator.run.exit_record import ExitRecord, failure


def ex(name, type_="container-executor", state=1, sw=""):
    caps = Capabilities(software=[Software(name=sw, type=sw)] if sw else None)
    return Executor(executorname=name, executortype=type_, state=state, capabilities=caps)


REGISTERED = [ex("hpc1", sw="slurm"), ex("k1", "borg-kubeexecutor", sw="k8s"), ex("d1", "docker-executor"),
              ex("new", state=0), ex("local")]


def test_families():
    assert [family_of(e) for e in REGISTERED] == [HPC, KUBE, DOCKER, OTHER, OTHER]


def test_named_kube_executor_gives_its_type_when_the_job_left_the_default():
    d = discover(REGISTERED, colony="c", names=["k1"], executor_type="container-executor", type_is_default=True)
    assert (d.executor_type, d.families) == ("borg-kubeexecutor", (KUBE,))


def test_explicit_type_that_never_matches_fails_fast():
    with pytest.raises(ProjectError, match=r"executor_type='container-executor' does not match executor_names: "
                                           r"k1 \(type borg-kubeexecutor, approved\)"):
        discover(REGISTERED, colony="c", names=["k1"], executor_type="container-executor", type_is_default=False)


def test_unknown_name_lists_what_is_registered():
    with pytest.raises(ProjectError) as info:
        discover(REGISTERED, colony="c", names=["hpc2"], executor_type="container-executor", type_is_default=True)
    assert str(info.value).startswith("executor_names: hpc2 not registered in colony 'c'; registered: d1 (type "
                                      "docker-executor, approved), hpc1 (type container-executor, approved)")


def test_unapproved_and_mixed_types_fail():
    with pytest.raises(ProjectError, match="new .*pending approval"):
        discover(REGISTERED, colony="c", names=["new"], executor_type="container-executor", type_is_default=True)
    with pytest.raises(ProjectError, match="different types"):
        discover(REGISTERED, colony="c", names=["hpc1", "k1"], executor_type="x", type_is_default=True)


def test_hpc_warnings():
    d = discover(REGISTERED, colony="c", names=["hpc1"], executor_type="container-executor", type_is_default=True,
                 rebuild_image=True, image="ghcr.io/me/img:1")
    assert len(d.warnings) == 2
    assert d.warnings[0].startswith("rebuild-image on the HPC executor deletes the Singularity image")
    assert "docker://docker.io/<image>" in d.warnings[1]
    assert discover(REGISTERED, colony="c", names=["hpc1"], executor_type="container-executor",
                    type_is_default=True, image="me/img:1").warnings == ()


def test_no_names_and_no_executor_of_the_type_warns():
    d = discover(REGISTERED, colony="c", names=None, executor_type="gpu-executor", type_is_default=False)
    assert d.warnings and "no approved executor of type 'gpu-executor'" in d.warnings[0]


def test_exit_record_rules():
    ok = ExitRecord(exit_code=0, complete=True, process_id="p")
    assert failure([ok], "p") is None
    message, code = failure([ExitRecord(exit_code=3, complete=True, process_id="p")], "p")
    assert code == 3 and message.startswith("the command exited with code 3")
    assert failure([], "p")[1] is None and "no exit record" in failure([], "p")[0]
    assert failure([ExitRecord(exit_code=0, complete=True, process_id="other")], "p")[1] is None  # stale record
    assert failure([ok, ExitRecord(exit_code=2, complete=True, process_id="p", rank="1")], "p")[1] == 2
    init = failure([ExitRecord(exit_code=4, complete=True, process_id="p", stage="init-cmd")], "p")
    assert init[0].startswith("the init-cmd exited with code 4")
