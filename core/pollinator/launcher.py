"""The launcher: a small sh script that carries the job's command, args, init-cmd and env byte for byte.

Why: every ColonyOS executor pastes ``cmd``, ``args`` and ``env`` into a
template (docs/executors/). The HPC executor's Slurm script goes through Go's
``html/template`` (``" ' & < > +`` become HTML entities inside
``sh -c "..."``, then the batch shell expands ``$`` and backticks); the Kube
executor's Job YAML through ``text/template`` (a ``"``, ``\\`` or newline
breaks it). So the spec carries only ``sh <launcher path>`` - characters no
template changes (:data:`pollinator.contract.TEMPLATE_SAFE`) - and the
launcher, delivered as one of the run's files, carries the rest inside
single quotes, where ``sh`` expands nothing.

What it runs is what the executors mean to run: ``init-cmd`` and then
``<cmd> <args joined by spaces>``, each read by a fresh ``sh -c`` (as the Go
executors do; the args are joined unquoted, so shell syntax in them works the
same). Unlike them, a failing ``init-cmd`` stops the job with its exit code.

The exit record: when the command ends the launcher writes
``$POLLINATOR_RESULT_DIR/.pollinator/exit.json`` (``exit.rank<N>.json`` for
rank N > 0 of a multi-rank Slurm job) with the exit code, the stage and the
process id, via a temp file and ``mv`` so a half-written record is never read.
The client (:mod:`pollinator.run.exit_record`) trusts that record, not the
executor's close: the Kube executor closes SUCCESS whatever the exit code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from pollinator.contract import TEMPLATE_SAFE, template_unsafe

LAUNCHER_FILE = "launch.sh"
MAGIC = "# pollinator-launcher v1"
"""Second line of every launcher; the local executor looks for it (pollinator.executor.launcher_mount)."""
INTERNAL_DIR = ".pollinator"
EXIT_RECORD = f"{INTERNAL_DIR}/exit.json"

# Names the script uses for itself; a user env var may not take them.
_OWN = ("POLLINATOR_INIT_CMD", "POLLINATOR_CMDLINE", "_pollinator_rank", "_pollinator_code")


def sh_quote(text: str) -> str:
    """``text`` as one single-quoted sh word: every byte kept, nothing expanded."""
    if "\0" in text:
        raise ValueError("a NUL character cannot be passed to a shell command")
    return "'" + text.replace("'", "'\\''") + "'"


def command_line(cmd: str, args: Sequence[str]) -> str:
    """The shell command line the Go executors build: ``cmd`` and the args joined by single spaces."""
    return " ".join([cmd, *[str(a) for a in args]]) if args else cmd


@dataclass(frozen=True)
class Launcher:
    """One job's launcher script."""

    cmd: str
    args: Sequence[str] = ()
    init_cmd: str = ""
    env: Mapping[str, str] = field(default_factory=dict)

    def script(self) -> str:
        """The script text (POSIX sh; bytes outside the quotes are ASCII)."""
        lines = [
            "#!/bin/sh",
            MAGIC,
            "# Written by Pollinator (pollinator.launcher). The spec's cmd is `sh <this file>`, which no",
            "# executor template changes; the job's env, init-cmd and command are below byte for byte.",
        ]
        for key in sorted(self.env):
            if key in _OWN:
                raise ValueError(f"env name {key!r} is used by Pollinator's launcher: choose another name")
            lines.append(f"export {key}={sh_quote(str(self.env[key]))}")
        lines += [
            f"POLLINATOR_INIT_CMD={sh_quote(self.init_cmd.strip())}",
            f"POLLINATOR_CMDLINE={sh_quote(command_line(self.cmd, self.args))}",
            "_pollinator_rank=${SLURM_PROCID:-${POLLINATOR_RANK:-${PMI_RANK:-${OMPI_COMM_WORLD_RANK:-0}}}}",
            "_pollinator_record() {",
            '  [ -n "${POLLINATOR_RESULT_DIR:-}" ] || return 0',
            f'  _d="$POLLINATOR_RESULT_DIR/{INTERNAL_DIR}"',
            '  mkdir -p "$_d" || return 0',
            '  if [ "$_pollinator_rank" = 0 ]; then _f="$_d/exit.json"; else _f="$_d/exit.rank$_pollinator_rank.json"; fi',
            "  printf '{\"exit_code\": %d, \"complete\": true, \"stage\": \"%s\", \"process_id\": \"%s\", "
            "\"rank\": \"%s\"}\\n' \\",
            '    "$1" "$2" "${COLONIES_PROCESS_ID:-}" "$_pollinator_rank" > "$_f.$$" && mv -f "$_f.$$" "$_f"',
            "}",
            'if [ -n "$POLLINATOR_INIT_CMD" ]; then',
            '  sh -c "$POLLINATOR_INIT_CMD"',
            "  _pollinator_code=$?",
            '  if [ "$_pollinator_code" -ne 0 ]; then',
            '    echo "pollinator: init-cmd exited with code $_pollinator_code; the command was not run" >&2',
            "    _pollinator_record $_pollinator_code init-cmd",
            "    exit $_pollinator_code",
            "  fi",
            "fi",
            'sh -c "$POLLINATOR_CMDLINE"',
            "_pollinator_code=$?",
            "_pollinator_record $_pollinator_code cmd",
            "exit $_pollinator_code",
            "",
        ]
        return "\n".join(lines)

    def data(self) -> bytes:
        return self.script().encode("utf-8", "surrogateescape")


def spec_command(launcher_path: str) -> str:
    """The spec's ``cmd``: run the launcher at ``launcher_path`` (a container path under ``/cfs``)."""
    bad = template_unsafe(launcher_path)
    if bad:
        raise ValueError(f"launcher path {launcher_path!r} holds {bad!r}: only {''.join(sorted(TEMPLATE_SAFE))!r} "
                         "survive every executor's template")
    return f"sh {launcher_path}"


def spec_env(env: Mapping[str, str]) -> dict[str, str]:
    """The user variables that may also appear in the spec (for the dashboard): the template-safe ones.

    The launcher exports every variable byte for byte anyway; a value an
    executor template would change stays out of the spec, so no template sees it.
    """
    return {k: str(v) for k, v in env.items() if not template_unsafe(str(v))}
