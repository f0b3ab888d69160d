"""Run a Python function's body remotely: its source and JSON arguments in, its JSON return value out.

No pickle: the remote side needs only a Python 3 with the function's own
imports, not our Python version or our packages. What cannot be shipped this
way (closures, lambdas, non-JSON arguments, module globals that are not plain
data) is refused before anything is uploaded, with the reason.

**The source is captured when the function is decorated** (:func:`capture`),
while its module file is certainly there, and travels with the decorated
object as a :class:`FunctionSource`. Deployment paths that rebuild the
function elsewhere (Prefect's ``serve()``/``deploy()`` ship ``__main__``
functions by value with cloudpickle, whose code has no file; Airflow's DAG
serialization) still have the text.

**Nothing implicit carries a secret.** The call file is uploaded to ColonyFS
and snapshotted, so a module global the body reads is shipped implicitly only
when it is a literal constant (JSON data: numbers, strings, lists, dicts), at
most :data:`MAX_IMPLICIT_GLOBALS_BYTES` in all, whose name does not read like
a credential (a word such as ``token``, ``secret``, ``password``, ``key``,
``auth``...) and whose text does not look like one (a PEM block, a JWT,
``AKIA``/``ghp_``/``sk-``... prefixes, a long hex or base64 run, a URL with a
password). Anything else is refused, naming the global and the way out:
pass the value as an argument, read it on the executor (``env=`` of the job,
or the executor's own environment), or list it in ``ship=[...]`` to upload
it deliberately. The names shipped are logged (never the values).

**Each call is its own run.** The call file (source, arguments, shipped
globals) is one of the run's own files (``Job.run_files``, uploaded into the
run's label and mounted at ``$POLLINATOR_RUN_FILES``), so concurrent calls of
one function never read each other's arguments; the src snapshot holds only
the runner, the same bytes for every call. The return value travels back
through ``$POLLINATOR_RETURN`` like any command's (see
:mod:`pollinator.run.returns`).
"""

from __future__ import annotations

import ast
import builtins
import inspect
import json
import logging
import re
import shutil
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from pydantic import BaseModel, ConfigDict

from pollinator.config import Settings
from pollinator.errors import ProjectError
from pollinator.run.job import Job, JobResult
from pollinator.run.returns import MAX_RETURN_BYTES, RETURN_ENV
from pollinator.spec import RUN_FILES_ENV

log = logging.getLogger(__name__)

RUNNER = "pollinator_runner.py"
CALL_FILE = "pollinator_call.json"
CALL_ENV = "POLLINATOR_CALL"
MAX_IMPLICIT_GLOBALS_BYTES = 64 * 1024

# The runner is plain Python 3 with no imports beyond the standard library.
RUNNER_SOURCE = '''\
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
files = os.environ.get("%(files_env)s") or here  # the run's own files; the call is one of them
with open(os.environ.get("%(call_env)s") or os.path.join(files, "%(call_file)s")) as fh:
    call = json.load(fh)
namespace = {"__name__": "__pollinator_remote__"}
namespace.update(call["globals"])
exec(compile(call["source"], call["filename"], "exec"), namespace)
value = namespace[call["name"]](*call["args"], **call["kwargs"])
if hasattr(value, "__await__"):  # an async def body: run it to completion here
    import asyncio
    value = asyncio.run(value)
try:
    payload = json.dumps(value).encode("utf-8")
except (TypeError, ValueError) as exc:
    sys.exit("pollinator: the return value of %%s is not JSON-serialisable: %%s" %% (call["name"], exc))
if len(payload) > %(limit)d:
    sys.exit("pollinator: the return value of %%s is %%d bytes, over the limit of %(limit)d: write large results "
             "as files into $POLLINATOR_RESULT_DIR and return their names" %% (call["name"], len(payload)))
target = os.environ.get("%(return_env)s") or os.path.join(
    os.environ.get("POLLINATOR_RESULT_DIR") or os.path.join(os.environ["PROJECT_DIR"], "result"),
    ".pollinator", "return.json")
os.makedirs(os.path.dirname(target), exist_ok=True)
with open(target, "wb") as fh:
    fh.write(payload)
''' % {"call_env": CALL_ENV, "call_file": CALL_FILE, "limit": MAX_RETURN_BYTES, "return_env": RETURN_ENV,
       "files_env": RUN_FILES_ENV}

# -- what looks like a credential ----------------------------------------------------------------------------
_SECRET_WORDS = {
    "auth", "authorization", "bearer", "cert", "cookie", "cookies", "cred", "creds", "credential", "credentials",
    "dsn", "jwt", "key", "keys", "apikey", "prvkey", "privkey", "pass", "passwd", "password", "passwords",
    "passphrase", "pat", "pin", "private", "pwd", "salt", "secret", "secrets", "session", "signature", "token",
    "tokens",
}
_SECRET_TEXT = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----"      # PEM
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWT
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"           # AWS access key id
    r"|\b(?:ghp|gho|ghu|ghs|ghr|github_pat|glpat|xox[abposr]|sk|sk_live|rk_live|hf)[-_][A-Za-z0-9_-]{8,}"
    r"|\b[0-9a-fA-F]{32,}\b"                      # a hex key or digest
    r"|://[^/\s:@]+:[^/\s@]+@"                    # user:password@ in a URL
)
_RUN = re.compile(r"[A-Za-z0-9+_-]{32,}")  # a long run without spaces or slashes (labels and paths have them)


