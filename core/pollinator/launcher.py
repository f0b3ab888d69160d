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

Walltime is run time (docs/hpc.md, the deadline rule): with
``$POLLINATOR_WALLTIME`` = W > 0 in the spec env, a watchdog started with
the init-cmd stops the job after W seconds of it, on every executor family
(the Slurm ``--time`` and the server's maxexectime hold W plus a staging
allowance, so they count queueing and downloads without eating into W). It
is plain POSIX sh (dash, busybox ash): each command runs in its own process
group (``setsid``, where present), the watchdog signals the launcher
(USR1: SIGTERM the group; USR2, :data:`KILL_GRACE` s later: SIGKILL), and
the launcher records exit code :data:`WALLTIME_EXIT_CODE` with the reason
``walltime exceeded (W s)`` and exits with it: the executor's close says
FAILED (or the record does, behind a Kube SUCCESS), once; nothing re-queues
it. A TERM, INT or HUP sent to the launcher (a cancel, ``scancel``) is passed
on to the command's group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from pollinator.contract import TEMPLATE_SAFE, template_unsafe

LAUNCHER_FILE = "launch.sh"
MAGIC_PREFIX = "# pollinator-launcher v"
VERSION = 2
"""1: exit record; 2: also enforces ``$POLLINATOR_WALLTIME`` as run time (its own watchdog)."""
MAGIC = f"{MAGIC_PREFIX}{VERSION}"
"""Second line of every launcher; the local executor looks for it (pollinator.executor.launcher_mount)."""
WALLTIME_ENV = "POLLINATOR_WALLTIME"
"""Spec env: the job's run time in seconds; the launcher stops the job once it has run that long."""
WALLTIME_EXIT_CODE = 124
"""The launcher's exit code when the walltime ended the job (as ``timeout(1)``'s)."""
KILL_GRACE = 10
"""Seconds between the walltime's SIGTERM to the command's process group and its SIGKILL."""
INTERNAL_DIR = ".pollinator"
EXIT_RECORD = f"{INTERNAL_DIR}/exit.json"

# Names the script uses for itself; a user env var may not take them.
_OWN = ("POLLINATOR_INIT_CMD", "POLLINATOR_CMDLINE", WALLTIME_ENV)
_OWN_PREFIX = "_pollinator_"

