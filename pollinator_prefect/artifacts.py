"""Prefect artifacts for a ColonyOS job: a link to its dashboard page and a table of what it produced.

Artifacts are written with ``_sync=True`` on purpose: ``prefect.artifacts``
functions dispatch on "am I in an event loop?", and an async Pollinator task
calls them from callbacks, where a silently un-awaited coroutine would drop
the artifact. Everything written here comes from a :class:`JobResult` or a
process id, which never hold secrets.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Optional

from prefect.artifacts import create_link_artifact, create_markdown_artifact

from pollinator.run import JobResult

log = logging.getLogger(__name__)


def artifact_key(job_name: str, suffix: str = "") -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    key = re.sub(r"[^a-z0-9-]+", "-", f"colonyos-{job_name}{'-' + suffix if suffix else ''}".lower())
    return re.sub(r"-{2,}", "-", key).strip("-")


def _md(value: Any) -> str:
    """One markdown table cell: pipes, backticks and newlines would break the table."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'").replace("\n", " ").strip()


def link_to_process(job_name: str, process_id: str, url: str) -> None:
    """A link artifact to the process page (nothing when no dashboard URL is configured)."""
    if not url:
        return
    create_link_artifact(  # type: ignore[call-arg]  # async_dispatch takes _sync; its ParamSpec typing omits it
        link=url, link_text=f"ColonyOS process {process_id[:12]}", key=artifact_key(job_name),
        description=f"The ColonyOS process running `{_md(job_name)}`.", _sync=True)


def _short_json(value: Any, limit: int = 200) -> str:
    import json

    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "..."


def result_table(result: JobResult) -> str:
    """The markdown summary: process, state, timing, where the results are, and each result file."""
    rows = [("process", f"`{_md(result.process_id)}`"), ("state", _md(result.state))]
    if result.dashboard_url:
        rows.append(("dashboard", f"[open]({result.dashboard_url})"))
    if result.executor:
        rows.append(("executor", _md(result.executor)))
    if result.seconds is not None:
        rows.append(("duration", f"{result.seconds:.1f} s"))
    if result.result_label:  # where the results live for every worker and every later task
        rows.append(("results in ColonyFS", f"`{_md(result.result_label)}`"))
    if result.result_dir:  # only a home the user chose (result_dir=); nothing else is downloaded
        rows.append(("downloaded to", f"`{_md(result.result_dir)}`"))
    if result.returned:
        rows.append(("return value", f"`{_md(_short_json(result.return_value))}`"))
    for error in result.errors:
        rows.append(("error", _md(error)))
    lines = ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
    if result.result_files:
        lines += ["| result file |", "|---|", *(f"| `{_md(name)}` |" for name in result.result_files)]
    else:
        lines.append("No result files.")
    return "\n".join(lines) + "\n"


def publish_result(job_name: str, result: Optional[JobResult]) -> None:
    """The result table as a markdown artifact (a failed job's table carries its errors)."""
    if result is None:
        return
    create_markdown_artifact(  # type: ignore[call-arg]  # as above: _sync is Prefect's, untyped
        markdown=result_table(result), key=artifact_key(job_name, "results"),
        description=f"What the ColonyOS job `{_md(job_name)}` produced.", _sync=True)


def safely(publish: Any, *args: Any) -> None:
    """Artifacts are a courtesy: failing to write one must not fail (or hide the outcome of) the job."""
    try:
        publish(*args)
    except Exception as exc:  # noqa: BLE001 - reported, never raised
        log.warning("could not write a Prefect artifact: %s", exc)