def _text_looks_secret(text: str) -> bool:
    """Known credential shapes, or a long base64-ish run mixing digits, lower and upper case."""
    if _SECRET_TEXT.search(text):
        return True
    return any(re.search(r"\d", run) and re.search(r"[a-z]", run) and re.search(r"[A-Z]", run)
               for run in _RUN.findall(text))


def _words(name: str) -> list[str]:
    """``apiToken`` / ``API_TOKEN`` / ``api-token`` -> ``['api', 'token']``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


def name_looks_secret(name: str) -> bool:
    words = _words(name)
    return any(w in _SECRET_WORDS for w in words) or "".join(words).endswith(("apikey", "token", "secret",
                                                                               "password"))


def _why_secret(value: Any, path: str = "") -> str:
    """Why ``value`` (JSON data) looks like it carries a credential, or ``""``."""
    if isinstance(value, str):
        return f"its value{path} looks like a credential" if _text_looks_secret(value) else ""
    if isinstance(value, dict):
        for key, item in value.items():
            if name_looks_secret(str(key)) and item not in (None, "", [], {}):
                return f"its key {path}[{key!r}] names a credential"
            why = _why_secret(item, f"{path}[{key!r}]")
            if why:
                return why
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            why = _why_secret(item, f"{path}[{i}]")
            if why:
                return why
    return ""


# -- capture at decoration -----------------------------------------------------------------------------------
class FunctionSource(BaseModel):
    """A function in the shippable form: captured once, when it is decorated, and carried with it."""

    model_config = ConfigDict(frozen=True)

    name: str
    source: str  # the bare ``def`` (decorators removed), dedented
    reads: tuple[str, ...] = ()  # module-level names the body reads (builtins excluded)
    ship: tuple[str, ...] = ()  # globals the author explicitly asked to upload


def capture(func: Callable[..., Any], ship: Iterable[str] = ()) -> FunctionSource:
    """The shippable form of ``func``; ProjectError (saying what to do) when it cannot be shipped."""
    func = inspect.unwrap(func)
    if not inspect.isfunction(func) or func.__name__ == "<lambda>":
        raise ProjectError(f"{func!r} cannot run remotely: only a plain `def` function can be shipped")
    if func.__code__.co_freevars:
        raise ProjectError(f"{func.__name__} cannot run remotely: it uses variables of an enclosing function "
                           f"({', '.join(func.__code__.co_freevars)}); pass them as arguments instead")
    try:
        text = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError) as exc:
        raise ProjectError(
            f"{func.__name__} cannot run remotely: its source is not available ({exc}). Its source is read when "
            "it is decorated: define it in a .py file that is imported or run (not in an interactive session, "
            "`python -c` or exec'd text), or run a command instead (kind='command' / PollinatorOperator)"
        ) from None
    node = ast.parse(text).body[0]
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise ProjectError(f"{func.__name__} cannot run remotely: only a plain `def` or `async def` can be shipped")
    node.decorator_list = []  # the decorators are ours; the remote side runs the bare function
    reads = tuple(sorted(n for n in _free_names(node) if not hasattr(builtins, n)))
    ship = tuple(ship)
    extra = sorted(set(ship) - set(reads))
    if extra:
        raise ProjectError(f"{func.__name__}: ship= names {', '.join(extra)}, which its body does not read "
                           f"(it reads: {', '.join(reads) or 'no module-level names'})")
    return FunctionSource(name=func.__name__, source=ast.unparse(node), reads=reads, ship=ship)


def _free_names(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    local: set[str] = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
    loads: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            (loads if isinstance(sub.ctx, ast.Load) else local).add(sub.id)
        elif isinstance(sub, (ast.Import, ast.ImportFrom)):
            local.update((a.asname or a.name).split(".")[0] for a in sub.names)
        elif isinstance(sub, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and sub is not node:
            local.add(sub.name)
        elif isinstance(sub, ast.ExceptHandler) and sub.name:
            local.add(sub.name)
    return loads - local - {node.name}


def select_globals(source: FunctionSource, module_globals: dict[str, Any]) -> dict[str, Any]:
    """The module globals that travel with the call, by the rule in the module docstring."""
    shipped: dict[str, Any] = {}
    refused: list[str] = []
    for name in source.reads:
        if name not in module_globals:
            continue  # a NameError remotely, as it would be locally
        value = module_globals[name]
        explicit = name in source.ship
        try:
            text = json.dumps(value)
        except (TypeError, ValueError):
            refused.append(f"{name} ({type(value).__name__} is not plain data: import modules inside the "
                           "function and pass other values as arguments)")
            continue
        why = "" if explicit else ("its name reads like a credential" if name_looks_secret(name)
                                   else _why_secret(value))
        if why:
            refused.append(f"{name} ({why}: globals are uploaded to ColonyFS, so pass it as an argument, read "
                           f"it on the executor through env=, or list it in ship=[{name!r}] to upload it "
                           "deliberately)")
            continue
        shipped[name] = json.loads(text)
    if refused:
        raise ProjectError(f"{source.name} cannot run remotely: it reads module-level names that are not shipped "
                           f"implicitly: {'; '.join(refused)}")
    implicit = {k: v for k, v in shipped.items() if k not in source.ship}
    size = len(json.dumps(implicit))
    if size > MAX_IMPLICIT_GLOBALS_BYTES:
        raise ProjectError(f"{source.name} cannot run remotely: the module globals it reads "
                           f"({', '.join(implicit)}) are {size} bytes of data, over {MAX_IMPLICIT_GLOBALS_BYTES}: "
                           "pass them as arguments, put the data in the job's data_dir, or list them in ship=")
    if shipped:
        log.info("%s: shipping module globals %s%s", source.name, ", ".join(sorted(implicit)) or "(none implicit)",
                 f" and, as asked by ship=, {', '.join(source.ship)}" if source.ship else "")
    return shipped


def build_call(func: Callable[..., Any], args: Sequence[Any] = (), kwargs: Optional[dict] = None, *,
               source: Optional[FunctionSource] = None) -> dict[str, Any]:
    """The JSON document the runner executes (``source`` as captured at decoration, else captured now)."""
    source = source or capture(func)
    module_globals = getattr(inspect.unwrap(func), "__globals__", {})
    call = {"name": source.name, "source": source.source, "filename": f"<pollinator:{source.name}>",
            "globals": select_globals(source, module_globals), "args": list(args), "kwargs": dict(kwargs or {})}
    try:
        json.dumps(call["args"]), json.dumps(call["kwargs"])
    except (TypeError, ValueError) as exc:
        raise ProjectError(f"the arguments of {source.name} are not JSON-serialisable: {exc}") from None
    return call


FUNCTION_OPTIONS = ("cmd", "args", "source", "src_dir")
"""The job options a function job sets itself (the runner, the call): an adapter cannot take them."""


def refuse_function_options(owner: str, options: Mapping[str, Any]) -> None:
    """A :class:`ProjectError` naming the options a function job sets itself, when one is given."""
    taken = [k for k in FUNCTION_OPTIONS if options.get(k) is not None]
    if taken:
        raise ProjectError(f"{owner}: {', '.join(f'{k}=' for k in taken)} cannot be given: a function job runs "
                           "the function's own source (its cmd, args, source and src_dir are the runner's); "
                           "run a command with the operator or kind='command' instead")


class RemoteFunctionJob(Job):
    """A Job whose result must carry the function's return value; its temporary files live only as long as it."""

    call_dir: Optional[Path] = None
    shipped_globals: tuple[str, ...] = ()

    def submit(self, reattach: bool = True, **kwargs: Any) -> str:
        try:
            return super().submit(reattach, **kwargs)
        finally:  # the snapshot holds the call now (or nothing was sent): the local copy has done its job
            self._remove_call_dir()

    def finish(self) -> JobResult:
        result = super().finish()
        if not result.returned:
            raise ProjectError(f"process {result.process_id} succeeded but left no return value in "
                               f"{result.result_label}/.pollinator/return.json: the executor did not sync the "
                               "result directory back")
        return result

    def close(self) -> None:
        self._remove_call_dir()
        super().close()

    def _remove_call_dir(self) -> None:
        if self.call_dir is not None:
            shutil.rmtree(self.call_dir, ignore_errors=True)
            self.call_dir = None


