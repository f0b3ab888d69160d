"""Make the local executor no kinder than the ColonyOS executors users deploy (colonyos/executors).

The local executor is lenient: it runs any cmd, any resource string, walltime
0. The ``hpc``, ``kube`` and ``docker`` executors are not (see docs/executors/):

* ``strict``: refuse, before anything runs, every spec they refuse
  (``ValidateFuncSpec``, :func:`pollinator.contract.executor_problems`) and every
  command, argument or env value their templates would change
  (:func:`pollinator.contract.quoting_problems`): the HPC executor's Slurm script
  goes through Go's ``html/template``, the Kube executor's Job through
  ``text/template`` into YAML. Refusing is louder than mangling the command as
  they do, and what the suite needs: a spec that passes here passes there.
* ``exit_codes="ignore"``: close a finished job SUCCESS whatever its exit code,
  as the Kube executor does (``kube/pkg/executor/executor.go`` closes the
  process once the pod logs end; it never reads the container's exit code), so
  tests can show that Pollinator's own exit record still fails the task.

``pollinator dev`` and the test colony start their executors strict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pollinator.contract import executor_problems, quoting_problems

HONOUR, IGNORE = "honour", "ignore"
EXIT_CODE_MODES = (HONOUR, IGNORE)


@dataclass(frozen=True)
class Conformance:
    """How closely the local executor copies the real executors' behaviour."""

    strict: bool = False
    exit_codes: str = HONOUR

    def __post_init__(self) -> None:
        if self.exit_codes not in EXIT_CODE_MODES:
            raise ValueError(f"exit_codes={self.exit_codes!r}: use one of {', '.join(EXIT_CODE_MODES)}")

    @property
    def ignores_exit_codes(self) -> bool:
        return self.exit_codes == IGNORE

    def refusal(self, spec: Any) -> list[str]:
        """The errors a strict executor closes the process with (``[]``: it runs)."""
        if not self.strict:
            return []
        problems = executor_problems(spec) + quoting_problems(spec)
        if not problems:
            return []
        return ["strict mode: the ColonyOS hpc/kube/docker executors would not run this spec "
                "(colonyos/executors common/pkg/parsers/validate_funcspec.go, common/pkg/slurm/"
                "slurm_batch_template.go, common/pkg/k8s/job_tpl.go):", *problems]
