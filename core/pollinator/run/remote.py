"""Run a Python function's body remotely: its source and JSON arguments in, its JSON return value out.

No pickle: the remote side needs only a Python 3 with the function's own
imports, not our Python version or our packages. What cannot be shipped this
way (closures, lambdas, non-JSON arguments, module globals that are not plain
data) is refused before anything is uploaded, with the reason.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import json
import logging
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Callable, Optional

from pollinator.config import Settings
from pollinator.errors import ColoniesError, ProjectError
from pollinator.run.job import Job, JobResult

log = logging.getLogger(__name__)

RUNNER = "pollinator_runner.py"
CALL_FILE = "pollinator_call.json"
RETURN_PREFIX = "pollinator-return-"

# The runner is plain Python 3 with no imports beyond the standard library.
RUNNER_SOURCE = '''\
import json, os, sys, traceback
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "pollinator_call.json")) as fh:
    call = json.load(fh)
namespace = {"__name__": "__pollinator_remote__"}
namespace.update(call["globals"])
exec(compile(call["source"], call["filename"], "exec"), namespace)
value = namespace[call["name"]](*call["args"], **call["kwargs"])
if hasattr(value, "__await__"):  # an async def body: run it to completion here
    import asyncio
    value = asyncio.run(value)
try:
    payload = json.dumps({"value": value})
except (TypeError, ValueError) as exc:
    sys.exit("pollinator: the return value of %s is not JSON-serialisable: %s" % (call["name"], exc))
result_dir = os.environ.get("POLLINATOR_RESULT_DIR") or os.path.join(os.environ["PROJECT_DIR"], "result")
os.makedirs(result_dir, exist_ok=True)
name = "pollinator-return-%s.json" % os.environ.get("COLONIES_PROCESS_ID", "local")
with open(os.path.join(result_dir, name), "w") as fh:
    fh.write(payload)
'''


def _function_source(func: Callable[..., Any]) -> tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    if not inspect.isfunction(func) or func.__name__ == "<lambda>":
        raise ProjectError(f"{func!r} cannot run remotely: only a plain `def` function can be shipped")
    if func.__code__.co_freevars:
        raise ProjectError(f"{func.__name__} cannot run remotely: it uses variables of an enclosing function "
                           f"({', '.join(func.__code__.co_freevars)}); pass them as arguments instead")
    try:
        source = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError) as exc:
        raise ProjectError(f"{func.__name__} cannot run remotely: its source is not available ({exc})") from None
    tree = ast.parse(source)
    node = tree.body[0]
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise ProjectError(f"{func.__name__} cannot run remotely: only a plain `def` or `async def` can be shipped")
    node.decorator_list = []  # the decorators are ours; the remote side runs the bare function
    return ast.unparse(node), node


def _free_globals(func: Callable[..., Any], node: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, Any]:
    """Module globals the body reads: plain JSON data is shipped along, anything else is refused."""
    local: set[str] = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
    loads: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            (loads if isinstance(sub.ctx, ast.Load) else local).add(sub.id)
        elif isinstance(sub, (ast.Import, ast.ImportFrom)):
            local.update((a.asname or a.name).split(".")[0] for a in sub.names)
        elif isinstance(sub, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and sub is not node:
            local.add(sub.name)
    shipped: dict[str, Any] = {}
    refused = []
    for name in sorted(loads - local - {node.name}):
        if hasattr(builtins, name) or name not in func.__globals__:
            continue
        value = func.__globals__[name]
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            refused.append(name)
            continue
        shipped[name] = value
    if refused:
        raise ProjectError(f"{func.__name__} cannot run remotely: it uses module-level names "
                           f"{', '.join(refused)}; import modules inside the function and pass other values "
                           "as arguments")
    return shipped


def build_call(func: Callable[..., Any], args: tuple = (), kwargs: Optional[dict] = None) -> dict[str, Any]:
    """The JSON document the runner executes."""
    source, node = _function_source(func)
    call = {"name": func.__name__, "source": source, "filename": f"<pollinator:{func.__name__}>",
            "globals": _free_globals(func, node), "args": list(args), "kwargs": dict(kwargs or {})}
    try:
        json.dumps(call["args"]), json.dumps(call["kwargs"])
    except (TypeError, ValueError) as exc:
        raise ProjectError(f"the arguments of {func.__name__} are not JSON-serialisable: {exc}") from None
    return call


class RemoteFunctionJob(Job):
    """A Job whose result carries the function's return value."""

    def finish(self) -> JobResult:
        result = super().finish()
        target = self.result_dir
        name = f"{RETURN_PREFIX}{result.process_id}.json"
        path = Path(target) / name if target else None
        if path is None or not path.exists():
            raise ProjectError(f"process {result.process_id} succeeded but left no {name} in {self.result_label}")
        value = json.loads(path.read_text())["value"]
        # an internal file, not one of the user's results: gone locally and from the shared result label
        path.unlink()
        try:
            self.client.remove_file(label=self.result_label, name=name)
        except ColoniesError as exc:
            log.warning("could not remove %s from %s: %s", name, self.result_label, exc)
        files = [f for f in result.result_files if f != name]
        return result.model_copy(update={"return_value": value, "result_files": files})


def remote_function_job(settings: Settings, func: Callable[..., Any], args: tuple = (),
                        kwargs: Optional[dict] = None, *, name: Optional[str] = None, image: str = "python:3.12",
                        python: str = "python3", token: Optional[str] = None, **options: Any) -> RemoteFunctionJob:
    """A job that runs ``func(*args, **kwargs)`` on an executor and returns its JSON value."""
    call = build_call(func, args, kwargs)
    src = Path(tempfile.mkdtemp(prefix="pollinator-fn-"))
    (src / RUNNER).write_text(RUNNER_SOURCE)
    (src / CALL_FILE).write_text(json.dumps(call))
    project = name or func.__name__.replace("_", "-")
    result_dir = options.pop("result_dir", None) or Path(tempfile.mkdtemp(prefix="pollinator-result-"))
    fields = dict(name=project, cmd=python, source=RUNNER, image=image, src_dir=src, result_dir=result_dir,
                  **options)
    from pollinator.run.options import JobOptions

    return RemoteFunctionJob(settings, JobOptions.build(**fields), token=token)
