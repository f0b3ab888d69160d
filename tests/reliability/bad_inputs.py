"""The bad-input corpus: every case must be refused with an error naming the field (as data).

``kind`` says how a case is fed in:

* ``project`` - ``pollinator run -p <dir>`` on a project whose project.yaml is ``GOOD`` with ``replace``
  applied (or ``yaml`` verbatim), after ``setup`` (a named extra step) and with ``env`` overrides
  (``None`` unsets a variable);
* ``inline``  - ``Job.inline(settings, **GOOD_INLINE | inline).submit()``;
* ``airflow`` / ``prefect`` - adapter settings built from connection / block fields.

``field``: substrings that must all appear in the error message.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Any, Optional

GOOD = """\
projectname: relbad
conditions:
  executorNames:
  - dev-k8s
  nodes: 1
  processesPerNode: 1
  cpu: 500m
  mem: 100Mi
  walltime: 60
  gpu:
    count: 0
    name: ""
environment:
  docker: python:3.12
  rebuildImage: false
  init-cmd: ""
  cmd: python3
  source: main.py
"""

GOOD_INLINE: dict[str, Any] = dict(name="relbad-inline", cmd="echo hi", executor_names=["dev-k8s"], walltime=60)


@dataclass(frozen=True)
class Case:
    id: str
    field: tuple[str, ...]
    kind: str = "project"
    replace: tuple[tuple[str, str], ...] = ()
    yaml: Optional[str] = None
    setup: str = ""
    env: dict[str, Optional[str]] = dc_field(default_factory=dict)
    inline: dict[str, Any] = dc_field(default_factory=dict)
    fields: dict[str, Any] = dc_field(default_factory=dict)  # adapter fields

    def project_yaml(self) -> str:
        if self.yaml is not None:
            return self.yaml
        text = GOOD
        for old, new in self.replace:
            assert old in text, f"{self.id}: {old!r} not in GOOD"
            text = text.replace(old, new, 1)
        return text


def P(id: str, field, *replace: tuple[str, str], **kw) -> Case:
    return Case(id, (field,) if isinstance(field, str) else tuple(field), replace=tuple(replace), **kw)


def _nest(depth: int) -> str:
    return "projectname: deep\nconditions: " + "[" * depth + "]" * depth + "\n"


def _lol() -> str:
    lines = ["projectname: lol", 'lol0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        refs = ",".join([f"*l{i - 1}"] * 9)
        lines.append(f"lol{i}: &l{i} [{refs}]")
    return "\n".join(lines) + "\n"


CASES: list[Case] = [
    # -- malformed YAML ----------------------------------------------------------------------------------
    P("yaml-unclosed-flow", ("project.yaml", "YAML"), ("executorNames:\n  - dev-k8s", "executorNames: [dev-k8s")),
    P("yaml-tab-indent", ("project.yaml", "YAML"), ("  nodes: 1", "\tnodes: 1")),
    P("yaml-duplicate-key", ("conditions.nodes", "duplicate"), ("  nodes: 1\n", "  nodes: 1\n  nodes: 2\n")),
    Case("yaml-top-level-list", ("project.yaml", "mapping"), yaml="- projectname\n- x\n"),
    Case("yaml-empty", ("project.yaml", "empty"), yaml=""),
    Case("yaml-control-char", ("project.yaml", "YAML"), yaml="projectname: a\x07b\n"),
    Case("yaml-nested-too-deep", ("project.yaml",), yaml=_nest(5000)),
    Case("yaml-alias-bomb", ("lol",), yaml=_lol()),
    Case("yaml-not-utf8", ("project.yaml", "cannot read"), setup="binary_yaml"),
    # -- wrong types and values -----------------------------------------------------------------------------
    P("nodes-word", "conditions.nodes", ("nodes: 1", "nodes: two")),
    P("nodes-zero", "conditions.nodes", ("nodes: 1", "nodes: 0")),
    P("nodes-negative", "conditions.nodes", ("nodes: 1", "nodes: -3")),
    P("ppn-zero", "processesPerNode", ("processesPerNode: 1", "processesPerNode: 0")),
    P("gpu-count-negative", "gpu.count", ("count: 0", "count: -1")),
    P("gpu-count-string", "gpu.count", ("count: 0", 'count: "1"')),
    P("gpu-not-mapping", "gpu", ("gpu:\n    count: 0\n    name: \"\"", "gpu: abc")),
    P("conditions-list", "conditions", ("conditions:\n", "conditions:\n- x\nignored:\n")),
    P("rebuild-yes", "rebuildImage", ("rebuildImage: false", 'rebuildImage: "yes"')),
    P("executornames-string", "executorNames", ("executorNames:\n  - dev-k8s", "executorNames: dev-k8s")),
    P("executornames-empty-name", "executorNames", ("- dev-k8s", '- ""')),
    P("cpu-dotted", "cpu", ("cpu: 500m", "cpu: 1.5.3")),
    P("cpu-word", "cpu", ("cpu: 500m", "cpu: lots")),
    P("cpu-negative", "cpu", ("cpu: 500m", "cpu: -1")),
    P("mem-unit", "mem", ("mem: 100Mi", "mem: 1XB")),
    P("mem-zero", "mem", ("mem: 100Mi", "mem: 0Mi")),
    P("cpu-below-executors-minimum", "cpu", ("cpu: 500m", "cpu: 5m")),
    P("mem-negative", "mem", ("mem: 100Mi", "mem: -5Mi")),
    P("mem-bool", "mem", ("mem: 100Mi", "mem: true")),
    P("walltime-negative", "walltime", ("walltime: 60", "walltime: -1")),
    P("walltime-word", "walltime", ("walltime: 60", "walltime: forever")),
    P("walltime-bad-clock", "walltime", ("walltime: 60", 'walltime: "1:99"')),
    P("walltime-huge", "walltime", ("walltime: 60", "walltime: 99999999999")),
    P("walltime-fraction", "walltime", ("walltime: 60", "walltime: 1.5")),
    P("name-traversal", "projectname", ("projectname: relbad", "projectname: ../evil")),
    P("name-space", "projectname", ("projectname: relbad", 'projectname: "has space"')),
    P("name-dash", "projectname", ("projectname: relbad", "projectname: -x")),
    P("name-too-long", "projectname", ("projectname: relbad", "projectname: " + "n" * 300)),
    P("name-missing", "projectname", ("projectname: relbad\n", "")),
    P("unknown-key-typo", ("walltim", "walltime"), ("walltime: 60", "walltim: 60")),
    P("unknown-top-key", "environmnt", ("environment:", "environmnt:")),
    P("source-traversal", "source", ("source: main.py", "source: ../../etc/passwd")),
    P("source-absolute", "source", ("source: main.py", "source: /etc/passwd")),
    P("tunnel-port-range", "jumpHostPort", ("environment:", "tunnel:\n  jumpHostPort: 70000\nenvironment:")),
    P("cmd-empty", "environment.cmd", ("cmd: python3", 'cmd: ""')),
    P("cmd-huge", "cmd", ("cmd: python3", "cmd: python3 " + "x" * 3_000_000)),
    P("init-cmd-huge", "init", ('init-cmd: ""', "init-cmd: " + "y" * 3_000_000)),
    # -- the file system ---------------------------------------------------------------------------------
    Case("project-yaml-is-dir", ("project.yaml", "cannot read"), setup="yaml_is_dir"),
    Case("project-yaml-missing", ("project.yaml", "no such file"), setup="no_yaml"),
    Case("src-is-a-file", ("source",), setup="src_is_file"),
    Case("src-name-not-utf8", ("UTF-8",), setup="non_utf8_name"),
    # -- environment ---------------------------------------------------------------------------------------
    Case("env-port-word", ("COLONIES_SERVER_PORT",), env={"COLONIES_SERVER_PORT": "abc"}),
    Case("env-port-range", ("COLONIES_SERVER_PORT",), env={"COLONIES_SERVER_PORT": "70000"}),
    Case("env-port-empty", ("COLONIES_SERVER_PORT",), env={"COLONIES_SERVER_PORT": ""}),
    Case("env-prvkey-short", ("COLONIES_PRVKEY",), env={"COLONIES_PRVKEY": "abc123"}),
    Case("env-prvkey-not-hex", ("COLONIES_PRVKEY",), env={"COLONIES_PRVKEY": "z" * 64}),
    Case("env-prvkey-unset", ("COLONIES_PRVKEY",), env={"COLONIES_PRVKEY": None}),
    Case("env-host-unset", ("COLONIES_SERVER_HOST",), env={"COLONIES_SERVER_HOST": None}),
    Case("env-colony-empty", ("COLONIES_COLONY_NAME",), env={"COLONIES_COLONY_NAME": " "}),
    Case("env-tls-maybe", ("COLONIES_TLS",), env={"COLONIES_TLS": "maybe"}),
    Case("env-s3-tls-word", ("AWS_S3_TLS",), env={"AWS_S3_TLS": "perhaps"}),
    Case("env-s3-endpoint-scheme-only", ("AWS_S3_ENDPOINT",), env={"AWS_S3_ENDPOINT": "http://"}),
    Case("env-s3-endpoint-bad-port", ("AWS_S3_ENDPOINT",), env={"AWS_S3_ENDPOINT": "127.0.0.1:abc"}),
    Case("env-s3-bucket-unset", ("AWS_S3_BUCKET",), env={"AWS_S3_BUCKET": None}),
    # -- inline job options (adapters' path) ------------------------------------------------------------
    Case("inline-nodes-zero", ("nodes",), kind="inline", inline={"nodes": 0}),
    Case("inline-cpu-word", ("cpu",), kind="inline", inline={"cpu": "abc"}),
    Case("inline-mem-word", ("mem",), kind="inline", inline={"mem": "lots"}),
    Case("inline-walltime-negative", ("walltime",), kind="inline", inline={"walltime": -5}),
    Case("inline-walltime-word", ("walltime",), kind="inline", inline={"walltime": "soon"}),
    Case("inline-env-name-equals", ("env",), kind="inline", inline={"env": {"A=B": "x"}}),
    Case("inline-env-project-dir", ("PROJECT_DIR",), kind="inline", inline={"env": {"PROJECT_DIR": "/x"}}),
    Case("inline-input-relative", ("inputs",), kind="inline", inline={"inputs": {"x": "relative/label"}}),
    Case("inline-cmd-empty", ("cmd",), kind="inline", inline={"cmd": ""}),
    Case("inline-gpu-negative", ("gpu_count",), kind="inline", inline={"gpu_count": -1}),
    Case("inline-executor-type-empty", ("executor_type",), kind="inline", inline={"executor_type": ""}),
    Case("inline-name-traversal", ("name",), kind="inline", inline={"name": "../x"}),
    Case("inline-max-retries", ("max_retries",), kind="inline", inline={"max_retries": -2}),
    Case("inline-unknown-option", ("walltim",), kind="inline", inline={"walltim": 5}),
    Case("inline-arg-oversized", ("args",), kind="inline", inline={"args": ["a" * 200_000]}),
    Case("inline-args-too-many", ("args",), kind="inline", inline={"args": ["b" * 1000] * 5000}),
    Case("inline-env-oversized", ("env",), kind="inline", inline={"env": {"BIG": "c" * 3_000_000}}),
    # -- adapters ---------------------------------------------------------------------------------------
    Case("airflow-port-range", ("port",), kind="airflow", fields={"port": 70000}),
    Case("airflow-password-bad", ("password",), kind="airflow", fields={"password": "nothex"}),
    Case("airflow-unknown-extra", ("colony_nmae",), kind="airflow", fields={"extra": {"colony_nmae": "x"}}),
    Case("airflow-no-colony", ("colony_name",), kind="airflow", fields={"extra": {"colony_name": ""}}),
    Case("prefect-port-range", ("port",), kind="prefect", fields={"port": 70000}),
    Case("prefect-key-bad", ("private_key",), kind="prefect", fields={"private_key": "nothex"}),
    Case("prefect-s3-half", ("s3_",), kind="prefect", fields={"s3_endpoint": "127.0.0.1:9000", "s3_bucket": ""}),
]

assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"
