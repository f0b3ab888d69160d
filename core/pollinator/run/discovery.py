"""Before submitting: which executors does the spec name, what type are they, and what will they do with it?

The Colonies server assigns a process only to an executor matching both
``conditions.executornames`` and ``conditions.executortype``, and Pollinator
sends ``maxwaittime -1``: a spec naming a Kube executor (which registers its own
type, e.g. ``...-kubeexecutor`` in colonyos/executors' ``kube/env``) with the
default type ``container-executor`` waits forever. So the client looks the
named executors up first, takes their type when the job left the type at its
default, and fails fast naming what is registered otherwise.

It also tells the user where a known executor family mishandles an option
(docs/executors/): the HPC executor with ``rebuild-image`` deletes the image
and leaves the process RUNNING with no Slurm job, and it pulls every image as
``docker://docker.io/<image>``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from pollinator.colonies.models import Executor
from pollinator.errors import ProjectError

log = logging.getLogger(__name__)

HPC, KUBE, DOCKER, OTHER = "hpc", "kube", "docker", "other"
APPROVED = 1
_STATES = {0: "pending approval", 1: "approved", 2: "rejected"}


def family_of(executor: Executor) -> str:
    """The colonyos/executors family an executor belongs to, from its software capability or its names."""
    words = [executor.executortype.lower(), executor.executorname.lower()]
    for sw in executor.capabilities.software or []:
        words += [sw.type.lower(), sw.name.lower()]
    text = " ".join(words)
    if "slurm" in text or "hpcexecutor" in text or "hpc-executor" in text:
        return HPC
    if "k8s" in text or "kube" in text:
        return KUBE
    if "docker" in text:
        return DOCKER
    return OTHER


@dataclass(frozen=True)
class Discovery:
    """What the lookup decided: the type to send, the families met, and warnings for the user."""

    executor_type: str
    families: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)


def _describe(executors: Sequence[Executor]) -> str:
    if not executors:
        return "none"
    return ", ".join(f"{e.executorname} (type {e.executortype}, {_STATES.get(e.state, f'state {e.state}')})"
                     for e in sorted(executors, key=lambda e: e.executorname))


def type_from_names(names: Optional[Sequence[str]], executor_type: str) -> bool:
    """Whether the type sent is the named executors' (looked up at submit) rather than the job's own:
    executors are named and the type is left at the default. A preview shows a placeholder for it."""
    from pollinator.project import DEFAULT_EXECUTOR_TYPE

    return bool(names) and executor_type == DEFAULT_EXECUTOR_TYPE


def discover(executors: Sequence[Executor], *, colony: str, names: Optional[Sequence[str]], executor_type: str,
             type_is_default: bool, rebuild_image: bool = False, image: str = "") -> Discovery:
    """Check the job's executor names and type against the registered ``executors``.

    Raises :class:`ProjectError` (nothing submitted) when a named executor is
    not registered or not approved, when the named executors have different
    types, or when the job's explicit type does not match theirs.
    """
    warnings: list[str] = []
    if names:
        by_name = {e.executorname: e for e in executors}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise ProjectError(f"executor_names: {', '.join(missing)} not registered in colony {colony!r}; "
                               f"registered: {_describe(executors)}")
        named = [by_name[n] for n in names]
        unapproved = [e for e in named if e.state != APPROVED]
        if unapproved:
            raise ProjectError(f"executor_names: {_describe(unapproved)} cannot take processes until the colony "
                               "owner approves it")
        types = sorted({e.executortype for e in named})
        if len(types) > 1:
            raise ProjectError(f"executor_names: {_describe(named)} have different types, but a spec carries one "
                               "executortype and the server matches names and type: name executors of one type")
        if types[0] != executor_type:
            if not type_is_default:
                raise ProjectError(f"executor_type={executor_type!r} does not match executor_names: "
                                   f"{_describe(named)}; the server would never assign the process "
                                   f"(use executor_type={types[0]!r}, or leave it out)")
            log.info("executor type %s taken from the named executors (instead of %s)", types[0], executor_type)
            executor_type = types[0]
        matching = named
    else:
        matching = [e for e in executors if e.executortype == executor_type and e.state == APPROVED]
        if not matching:
            warnings.append(f"no approved executor of type {executor_type!r} is registered in colony {colony!r} "
                            f"(registered: {_describe(executors)}); the process waits until one is")
    families = tuple(sorted({family_of(e) for e in matching}))
    if HPC in families:
        if rebuild_image:
            warnings.append("rebuild-image on the HPC executor deletes the Singularity image and then leaves the "
                            "process RUNNING with no Slurm job until maxexectime ends it "
                            "(hpc/pkg/executor/executor.go): remove the image on the cluster instead")
        first = image.split("/", 1)[0] if "/" in image else ""
        if first and ("." in first or ":" in first or first == "localhost"):
            warnings.append(f"image {image!r}: the HPC executor pulls every image as docker://docker.io/<image> "
                            "(common/pkg/singularity/singularity.go), so an image from another registry fails; "
                            "push it to Docker Hub or pre-build the .sif on the cluster")
    return Discovery(executor_type=executor_type, families=families, warnings=tuple(warnings))