# The rest is the same in every launcher (pollinator.launcher._BODY).
_BODY = (r"""_pollinator_rank=${SLURM_PROCID:-${POLLINATOR_RANK:-${PMI_RANK:-${OMPI_COMM_WORLD_RANK:-0}}}}
_pollinator_wall=${@WALLTIME_ENV@:-0}
case $_pollinator_wall in ''|*[!0-9]*) _pollinator_wall=0 ;; esac
_pollinator_pid= _pollinator_group= _pollinator_groups= _pollinator_dog= _pollinator_over=0 _pollinator_woke=0
_pollinator_ending=0
_pollinator_record() {
  [ -n "${POLLINATOR_RESULT_DIR:-}" ] || return 0
  _d="$POLLINATOR_RESULT_DIR/@INTERNAL_DIR@"
  mkdir -p "$_d" || return 0
  if [ "$_pollinator_rank" = 0 ]; then _f="$_d/exit.json"; else _f="$_d/exit.rank$_pollinator_rank.json"; fi
  printf '{"exit_code": %d, "complete": true, "stage": "%s", "process_id": "%s", "rank": "%s", "reason": "%s"}\n' \
    "$1" "$2" "${COLONIES_PROCESS_ID:-}" "$_pollinator_rank" "${3:-}" > "$_f.$$" && mv -f "$_f.$$" "$_f"
}
# signal the running command's process group (its own, from setsid), or the command alone without setsid
_pollinator_kill() {
  [ -n "$_pollinator_pid" ] || return 0
  if [ -n "$_pollinator_group" ]; then kill -"$1" -"$_pollinator_pid" 2>/dev/null && return 0; fi
  kill -"$1" "$_pollinator_pid" 2>/dev/null
  return 0
}
# a signal to the launcher (cancel, scancel) goes on to the command; USR1 and USR2 come from the watchdog
# (a USR1 that comes once the job is ending, the watchdog not yet stopped, is late: the job ended in time)
trap '_pollinator_woke=1; [ "$_pollinator_ending" = 1 ] || { _pollinator_over=1; _pollinator_kill TERM; }' USR1
trap '_pollinator_woke=1; _pollinator_kill KILL' USR2
trap '_pollinator_woke=1; _pollinator_kill TERM' TERM
trap '_pollinator_woke=1; _pollinator_kill INT' INT
trap '_pollinator_woke=1; _pollinator_kill HUP' HUP
# run $1 with sh -c in its own process group and wait for it; its exit status in _pollinator_code
_pollinator_run() {
  if command -v setsid >/dev/null 2>&1; then
    setsid sh -c "$1" &
    _pollinator_pid=$! _pollinator_group=1
    _pollinator_groups="$_pollinator_groups $_pollinator_pid"
  else
    sh -c "$1" &
    _pollinator_pid=$! _pollinator_group=
  fi
  while :; do
    _pollinator_woke=0
    wait "$_pollinator_pid"
    _pollinator_code=$?
    # a trap interrupted the wait while the command still runs: wait again
    [ "$_pollinator_woke" = 1 ] && kill -0 "$_pollinator_pid" 2>/dev/null || break
  done
  _pollinator_pid=
}
# does a process of group $1 still run (zombies do not count)?
_pollinator_alive() {
  _pollinator_g=$1
  for _pollinator_s in /proc/[0-9]*/stat; do
    read -r _pollinator_l 2>/dev/null < "$_pollinator_s" || continue
    _pollinator_l=${_pollinator_l##*) }
    case $_pollinator_l in Z*|X*|x*) continue ;; esac
    set -- $_pollinator_l
    [ "${3:-}" = "$_pollinator_g" ] && return 0
  done
  return 1
}
# what the job left running in its groups: SIGTERM, and SIGKILL if still there after the grace period
_pollinator_sweep() {
  _pollinator_left=
  for _pollinator_h in $_pollinator_groups; do
    kill -TERM -"$_pollinator_h" 2>/dev/null && _pollinator_left="$_pollinator_left $_pollinator_h"
  done
  _pollinator_n=0
  while [ -n "$_pollinator_left" ]; do
    _pollinator_still=
    for _pollinator_h in $_pollinator_left; do
      _pollinator_alive "$_pollinator_h" && _pollinator_still="$_pollinator_still $_pollinator_h"
    done
    _pollinator_left=$_pollinator_still
    [ -n "$_pollinator_left" ] && [ "$_pollinator_n" -lt @KILL_GRACE@ ] || break
    if [ "$_pollinator_n" = 0 ]; then sleep 0.2 2>/dev/null || sleep 1; else sleep 1; fi  # most end at once
    _pollinator_n=$((_pollinator_n + 1))
  done
  for _pollinator_h in $_pollinator_left; do kill -KILL -"$_pollinator_h" 2>/dev/null; done
}
# the watchdog's sleeps end when the launcher stops it (TERM), even one being started at that moment;
# a sleep that did not run its course (a signal to the whole job: scancel, srun --kill-on-bad-exit) ends it too
_pollinator_nap() {
  sleep "$1" & _pollinator_napping=$!
  [ "$_pollinator_stop" = 1 ] || wait "$_pollinator_napping" || exit 0
  if [ "$_pollinator_stop" = 1 ]; then kill "$_pollinator_napping" 2>/dev/null; exit 0; fi
  _pollinator_napping=
}
_pollinator_watchdog() {
  _pollinator_stop=0 _pollinator_napping=
  trap '_pollinator_stop=1; [ -z "$_pollinator_napping" ] || kill "$_pollinator_napping" 2>/dev/null' TERM
  _pollinator_nap "$_pollinator_wall"
  kill -USR1 $$ 2>/dev/null || exit 0
  _pollinator_nap @KILL_GRACE@
  kill -USR2 $$ 2>/dev/null
  exit 0
}
# has child $1 exited (a zombie or gone)? Without /proc: taken as yes once it has had a second signal
_pollinator_exited() {
  if [ -r /proc/$$/stat ]; then
    read -r _pollinator_l 2>/dev/null < "/proc/$1/stat" || return 0
    _pollinator_l=${_pollinator_l##*) }
    case $_pollinator_l in Z*|X*|x*) return 0 ;; esac
    return 1
  fi
  [ "$_pollinator_i" -ge 1 ]
}
# stop the watchdog and reap it. The TERM is repeated until it has exited: a TERM that lands in the
# first instants after its fork, before its trap is set, is lost (the forked shell still has the
# launcher's handler, then clears it), and a single TERM left the launcher waiting out the whole walltime
# after a quick command, to report it "walltime exceeded". After 2 s: SIGKILL.
_pollinator_stop_dog() {
  [ -n "$_pollinator_dog" ] || return 0
  _pollinator_i=0
  while kill "$_pollinator_dog" 2>/dev/null; do
    _pollinator_exited "$_pollinator_dog" && break
    if [ "$_pollinator_i" -ge 100 ]; then kill -KILL "$_pollinator_dog" 2>/dev/null; break; fi
    sleep 0.02 2>/dev/null || sleep 1
    _pollinator_i=$((_pollinator_i + 1))
  done
  wait "$_pollinator_dog"
  _pollinator_dog=
}
# $1 exit code, $2 stage: stop the watchdog and what is left of the job, write the exit record, exit
_pollinator_end() {
  _pollinator_ending=1
  _pollinator_stop_dog
  _pollinator_sweep
  if [ "$_pollinator_over" = 1 ]; then
    echo "pollinator: walltime exceeded: the job was stopped in its $2 after $_pollinator_wall s of run time" >&2
    _pollinator_record @WALLTIME_EXIT_CODE@ "$2" "walltime exceeded ($_pollinator_wall s)"
    exit @WALLTIME_EXIT_CODE@
  fi
  _pollinator_record "$1" "$2"
  exit "$1"
}
if [ "$_pollinator_wall" -gt 0 ]; then
  _pollinator_watchdog </dev/null >/dev/null 2>&1 &
  _pollinator_dog=$!
fi
if [ -n "$POLLINATOR_INIT_CMD" ]; then
  _pollinator_run "$POLLINATOR_INIT_CMD"
  if [ "$_pollinator_over" = 1 ]; then _pollinator_end "$_pollinator_code" init-cmd; fi
  if [ "$_pollinator_code" -ne 0 ]; then
    echo "pollinator: init-cmd exited with code $_pollinator_code; the command was not run" >&2
    _pollinator_end "$_pollinator_code" init-cmd
  fi
fi
_pollinator_run "$POLLINATOR_CMDLINE"
_pollinator_end "$_pollinator_code" cmd
""".replace("@WALLTIME_ENV@", WALLTIME_ENV).replace("@INTERNAL_DIR@", INTERNAL_DIR)
         .replace("@KILL_GRACE@", str(KILL_GRACE)).replace("@WALLTIME_EXIT_CODE@", str(WALLTIME_EXIT_CODE)))


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
            if key in _OWN or key.startswith(_OWN_PREFIX):
                raise ValueError(f"env name {key!r} is used by Pollinator's launcher: choose another name")
            lines.append(f"export {key}={sh_quote(str(self.env[key]))}")
        lines += [
            f"POLLINATOR_INIT_CMD={sh_quote(self.init_cmd.strip())}",
            f"POLLINATOR_CMDLINE={sh_quote(command_line(self.cmd, self.args))}",
            _BODY,
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