def remote_function_job(settings: Settings, func: Callable[..., Any], args: Sequence[Any] = (),
                        kwargs: Optional[dict] = None, *, name: Optional[str] = None, image: str = "python:3.12",
                        python: str = "python3", token: Optional[str] = None,
                        source: Optional[FunctionSource] = None, **options: Any) -> RemoteFunctionJob:
    """A job that runs ``func(*args, **kwargs)`` on an executor and returns its JSON value.

    ``source`` is the :class:`FunctionSource` captured when ``func`` was
    decorated (captured now when not given). Results stay in ColonyFS unless
    ``result_dir=`` names a home for them; the return value needs no download.
    """
    refuse_function_options("remote_function_job", options)
    call = build_call(func, args, kwargs, source=source)
    from pollinator.run.options import JobOptions

    src = Path(tempfile.mkdtemp(prefix="pollinator-fn-"))
    try:
        (src / RUNNER).write_text(RUNNER_SOURCE)  # the same bytes for every call: the call is a run file
        project = name or call["name"].replace("_", "-")
        fields = dict(name=project, cmd=python, source=RUNNER, image=image, src_dir=src, **options)
        job = RemoteFunctionJob(settings, JobOptions.build(**fields), token=token)
    except BaseException:
        shutil.rmtree(src, ignore_errors=True)
        raise
    job.run_files = {CALL_FILE: json.dumps(call).encode("utf-8")}
    job.call_dir = src
    job.shipped_globals = tuple(sorted(call["globals"]))
    return job
