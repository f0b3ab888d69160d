"""Python renderings of the colonyos/executors command templates, for tests only.

Read from colonyos/executors (commit b6b237c3d2f6976bf705e3252f75a4a665fb8925, Aug 2024):

* HPC: ``common/pkg/slurm/slurm_batch_template.go`` (the ``#SBATCH`` script),
  rendered by ``GenerateSlurmScript`` in ``common/pkg/slurm/slurm.go`` with Go's
  ``html/template`` from the kwargs ``ParseKwArgs`` (``common/pkg/parsers/kwargs.go``)
  builds; called from ``hpc/pkg/executor/executor.go`` (``executeSlurm``).
* Kube: ``common/pkg/k8s/job_tpl.go`` (the batch/v1 Job), rendered by
  ``ComposeJobYAML`` in ``common/pkg/k8s/k8s_handler.go`` with ``text/template``
  from the spec ``kube/pkg/executor/executor.go`` (``executeK8s``) fills in.
* Docker: ``StartContainer`` in ``common/pkg/docker/docker_handler.go`` runs
  ``["sh", "-c", "mkdir -p /cfs;" + cmd + " " + args]`` with the env as a list: no template.

The renderings keep what matters for what runs: the escaping (html/template
escapes ``" ' & + < >`` in every value; text/template nothing), the order
and joining of init-cmd, cmd and args, and the env lines. Whitespace between
directives follows the templates' ``{{-`` trimming.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

_HTML = {"\0": "\ufffd", '"': "&#34;", "'": "&#39;", "&": "&amp;", "+": "&#43;", "<": "&lt;", ">": "&gt;"}


def go_html_escape(text: str) -> str:
    """What html/template does to a string printed in HTML text context (Go's htmlEscaper)."""
    return "".join(_HTML.get(ch, ch) for ch in str(text))


@dataclass(frozen=True)
class KwArgs:
    """``parsers.ParseKwArgs``: what the executors read from ``kwargs``."""

    image: str
    rebuild_image: bool
    init_cmd: str
    cmd: str
    args: str
    exec_cmd: str


def parse_kwargs(spec: dict[str, Any], process_id: str) -> KwArgs:
    kw = spec.get("kwargs") or {}
    raw_args = kw.get("args") if isinstance(kw.get("args"), list) else []
    args_str = " ".join(str(a) for a in raw_args)
    exec_parts = [str(kw["cmd"])] + [str(a).replace("{processid}", process_id, 1) for a in raw_args]
    return KwArgs(image=kw["docker-image"], rebuild_image=bool(kw.get("rebuild-image")),
                  init_cmd=kw.get("init-cmd") or "", cmd=str(kw["cmd"]).replace("{processid}", process_id, 1),
                  args=args_str.replace("{processid}", process_id, 1), exec_cmd=" ".join(exec_parts))


def parse_cpu(cpu: str) -> int:
    """``parsers.ParseCPU``: millicores -> whole CPUs per task (1..999m -> 1, else ceil)."""
    value = int(cpu[:-1])
    return 1 if 0 < value < 1000 else (value + 999) // 1000


def parse_memory(mem: str) -> str:
    """``parsers.ParseMemory``: Mi/Gi/Ki -> Slurm's decimal M."""
    for suffix, factor in (("Mi", 1.0), ("Gi", 1024.0), ("Ki", 1 / 1024)):
        if mem.endswith(suffix):
            mib = float(mem[: -len(suffix)]) * factor
            return f"{int(math.floor(mib * 1048576 / 1000000 + 0.5))}M"
    raise ValueError(f"Failed to convert memory from Mi to M: {mem}")


def parse_walltime(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def sif(image_dir: str, image: str) -> str:
    """``singularity.Sif``: where the HPC executor keeps the image it pulled from docker://docker.io/<image>."""
    return f"{image_dir}/{image.replace('/', '_')}.sif"


def render_hpc_script(spec: dict[str, Any], process_id: str, *, fs_dir: str = "/scratch/colonyos/cfs",
                      log_dir: str = "/scratch/colonyos/logs", image_dir: str = "/scratch/colonyos/images",
                      partition: str = "", account: str = "", module: str = "") -> str:
    """The sbatch script the HPC executor submits for ``spec`` (GPU/ROCm/dev-mode branches left out)."""
    kw = parse_kwargs(spec, process_id)
    cond = spec["conditions"]
    command = kw.exec_cmd if not kw.init_cmd else kw.init_cmd + ";" + kw.exec_cmd
    e = go_html_escape
    mount = (spec.get("fs") or {}).get("mount") or "/cfs"
    out = "#!/bin/bash\n\n#SBATCH --job-name=" + e(process_id)
    if partition:
        out += "\n#SBATCH --partition=" + e(partition)
    if account:
        out += "\n#SBATCH --account=" + e(account)
    if cond["nodes"]:
        out += f"\n#SBATCH --nodes={cond['nodes']}"
    if cond["processespernode"]:
        out += f"\n#SBATCH --ntasks-per-node={cond['processespernode']}"
    out += f"\n#SBATCH --cpus-per-task={parse_cpu(cond['cpu'])}"
    out += "\n#SBATCH --mem=" + e(parse_memory(cond["mem"]))
    out += f"\n#SBATCH --output={e(log_dir)}/{e(process_id)}_%j.log"
    out += f"\n#SBATCH --error={e(log_dir)}/{e(process_id)}_%j.log"
    out += "\n#SBATCH --time=" + e(parse_walltime(int(cond["walltime"])))
    if module:
        out += "\nmodule load " + e(module)
    for prefix in ("COLONIES_", "EXECUTOR_", "AWS_S3_"):
        out += f"\n\nfor varname in $(compgen -v | grep ^{prefix}); do\n    unset $varname\ndone"
    out += f'\n\nexport COLONIES_PROCESS_ID="{e(process_id)}"'
    for key in sorted(spec.get("env") or {}):  # Go's range over a map visits keys in sorted order
        out += f' \nexport {e(key)}="{e(spec["env"][key])}"'
    if kw.image:
        out += f'\nsrun singularity exec --bind {e(fs_dir + ":" + mount)} {e(sif(image_dir, kw.image))} ' \
               f'sh -c "{e(command)}"'
    else:
        out += "\nsrun " + e(command)
    return out + "\n"


def render_kube_job(spec: dict[str, Any], process_id: str, *, job_name: str = "kubexexecutor-test",
                    pvc_name: str = "kube-executor-pvc") -> str:
    """The Job YAML the Kube executor creates for ``spec`` (text/template: values pasted as they are)."""
    kw = parse_kwargs(spec, process_id)
    cond = spec["conditions"]
    exec_cmd = kw.cmd if not kw.init_cmd else kw.init_cmd + ";" + kw.cmd
    mount = (spec.get("fs") or {}).get("mount") or ""
    gpu = cond.get("gpu") or {}
    use_gpu = int(gpu.get("count") or 0) > 0
    lines = ["", "apiVersion: batch/v1", "kind: Job ", "metadata:", f"  name: {job_name} ", "  labels:",
             "    app: kubeexecutor ", "spec:", f"  completions: {cond['nodes']}", f"  parallelism: {cond['nodes']}",
             "  ttlSecondsAfterFinished: 10 ", "  template:", "    spec:",
             f"      activeDeadlineSeconds: {cond['walltime']}"]
    if use_gpu and gpu.get("name"):
        lines += ["      nodeSelector:", f"        accelerator: {gpu['name']}"]
    lines.append("      containers:")
    for index in range(cond["processespernode"]):
        lines += [f"      - name: {job_name}-{index}   ", f"        image: {kw.image}"]
        if mount:
            lines += ["        volumeMounts:", "          - name: kube-executor-volume", f"            mountPath: {mount}"]
        lines += [f'        command: ["sh", "-c", "{exec_cmd} {kw.args}"]', "        env:"]
        for key in sorted(spec.get("env") or {}):
            lines += [f"        - name: {key}", f'          value: "{spec["env"][key]}"']
        lines += ["        - name: COLONIES_PROCESS_ID", f'          value: "{process_id}"', "        resources:",
                  "          requests:", f'            memory: "{cond["mem"]}"', "          limits:",
                  f'            memory: "{cond["mem"]}"', f'            cpu: "{cond["cpu"]}"']
        if use_gpu:
            lines.append(f'            nvidia.com/gpu: "{gpu["count"]}"')
    lines.append("      restartPolicy: Never")
    if mount:
        lines += ["      volumes:", "        - name: kube-executor-volume ", "          persistentVolumeClaim:",
                  f"            claimName: {pvc_name}"]
    lines.append("  backoffLimit: 4")
    return "\n".join(lines) + "\n"


def docker_command(spec: dict[str, Any], process_id: str) -> tuple[list[str], dict[str, str]]:
    """The argv and env the Docker executor starts its container with (``StartContainer``)."""
    kw = parse_kwargs(spec, process_id)
    cmd = kw.cmd if not kw.init_cmd else kw.init_cmd + ";" + kw.cmd
    env = {**{str(k): str(v) for k, v in (spec.get("env") or {}).items()}, "COLONIES_PROCESS_ID": process_id}
    return ["sh", "-c", "mkdir -p /cfs;" + cmd + " " + kw.args], env
