"""A read-only page per process, so "ColonyOS process" links work against the local colony.

The real ColonyOS dashboard is a separate web app; the local colony points
``COLONYOS_DASHBOARD_URL`` at itself and serves ``/process?processid=<id>``
(state, times, errors, output and the log) and ``/`` (recent processes).
It binds to loopback only, like the rest of the local colony. Env values whose
names look secret are masked.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from pollinator.colonies.models import ProcessState
from pollinator.dev.wire import go_time

SECRET_NAME = re.compile(r"key|secret|token|passw", re.I)
STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}pre{background:#111;color:#eee;"
         "padding:1em;overflow:auto}td,th{padding:.2em .8em;text-align:left}.s2{color:green}.s3,.s4{color:#b00}")


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
                        f"<style>{STYLE}</style><h1>{html.escape(title)}</h1>{body}")


def _state(state: int) -> str:
    return f"<span class=s{state}>{ProcessState(state).name}</span>"


def _masked_env(env: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if SECRET_NAME.search(k) else v) for k, v in (env or {}).items()}


async def process_page(request: Request) -> HTMLResponse:
    store = request.app.state.store
    pid = request.query_params.get("processid", "")
    p = store.get_process(pid) if pid else None
    if p is None:
        return _page("Process not found", f"<p>No process {html.escape(pid)!s} in this colony.</p>")
    spec = {k: v for k, v in p["spec"].items() if k != "attributes"}  # attributes repeat env
    spec["env"] = _masked_env(spec.get("env") or {})
    logs = store.get_logs(process_id=pid, count=500, since=0, latest=True)
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in [
        ("state", _state(p["state"])), ("function", html.escape(str(spec.get("funcname", "")))),
        ("executor type", html.escape(p["executortype"] or "")), ("retries", p["retries"]),
        ("submitted", go_time(p["submission"])), ("started", go_time(p["start"])), ("ended", go_time(p["end"]))])
    errors = "".join(f"<li>{html.escape(str(e))}</li>" for e in p["errors"] or [])
    log_text = html.escape("".join(entry["message"] for entry in logs))
    body = (f"<table>{rows}</table>" + (f"<h2>Errors</h2><ul>{errors}</ul>" if errors else "")
            + (f"<h2>Output</h2><pre>{html.escape(json.dumps(p['out'], indent=1))}</pre>" if p["out"] else "")
            + f"<h2>Log (last {len(logs)} messages)</h2><pre>{log_text}</pre>"
            + f"<h2>Spec</h2><pre>{html.escape(json.dumps(spec, indent=1))}</pre>")
    return _page(f"Process {pid[:12]}", body)


async def index_page(request: Request) -> HTMLResponse:
    store = request.app.state.store
    rows = []
    for state in ProcessState:
        for p in store.processes_in_state(int(state), limit=50, newest_first=True):
            rows.append(p)
    rows.sort(key=lambda p: p["submission"] or 0, reverse=True)
    table = "".join(
        f"<tr><td><a href='/process?processid={p['id']}'>{p['id'][:12]}</a></td><td>{_state(p['state'])}</td>"
        f"<td>{html.escape(p['executortype'] or '')}</td><td>{go_time(p['submission'])}</td></tr>" for p in rows[:200])
    return _page("Local colony", f"<table><tr><th>process</th><th>state</th><th>executor type</th>"
                                 f"<th>submitted</th></tr>{table}</table>")
